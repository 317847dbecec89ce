//! The tables of CANN's unified profiling database as msprof-analyze 26.2.0 reads them (column names, order
//! and types of msprof's `msprof_*.db`, torch_npu's framework tables), and the fixed rows of its `ENUM_*`
//! tables. Every table is created even when it stays empty: several of msprof-analyze's readers fail, rather
//! than skip, when a table is missing (the `all` mode's step trace without `COMMUNICATION_OP`, `mstx_sum`
//! without `MSTX_EVENTS`, `free_analysis` without `PYTORCH_API`/`CONNECTION_IDS`).

/// `CREATE TABLE` statements of the profiler database, in one batch.
pub(super) const PROFILER_TABLES: &str = "
CREATE TABLE STRING_IDS (id INTEGER PRIMARY KEY, value TEXT);
CREATE TABLE META_DATA (name TEXT, value TEXT);
CREATE TABLE SESSION_TIME_INFO (startTimeNs INTEGER, endTimeNs INTEGER);
CREATE TABLE NPU_INFO (id INTEGER, name TEXT);
CREATE TABLE HOST_INFO (hostUid TEXT, hostName TEXT);
CREATE TABLE RANK_DEVICE_MAP (rankId INTEGER, deviceId INTEGER);
CREATE TABLE ENUM_API_TYPE (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE ENUM_HCCL_DATA_TYPE (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE ENUM_HCCL_LINK_TYPE (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE ENUM_HCCL_TRANSPORT_TYPE (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE ENUM_HCCL_RDMA_TYPE (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE ENUM_MSTX_EVENT_TYPE (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE ENUM_MEMCPY_OPERATION (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE CANN_API (startNs INTEGER, endNs INTEGER, type INTEGER, globalTid INTEGER,
  connectionId INTEGER PRIMARY KEY, name INTEGER);
CREATE TABLE TASK (startNs INTEGER, endNs INTEGER, deviceId INTEGER, connectionId INTEGER,
  globalTaskId INTEGER, globalPid INTEGER, taskType INTEGER, contextId INTEGER, streamId INTEGER,
  taskId INTEGER, modelId INTEGER);
CREATE TABLE COMPUTE_TASK_INFO (name INTEGER, globalTaskId INTEGER PRIMARY KEY, blockDim INTEGER,
  mixBlockDim INTEGER, taskType INTEGER, opType INTEGER, inputFormats INTEGER, inputDataTypes INTEGER,
  inputShapes INTEGER, outputFormats INTEGER, outputDataTypes INTEGER, outputShapes INTEGER,
  attrInfo INTEGER, opState INTEGER, hf32Eligible INTEGER);
CREATE TABLE COMMUNICATION_OP (opName INTEGER, startNs INTEGER, endNs INTEGER, connectionId INTEGER,
  groupName INTEGER, opId INTEGER PRIMARY KEY, relay INTEGER, retry INTEGER, dataType INTEGER,
  algType INTEGER, count NUMERIC, opType INTEGER, deviceId INTEGER);
CREATE TABLE MSTX_EVENTS (startNs INTEGER, endNs INTEGER, eventType INTEGER, rangeId INTEGER,
  category INTEGER, message INTEGER, globalTid INTEGER, endGlobalTid INTEGER, domainId INTEGER,
  connectionId INTEGER);
CREATE TABLE STEP_TIME (id INTEGER, startNs INTEGER, endNs INTEGER);
CREATE TABLE PYTORCH_API (startNs INTEGER, endNs INTEGER, globalTid INTEGER, connectionId INTEGER,
  name INTEGER, sequenceNumber INTEGER, fwdThreadId INTEGER, inputDtypes INTEGER, inputShapes INTEGER,
  callchainId INTEGER, type INTEGER);
CREATE TABLE CONNECTION_IDS (id INTEGER, connectionId INTEGER);
";

/// The rows of each `ENUM_*` table (CANN's numbering).
pub(super) const ENUMS: &[(&str, &[(i64, &str)])] = &[
    (
        "ENUM_API_TYPE",
        &[
            (20000, "acl"),
            (15000, "model"),
            (10000, "node"),
            (5500, "communication"),
            (5000, "runtime"),
            (50001, "op"),
            (50002, "queue"),
            (50003, "trace"),
            (50004, "mstx"),
        ],
    ),
    (
        "ENUM_HCCL_DATA_TYPE",
        &[
            (0, "INT8"),
            (1, "INT16"),
            (2, "INT32"),
            (3, "FP16"),
            (4, "FP32"),
            (5, "INT64"),
            (6, "UINT64"),
            (7, "UINT8"),
            (8, "UINT16"),
            (9, "UINT32"),
            (10, "FP64"),
            (11, "BFP16"),
            (12, "INT128"),
            (14, "HIF8"),
            (15, "FP8E4M3"),
            (16, "FP8E5M2"),
            (17, "FP8E8M0"),
            (255, "RESERVED"),
            (65534, "N/A"),
            (65535, "INVALID_TYPE"),
        ],
    ),
    (
        "ENUM_HCCL_LINK_TYPE",
        &[
            (0, "ON_CHIP"),
            (1, "HCCS"),
            (2, "PCIE"),
            (3, "ROCE"),
            (4, "SIO"),
            (5, "HCCS_SW"),
            (6, "STANDARD_ROCE"),
            (255, "RESERVED"),
            (65534, "N/A"),
            (65535, "INVALID_TYPE"),
        ],
    ),
    (
        "ENUM_HCCL_TRANSPORT_TYPE",
        &[
            (0, "SDMA"),
            (1, "RDMA"),
            (2, "LOCAL"),
            (255, "RESERVED"),
            (65534, "N/A"),
            (65535, "INVALID_TYPE"),
        ],
    ),
    (
        "ENUM_HCCL_RDMA_TYPE",
        &[
            (0, "RDMA_SEND_NOTIFY"),
            (1, "RDMA_SEND_PAYLOAD"),
            (255, "RESERVED"),
            (65534, "N/A"),
            (65535, "INVALID_TYPE"),
        ],
    ),
    (
        "ENUM_MSTX_EVENT_TYPE",
        &[
            (0, "marker"),
            (1, "push/pop"),
            (2, "start/end"),
            (3, "marker_ex"),
        ],
    ),
    (
        "ENUM_MEMCPY_OPERATION",
        &[
            (0, "host to host"),
            (1, "host to device"),
            (2, "device to host"),
            (3, "device to device"),
            (4, "managed memory"),
            (5, "addr device to device"),
            (6, "host to device ex"),
            (7, "device to host ex"),
            (65535, "other"),
        ],
    ),
];

/// `ENUM_API_TYPE` ids.
pub(super) mod api_type {
    pub(in super::super) const ACL: i64 = 20000;
    pub(in super::super) const MODEL: i64 = 15000;
    pub(in super::super) const NODE: i64 = 10000;
    pub(in super::super) const COMMUNICATION: i64 = 5500;
    pub(in super::super) const RUNTIME: i64 = 5000;
}

/// `ENUM_MSTX_EVENT_TYPE` ids.
pub(super) mod mstx_type {
    pub(in super::super) const MARKER: i64 = 0;
    pub(in super::super) const MARKER_EX: i64 = 3;
}

/// The schema version in `META_DATA` (what msMonitor's MSPTI writer declares).
pub(super) const SCHEMA_VERSION: [(&str, &str); 4] = [
    ("SCHEMA_VERSION", "1.2.0"),
    ("SCHEMA_VERSION_MAJOR", "0"),
    ("SCHEMA_VERSION_MINOR", "2"),
    ("SCHEMA_VERSION_MICRO", "1"),
];

/// The value CANN writes where a number is unknown.
pub(super) const INVALID: i64 = u32::MAX as i64;
