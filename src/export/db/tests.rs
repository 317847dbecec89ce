use super::*;
use crate::device::{ApiCall, ApiLevel, Collective, DeviceCopy, HostRecord, Kernel, Marker};

/// API calls and a marker range, as a backend streams them.
struct Calls;

impl HostRecords for Calls {
    fn replay(&self, each: &mut dyn FnMut(&HostRecord<'_>) -> Result<()>) -> Result<()> {
        for c in 1..=2u64 {
            each(&HostRecord::Api(ApiCall {
                level: ApiLevel::Runtime,
                name: b"aclnnMatMul",
                start_ns: 1_000 * c,
                end_ns: 1_000 * c + 500,
                pid: 7,
                tid: 8,
                correlation: c,
            }))?;
        }
        // The same launch reported at a second API level: one row per connection id.
        each(&HostRecord::Api(ApiCall {
            level: ApiLevel::Node,
            name: b"launch",
            start_ns: 1_000,
            end_ns: 1_400,
            pid: 7,
            tid: 8,
            correlation: 1,
        }))?;
        // A memory copy the second call asked for: a TASK row of its own.
        each(&HostRecord::Copy(DeviceCopy {
            start_ns: 2_500,
            end_ns: 2_800,
            device: 1,
            stream: 9,
            correlation: 2,
            bytes: 65536,
        }))?;
        each(&HostRecord::Marker(Marker {
            message: b"fwd",
            domain: b"",
            start_ns: 900,
            end_ns: 5_000,
            pid: 7,
            tid: 8,
            range: true,
        }))
    }
}

fn rows(c: &rusqlite::Connection, sql: &str) -> Vec<Vec<String>> {
    let mut st = c.prepare(sql).unwrap();
    let n = st.column_count();
    st.query_map([], |r| {
        Ok((0..n)
            .map(|i| match r.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Null => "NULL".to_string(),
                rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                rusqlite::types::ValueRef::Real(v) => v.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                rusqlite::types::ValueRef::Blob(_) => "BLOB".to_string(),
            })
            .collect())
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

/// The input of rank 0 on device 0, without steps.
fn rank0(dev: &DeviceResult, span: (u64, u64)) -> Input<'_> {
    Input {
        rank: 0,
        device_id: 0,
        dev,
        steps: &[],
        span,
    }
}

/// Issue 18 item 2: the database read back holds the kernels (TASK ⋈ COMPUTE_TASK_INFO by globalTaskId, each
/// task linked to its launching API), the collectives with msprof's names, the API calls, the host and vendor
/// ranges as mstx_sum's `_start`/`_stop` pairs, the steps and one RANK_DEVICE_MAP row; every table exists;
/// nothing is left under the temporary name.
#[test]
fn the_database_read_back_holds_what_the_result_has() {
    let d = tempfile::tempdir().unwrap();
    let out = Place::open(d.path()).unwrap();
    let mut db = Db::create(&out, 3, 7).unwrap();
    db.host_name(5, b"forward");
    db.host_range(8, 5, 100, 900);
    db.host_mark(8, 5, 950);
    let mut dev = DeviceResult::default();
    let k = &mut dev.kernels;
    for (i, (name, core)) in [("MatMul_1", "AI_CORE"), ("hcom_allReduce_", "HCCL")]
        .iter()
        .enumerate()
    {
        k.push(
            name.as_bytes(),
            if i == 0 { "MatMul" } else { "N/A" },
            core,
            Kernel {
                start_ns: 2_000 + 1_000 * i as u64,
                dur_ns: 400,
                block_dim: 8,
                correlation: i as u32 + 1,
                ..Default::default()
            },
        );
    }
    let name = k.strings.intern(b"HcclAllReduce");
    let group = k.strings.intern(b"10.0.0.1%eth0_60000_0_1");
    dev.collectives.add(Collective {
        name,
        group,
        start_ns: 3_000,
        dur_ns: 400,
        data_type: 4,
        count: 1024,
        correlation: 2,
        ..Default::default()
    });
    dev.host_records = Some(Box::new(Calls));
    let steps = [StepSpan {
        step: 1,
        start_ns: 0,
        end_ns: 6_000,
    }];
    let input = Input {
        rank: 3,
        device_id: 1,
        dev: &dev,
        steps: &steps,
        span: (0, 6_000),
    };
    complete(Some(db), &out, u64::MAX, &input);
    let names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    let c = rusqlite::Connection::open(d.path().join("ascend_mindspore_profiler_3.db")).unwrap();
    for t in [
        "STRING_IDS",
        "TASK",
        "COMPUTE_TASK_INFO",
        "COMMUNICATION_OP",
        "CANN_API",
        "MSTX_EVENTS",
        "STEP_TIME",
        "META_DATA",
        "RANK_DEVICE_MAP",
        "SESSION_TIME_INFO",
        "NPU_INFO",
        "HOST_INFO",
        "PYTORCH_API",
        "CONNECTION_IDS",
        "ENUM_API_TYPE",
        "ENUM_HCCL_DATA_TYPE",
        "ENUM_MSTX_EVENT_TYPE",
    ] {
        assert_eq!(
            rows(
                &c,
                &format!("select count(*) from sqlite_master where name = '{t}'")
            ),
            [["1"]],
            "{t}"
        );
    }
    assert_eq!(
        rows(
            &c,
            "select n.value, o.value, ty.value, i.blockDim, t.connectionId, t.deviceId, a.value
             from COMPUTE_TASK_INFO i join TASK t on t.globalTaskId = i.globalTaskId
             join STRING_IDS n on n.id = i.name join STRING_IDS o on o.id = i.opType
             join STRING_IDS ty on ty.id = i.taskType
             join CANN_API on CANN_API.connectionId = t.connectionId
             join STRING_IDS a on a.id = CANN_API.name"
        ),
        [[
            "MatMul_1",
            "MatMul",
            "AI_CORE",
            "8",
            "1",
            "1",
            "aclnnMatMul"
        ]]
    );
    // Unknown shapes are empty: advisor's AI Core check reads a matmul's shapes ("N/A" made it log errors).
    assert_eq!(
        rows(
            &c,
            "select si.value, so.value from COMPUTE_TASK_INFO i
             join STRING_IDS si on si.id = i.inputShapes join STRING_IDS so on so.id = i.outputShapes"
        ),
        [["", ""]]
    );
    // The communication task is a TASK row only; the collective is COMMUNICATION_OP, linked to its API.
    // The copy is a MEMCPY_ASYNC task after the kernels, linked to its API call.
    assert_eq!(rows(&c, "select count(*) from TASK"), [["3"]]);
    assert_eq!(
        rows(
            &c,
            "select t.globalTaskId, t.startNs, t.endNs, t.streamId, t.deviceId, a.connectionId
             from TASK t join STRING_IDS s on s.id = t.taskType
             join CANN_API a on a.connectionId = t.connectionId where s.value = 'MEMCPY_ASYNC'"
        ),
        [["2", "2500", "2800", "9", "1", "2"]]
    );
    let h = double_hash(b"10.0.0.1%eth0_60000_0_1").to_string();
    assert_eq!(
        rows(
            &c,
            "select n.value, t.value, g.value, d.name, o.count, o.connectionId
             from COMMUNICATION_OP o join STRING_IDS n on n.id = o.opName join STRING_IDS t on t.id = o.opType
             join STRING_IDS g on g.id = o.groupName join ENUM_HCCL_DATA_TYPE d on d.id = o.dataType
             join CANN_API a on a.connectionId = o.connectionId"
        ),
        [[
            format!("hcom_allReduce__{}_0_1", &h[h.len() - 3..]),
            "hcom_allReduce_".into(),
            "10.0.0.1%eth0_60000_0_1".into(),
            "FP32".into(),
            "1024".into(),
            "2".into()
        ]]
    );
    assert_eq!(
        rows(&c, "select count(*), min(type) from CANN_API"),
        [["2", "5000"]]
    );
    assert_eq!(
        rows(
            &c,
            "select s.value, e.eventType, e.startNs, e.globalTid from MSTX_EVENTS e
             join STRING_IDS s on s.id = e.message order by e.startNs, e.rowid"
        ),
        [
            ["forward_start", "3", "100", &((7u64 << 32) | 8).to_string()],
            ["forward_stop", "3", "900", &((7u64 << 32) | 8).to_string()],
            ["fwd_start", "3", "900", &((7u64 << 32) | 8).to_string()],
            ["forward", "0", "950", &((7u64 << 32) | 8).to_string()],
            ["fwd_stop", "3", "5000", &((7u64 << 32) | 8).to_string()],
        ]
    );
    // Marker connection ids are unique and clear of the API calls' and of the invalid value.
    assert_eq!(
        rows(&c, "select count(distinct connectionId), min(connectionId) > 4294967295 or max(connectionId) < 4294967295 from MSTX_EVENTS"),
        [["5", "1"]]
    );
    assert_eq!(rows(&c, "select * from STEP_TIME"), [["1", "0", "6000"]]);
    assert_eq!(rows(&c, "select * from RANK_DEVICE_MAP"), [["3", "1"]]);
    let a = rusqlite::Connection::open(d.path().join("communication_analyzer.db")).unwrap();
    assert_eq!(
        rows(
            &a,
            "select hccl_op_name, group_name, elapse_time from CommAnalyzerTime"
        ),
        [[
            format!("hcom_allReduce__{}_0_1", &h[h.len() - 3..]),
            h.clone(),
            "0.0004".into()
        ]]
    );
    assert_eq!(
        rows(
            &a,
            "select transport_type, transit_size * 1048576 from CommAnalyzerBandwidth"
        ),
        [["SDMA", "4096"]]
    );
    assert_eq!(rows(&a, "select step from StepTraceTime"), [["1"]]);
}

/// A row that fails (here: the tables are gone under the writer) leaves no database, and the error is
/// reported once, not as a panic.
#[test]
fn a_failed_database_is_not_committed() {
    let d = tempfile::tempdir().unwrap();
    let out = Place::open(d.path()).unwrap();
    let mut db = Db::create(&out, 0, 1).unwrap();
    db.f.conn.execute_batch("DROP TABLE MSTX_EVENTS").unwrap();
    db.host_range(1, 1, 0, 10);
    let dev = DeviceResult::default();
    let input = rank0(&dev, (0, 10));
    assert!(db.finish(&input, u64::MAX).is_err());
    let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
    assert!(names.is_empty(), "{names:?}");
}

/// A database over its share of NPUPROF_MAX_DISK_MB is not written (half a database would read as the whole
/// profile); with room, the same rows are.
#[test]
fn a_database_over_its_room_is_not_written() {
    for (room, written) in [(64 << 10, false), (16 << 20, true)] {
        let d = tempfile::tempdir().unwrap();
        let out = Place::open(d.path()).unwrap();
        let mut db = Db::create(&out, 0, 1).unwrap();
        for i in 0..5000u64 {
            db.host_name(1 + i as u32, format!("range number {i}").as_bytes());
            db.host_range(1, 1 + i as u32, i, i + 1);
        }
        let dev = DeviceResult::default();
        let input = rank0(&dev, (0, 10));
        complete(Some(db), &out, room, &input);
        let has = d.path().join("ascend_mindspore_profiler_0.db").exists();
        assert_eq!(has, written, "room {room}");
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            !names.iter().any(|n| n.to_string_lossy().ends_with(".tmp")),
            "{names:?}"
        );
    }
}

/// API calls whose connection ids collide in the writer's cache of recent ids (`c` and `c + 5 * 4096`) or come
/// back after it forgot them: still one `CANN_API` row per connection id, the first reported.
struct Repeats;

impl HostRecords for Repeats {
    fn replay(&self, each: &mut dyn FnMut(&HostRecord<'_>) -> Result<()>) -> Result<()> {
        let call = |c: u64, level, name: &'static [u8]| ApiCall {
            level,
            name,
            start_ns: c,
            end_ns: c + 1,
            pid: 7,
            tid: 8,
            correlation: c,
        };
        for c in [5, 5 + 5 * 4096, 5, 5 + 5 * 4096, 9] {
            each(&HostRecord::Api(call(c, ApiLevel::Runtime, b"first")))?;
        }
        for c in 10..10_000 {
            each(&HostRecord::Api(call(c, ApiLevel::Runtime, b"first")))?;
            each(&HostRecord::Api(call(c, ApiLevel::Node, b"second")))?;
        }
        each(&HostRecord::Api(call(9, ApiLevel::Node, b"late")))
    }
}

#[test]
fn each_connection_id_has_one_api_row_the_first_reported() {
    let d = tempfile::tempdir().unwrap();
    let out = Place::open(d.path()).unwrap();
    let db = Db::create(&out, 0, 7).unwrap();
    let dev = DeviceResult {
        host_records: Some(Box::new(Repeats)),
        ..Default::default()
    };
    let input = rank0(&dev, (0, 1_000_000));
    complete(Some(db), &out, u64::MAX, &input);
    let c = rusqlite::Connection::open(d.path().join("ascend_mindspore_profiler_0.db")).unwrap();
    assert_eq!(
        rows(
            &c,
            "select count(*), count(distinct a.connectionId), min(s.value), max(s.value), min(a.type), \
             max(a.type) from CANN_API a join STRING_IDS s on s.id = a.name"
        ),
        [["9993", "9993", "first", "first", "5000", "5000"]]
    );
}

/// Issue 18, free_analysis: the framework ops (host ranges drawn as `cpu_op`) are `PYTORCH_API` rows, and
/// `CONNECTION_IDS` ties each to the launches it is the innermost op of, so msprof-analyze's
/// DeviceTaskLinkCannPytorchExport (its SQL, copied) finds each task's CANN call and framework op. An op of
/// another thread at the same start gets no link.
#[test]
fn each_task_finds_its_framework_op_through_connection_ids() {
    let d = tempfile::tempdir().unwrap();
    let out = Place::open(d.path()).unwrap();
    let mut db = Db::create(&out, 0, 7).unwrap();
    db.host_name(5, b"forward");
    db.framework_op(8, 5, 100, 3_000);
    db.framework_op(9, 5, 100, 3_000);
    let launches = crate::device::Launches::new(vec![crate::device::Launch {
        tid: 8,
        ts_ns: 1_000,
        key: 1,
        op_ns: 100,
    }])
    .by_key();
    db.framework_links(&launches);
    let mut dev = DeviceResult::default();
    for c in 1..=2u32 {
        dev.kernels.push(
            b"MatMul_1",
            "MatMul",
            "AI_CORE",
            Kernel {
                start_ns: 2_000 * c as u64,
                dur_ns: 400,
                correlation: c,
                ..Default::default()
            },
        );
    }
    dev.host_records = Some(Box::new(Calls));
    complete(Some(db), &out, u64::MAX, &rank0(&dev, (0, 6_000)));
    let c = rusqlite::Connection::open(d.path().join("ascend_mindspore_profiler_0.db")).unwrap();
    assert_eq!(
        rows(
            &c,
            "select count(*), min(s.value), max(s.value), min(p.type) from PYTORCH_API p \
             join STRING_IDS s on s.id = p.name"
        ),
        [["2", "forward", "forward", "50001"]]
    );
    let gtid = global_tid(7, 8).to_string();
    // free_analysis_export.py's QUERY_DEVICE_TASK_LINK_CANN_PYTORCH_API.
    assert_eq!(
        rows(
            &c,
            "SELECT TASK.startNs, cann.startNs, pytorch.startNs, pytorch.endNs, pytorch.globalTid FROM TASK \
             LEFT JOIN CANN_API cann ON TASK.connectionId = cann.connectionId \
             LEFT JOIN CONNECTION_IDS conn ON conn.connectionId = TASK.connectionId \
             LEFT JOIN PYTORCH_API pytorch ON pytorch.connectionId = conn.id \
             ORDER BY TASK.startNs ASC"
        ),
        [
            ["2000", "1000", "100", "3000", gtid.as_str()],
            ["2500", "2000", "NULL", "NULL", "NULL"],
            ["4000", "2000", "NULL", "NULL", "NULL"],
        ]
    );
}
