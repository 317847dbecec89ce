//! Backends: where device data comes from.
//!
//! Host annotations (ranges, marks, steps) are always recorded by the core, whatever the backend. A backend
//! adds device-side collection around a profile: `start` and `stop` run on the caller's thread inside
//! `npuprof_start` / `npuprof_stop` (they must be quick), and the [`DeviceData`] that `stop` returns is
//! turned into rows on the export thread, after the host spool is complete.
//!
//! * [`host`]: collects nothing; works anywhere.
//! * [`acl`]: drives CANN's aclprof C API (`libascendcl.so` / `libmsprofiler.so`) and parses what CANN wrote
//!   with `msprof --export=on`.

pub mod acl;
pub mod host;
pub mod mspti;

use crate::config::{BackendKind, Config};
use crate::error::Result;
use crate::session::Profile;

/// One device task, the unit of `kernel_details.csv`, `op_statistic.csv` and the `Ascend Hardware` lanes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kernel {
    pub name: std::sync::Arc<[u8]>,
    pub op_type: std::sync::Arc<str>,
    /// `Accelerator Core` (`AI_CORE`, `AI_VECTOR_CORE`, `MIX_AIC`, `AI_CPU`, `COMMUNICATION`, ...).
    pub core: std::sync::Arc<str>,
    /// CLOCK_REALTIME ns, on the host time base.
    pub start_ns: u64,
    pub dur_ns: u64,
    pub wait_ns: u64,
    pub stream_id: u32,
    pub task_id: u32,
    pub model_id: u32,
    pub block_dim: u32,
    /// With [`DeviceResult::kernel_header`]: the row's cells for those columns, verbatim from the source,
    /// CSV-encoded and comma-separated (one allocation per task).
    pub cells: String,
}

impl Kernel {
    /// A communication task (HCCL): counted as communication, not computing, in `step_trace_time.csv`.
    pub fn is_communication(&self) -> bool {
        matches!(&*self.core, "COMMUNICATION" | "HCCL")
            || self.name.starts_with(b"hcom_")
            || self.name.starts_with(b"Hccl")
    }
    /// A `hcom_receive*` task: the `Bubble` column.
    pub fn is_receive(&self) -> bool {
        self.name.to_ascii_lowercase().starts_with(b"hcom_receive")
    }
}

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
    pub kernels: Vec<Kernel>,
}

/// Device lanes written into `trace_view.json` by the exporter, streamed (never all in memory).
pub trait Lanes: Send {
    /// Writes the lanes; on failure, what was written so far and why it stopped.
    fn write(
        self: Box<Self>,
        tw: &mut crate::export::trace_view::TraceWriter,
    ) -> std::result::Result<LaneStats, (LaneStats, String)>;
}

/// What a backend collected for one profile, parsed.
#[derive(Default)]
pub struct DeviceResult {
    pub kernels: Vec<Kernel>,
    /// `kernel_details.csv` columns (after `Step ID`) when the source has its own column set (CANN's
    /// op_summary, renamed as the frameworks do); `None` = npuprof's default header.
    pub kernel_header: Option<Vec<String>>,
    /// Device and CANN lanes for `trace_view.json`; `None` = lanes are drawn from `kernels`.
    pub timeline: Option<Box<dyn Lanes>>,
    /// Files copied into `ASCEND_PROFILER_OUTPUT/` as they are (name, content), e.g. CANN's
    /// `op_statistic.csv` and `api_statistic.csv`.
    pub files: Vec<(String, String)>,
    /// Members of the `"device"` object of `profiler_metadata.json`: (key, JSON value).
    pub meta: Vec<(String, String)>,
}

impl DeviceResult {
    /// Sets `device.status` (replacing an earlier one) and, when given, `device.message`.
    pub fn set_status(&mut self, status: &str, message: Option<&str>) {
        self.meta.retain(|(k, _)| k != "status");
        self.meta.push((
            "status".into(),
            crate::export::json::string(status.as_bytes()),
        ));
        if let Some(m) = message {
            self.meta
                .push(("message".into(), crate::export::json::string(m.as_bytes())));
        }
    }
}

pub trait Backend: Send {
    fn name(&self) -> &'static str;
    /// The device the calling thread drives (asked before the profile's directory is made).
    fn device_id(&mut self, cfg: &Config) -> u32 {
        cfg.device_id
    }
    /// Begins device collection for `profile` (its directories exist).
    fn start(&mut self, profile: &Profile) -> Result<()>;
    /// Ends device collection; what was collected is parsed later on the export thread.
    fn stop(&mut self, profile: &Profile) -> Result<Box<dyn DeviceData>>;
}

pub trait DeviceData: Send {
    /// Parses what the backend collected. Runs on the export thread; may take long (never on the caller's).
    fn collect(self: Box<Self>, profile: &Profile) -> Result<DeviceResult>;
}

/// No device data.
pub struct NoDeviceData;

impl DeviceData for NoDeviceData {
    fn collect(self: Box<Self>, _: &Profile) -> Result<DeviceResult> {
        Ok(DeviceResult::default())
    }
}

/// The backend for a configuration. `acl` / `mspti` fail with `NPUPROF_ERR_BACKEND` when CANN cannot be opened.
/// `auto` prefers MSPTI (records arrive in-process and are parsed seconds after stop, no external tool), then
/// aclprof (needs CANN's msprof to parse), then host-only with one warning.
pub fn select(kind: BackendKind, cfg: &Config) -> Result<Box<dyn Backend>> {
    match kind {
        BackendKind::Host => Ok(Box::new(host::HostBackend)),
        BackendKind::Acl => acl::AclBackend::open(true).map(|b| Box::new(b) as Box<dyn Backend>),
        BackendKind::Mspti => {
            mspti::MsptiBackend::open(true, cfg).map(|b| Box::new(b) as Box<dyn Backend>)
        }
        BackendKind::Auto => {
            let m = match mspti::MsptiBackend::open(false, cfg) {
                Ok(b) => return Ok(Box::new(b)),
                Err(e) => e.msg,
            };
            match acl::AclBackend::open(false) {
                Ok(b) => {
                    log::info!("NPUPROF_BACKEND=auto: using aclprof ({m})");
                    Ok(Box::new(b))
                }
                Err(e) => {
                    log::warn!(
                        "NPUPROF_BACKEND=auto: CANN profiling is unavailable, recording host data only ({m}; {})",
                        e.msg
                    );
                    Ok(Box::new(host::HostBackend))
                }
            }
        }
    }
}
