//! The neutral device model: what backends fill and exporters read. Kernels and their strings, collectives,
//! device memory operations, the device events of a timeline, lane statistics, the result of a backend's
//! collection ([`DeviceResult`]) and the [`DeviceData`] a stop hands to the export thread; the trace pid scheme
//! of device lanes (`pids`). It imports no backend and no exporter.

mod bounded;
mod collectives;
pub mod groups;
mod host_records;
mod kernels;
mod launches;
mod memory;
pub(crate) mod pids;
mod strings;
mod task_keys;

pub use bounded::{push_fallible, Bounded};
pub use collectives::{
    data_type_bytes, double_hash, from_kernels, is_p2p, op_names, op_type, Collective, Collectives,
    DATA_TYPE_UNKNOWN,
};
pub use groups::GroupInfo;
pub use host_records::{ApiCall, ApiLevel, DeviceCopy, HostRecord, HostRecords, Marker};
pub use kernels::{Kernel, Kernels};
pub use launches::{Launch, Launches};
pub use memory::{MemEvent, MemEvents, MemOp};
pub use strings::{Str, Strings, Sym};
pub use task_keys::{fnv1a, name_hash, TaskKey, TaskKeys, FNV_OFFSET};

use crate::error::Result;
use crate::profile::Profile;

/// One trace event of a device-side timeline, already on the host time base and on npuprof's pids.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceEvent<'a> {
    /// `X`, `C`, `s`, `f`, `i`, or `M` (process/thread metadata: `name` is `"process_name"` & co.).
    pub ph: u8,
    pub pid: u32,
    pub tid: u32,
    pub ts_ns: u64,
    pub dur_ns: u64,
    /// A JSON string literal (quotes included).
    pub name: &'a str,
    /// A JSON string literal, or empty.
    pub cat: &'a str,
    /// A JSON object (braces included), or empty.
    pub args: &'a str,
    /// Flow id, a JSON literal (string or number).
    pub id: &'a str,
}

/// What a device timeline wrote.
#[derive(Debug, Default)]
pub struct LaneStats {
    pub events: u64,
    pub skipped: u64,
    /// Kernels taken from the lanes, when the backend asked for them (no better source).
    pub kernels: Kernels,
}

/// Where device lanes are drawn: the calls a timeline makes on the trace (export's `TraceWriter` implements
/// it), so a backend draws its lanes without knowing the writer.
pub trait TraceSink {
    /// A process's `process_name`, `process_labels` and `process_sort_index` metadata.
    fn process(&mut self, pid: u32, name: &str, label: &str, sort: u32) -> Result<()>;
    /// A thread's `thread_name` and `thread_sort_index` metadata.
    fn thread(&mut self, pid: u32, tid: u32, name: &[u8], sort: u32) -> Result<()>;
    /// One event, already on npuprof's pids (`pids`) and the host time base.
    fn device_event(&mut self, e: &DeviceEvent<'_>) -> Result<()>;
}

/// Device lanes written into `trace_view.json` by the exporter, streamed (never all in memory).
pub trait Lanes: Send {
    /// Writes the lanes: what was written and, when it stopped early, why.
    fn write(self: Box<Self>, sink: &mut dyn TraceSink) -> (LaneStats, Option<String>);

    /// The host launches of the device tasks the lanes draw, before the host timeline is written (whose pass
    /// finds each launch's framework op); none by default.
    fn launches(&mut self) -> Launches {
        Launches::default()
    }

    /// The launches of [`Lanes::launches`] with their framework ops (see [`Launches::by_key`]), before
    /// [`Lanes::write`]: the lanes then draw a framework op → task flow for each. Ignored by default.
    fn set_framework_ops(&mut self, _ops: Launches) {}
}

/// What a backend collected for one profile, parsed.
#[derive(Default)]
pub struct DeviceResult {
    pub kernels: Kernels,
    /// Collective operations (their strings are `kernels.strings`); empty when the backend has none.
    pub collectives: Collectives,
    /// Allocations and releases of device memory (`memory_record.csv`, `operator_memory.csv`); empty when
    /// memory profiling is off or the backend has none.
    pub memory: MemEvents,
    /// `kernel_details.csv` columns (after `Step ID`) when the source has its own column set (CANN's
    /// op_summary, renamed as the frameworks do); `None` = npuprof's default header.
    pub kernel_header: Option<Vec<String>>,
    /// The host API calls and vendor markers the backend has (the database's `CANN_API`, `MSTX_EVENTS`),
    /// streamed; `None` when it has none.
    pub host_records: Option<Box<dyn HostRecords>>,
    /// Device and CANN lanes for `trace_view.json`; `None` = lanes are drawn from `kernels`.
    pub timeline: Option<Box<dyn Lanes>>,
    /// Files copied into `ASCEND_PROFILER_OUTPUT/` as they are (name, content), e.g. CANN's
    /// `op_statistic.csv` and `api_statistic.csv`.
    pub files: Vec<(String, String)>,
    /// Members of the `"device"` object of `profiler_metadata.json`: (key, JSON value).
    pub meta: Vec<(String, String)>,
    /// Bytes the device data keeps in the profile's directory while the result is written (the MSPTI
    /// spool): they count against NPUPROF_MAX_DISK_MB (see `export::budget`).
    pub disk_bytes: u64,
}

impl DeviceResult {
    /// Sets `device.status` (replacing an earlier one) and, when given, `device.message`.
    pub fn set_status(&mut self, status: &str, message: Option<&str>) {
        self.meta.retain(|(k, _)| k != "status");
        self.meta.push((
            "status".into(),
            crate::format::json::string(status.as_bytes()),
        ));
        if let Some(m) = message {
            self.meta
                .push(("message".into(), crate::format::json::string(m.as_bytes())));
        }
    }
}

pub trait DeviceData: Send {
    /// Parses what the backend collected. Runs on the export thread; may take long (never on the caller's).
    fn collect(self: Box<Self>, profile: &Profile) -> Result<DeviceResult>;
    /// Whether `collect` has a device step to do (a vendor stop to wait for, msprof to run, a device spool to
    /// read): then the export writes the host result first, marked `device_data: pending`, and adds the
    /// device data after (see `export::run`). `false`: no device data, the result is written once.
    fn pending(&self) -> bool {
        true
    }
}

/// No device data.
pub struct NoDeviceData;

impl DeviceData for NoDeviceData {
    fn collect(self: Box<Self>, _: &Profile) -> Result<DeviceResult> {
        Ok(DeviceResult::default())
    }
    fn pending(&self) -> bool {
        false
    }
}
