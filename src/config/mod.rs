//! Environment → one immutable [`Config`].
//!
//! Read once, lazily, on the first exported call (never from a constructor). Every invalid value yields one
//! warning line that names the variable, the bad value and the value used instead; warnings are collected here
//! and logged by the caller once the logger exists.
//!
//! - [`variables`]: every variable read, and the value each has in effect (the one list the reader is tested
//!   against and `profiler_metadata.json`'s `"config"` block is written from);
//! - `env`: the reader of raw values and its warnings;
//! - `read`: [`Config::from_lookup`], the variables read in named steps;
//! - [`metrics`]: the aclprof AI Core metric table (`NPUPROF_AIC_METRICS`);
//! - [`identity`]: the worker name, the host name.

mod env;
pub mod identity;
pub mod metrics;
mod read;
pub mod variables;

pub use env::parse_bool;
pub use identity::{hostname, sanitize_component, MAX_WORKER_NAME_BYTES};
pub use metrics::AicMetrics;
pub use variables::{Setting, Variable, TABLE, VARIABLES};

use std::ffi::OsString;
use std::path::PathBuf;

/// How profiles start and stop (seed 002).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// New logic (`PROFILER_TOKEN_THRESHOLD` unset): only `npuprof_start`/`npuprof_stop`.
    Manual,
    /// Old logic: the first step with `tokens >= threshold` starts a profile that records exactly
    /// `stop_step` complete steps.
    Auto { threshold: u64, stop_step: u64 },
}

/// Which backend collects data. `auto` means "the best one available", tried in this order by
/// `backend::select`: MSPTI when `libmspti.so` opens and subscribes (its records arrive in this process and
/// need no external tool), else aclprof when the CANN libraries can be opened, else host-only (with one
/// warning).
/// `NPUPROF_EXPORT_TYPE`, as torch_npu's `export_type`: the text files (`trace_view.json`, the CSVs), the
/// database (`ascend_mindspore_profiler_{rank}.db`, `communication_analyzer.db`), or both. The two JSON
/// metadata files are written whatever the choice (msprof-analyze's advisor and its text-mode cluster
/// discovery read `profiler_info_{rank}.json`; `profiler_metadata.json` says how far the result got).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportType {
    Text,
    Db,
    TextAndDb,
}

impl ExportType {
    const SPELLINGS: [(ExportType, &'static str); 3] = [
        (ExportType::Text, "text"),
        (ExportType::Db, "db"),
        (ExportType::TextAndDb, "text,db"),
    ];

    pub fn name(self) -> &'static str {
        Self::SPELLINGS
            .into_iter()
            .find(|r| r.0 == self)
            .map_or("text,db", |r| r.1)
    }

    /// A `NPUPROF_EXPORT_TYPE` value: `text`, `db`, or both comma-separated in either order (blanks and case
    /// ignored).
    pub fn parse(v: &str) -> Option<ExportType> {
        let (mut text, mut db) = (false, false);
        for part in v.split(',') {
            match part.trim().to_ascii_lowercase().as_str() {
                "text" => text = true,
                "db" => db = true,
                _ => return None,
            }
        }
        match (text, db) {
            (true, false) => Some(ExportType::Text),
            (false, true) => Some(ExportType::Db),
            (true, true) => Some(ExportType::TextAndDb),
            (false, false) => None,
        }
    }

    /// Whether the text files (trace, CSVs) are written.
    pub fn text(self) -> bool {
        self != ExportType::Db
    }

    /// Whether the database is written.
    pub fn db(self) -> bool {
        self != ExportType::Text
    }
}

/// `NPUPROF_TRACE_FORMAT`: the trace as `trace_view.json` (Chrome trace events, what MindSpore writes and
/// msprof-analyze reads), as `trace_view.pftrace` (Perfetto's protobuf trace: several times smaller, exact
/// ns, for the Perfetto UI), or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    Json,
    Perfetto,
    Both,
}

impl TraceFormat {
    const SPELLINGS: [(TraceFormat, &'static str); 3] = [
        (TraceFormat::Json, "json"),
        (TraceFormat::Perfetto, "perfetto"),
        (TraceFormat::Both, "both"),
    ];

    pub fn name(self) -> &'static str {
        Self::SPELLINGS
            .into_iter()
            .find(|r| r.0 == self)
            .map_or("json", |r| r.1)
    }

    /// A `NPUPROF_TRACE_FORMAT` value (blanks and case ignored).
    pub fn parse(v: &str) -> Option<TraceFormat> {
        let v = v.trim().to_ascii_lowercase();
        Self::SPELLINGS.into_iter().find(|r| r.1 == v).map(|r| r.0)
    }

    /// Whether `trace_view.json` (or `.json.gz`) is written.
    pub fn json(self) -> bool {
        self != TraceFormat::Perfetto
    }

    /// Whether `trace_view.pftrace` is written.
    pub fn perfetto(self) -> bool {
        self != TraceFormat::Json
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Auto,
    Host,
    Acl,
    Mspti,
}

impl BackendKind {
    /// Each kind with its `NPUPROF_BACKEND` spellings, the first its name.
    const SPELLINGS: [(BackendKind, &'static [&'static str]); 4] = [
        (BackendKind::Auto, &["auto"]),
        (BackendKind::Host, &["host"]),
        (BackendKind::Acl, &["acl", "aclprof"]),
        (BackendKind::Mspti, &["mspti"]),
    ];

    pub fn name(self) -> &'static str {
        Self::SPELLINGS
            .into_iter()
            .find(|r| r.0 == self)
            .map_or("auto", |r| r.1[0])
    }

    /// A `NPUPROF_BACKEND` value, blanks and case ignored.
    pub fn parse(v: &str) -> Option<BackendKind> {
        let v = v.trim();
        Self::SPELLINGS
            .into_iter()
            .find(|r| r.1.iter().any(|n| n.eq_ignore_ascii_case(v)))
            .map(|r| r.0)
    }
}

/// `NPUPROF_LEVEL`: how much CANN collects, named and mapped to aclprof bits as torch_npu's `profiler_level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Level0,
    Level1,
    Level2,
}

impl Level {
    /// Each level with its two spellings: `NPUPROF_LEVEL`'s (torch_npu's, also accepted as `level_0` and `0`) and
    /// MindSpore's `profiler_level` in `profiler_info_{rank}.json`.
    const SPELLINGS: [(Level, &'static str, &'static str); 3] = [
        (Level::Level0, "level0", "Level0"),
        (Level::Level1, "level1", "Level1"),
        (Level::Level2, "level2", "Level2"),
    ];
    /// MindSpore's `profiler_level` of a result without device data.
    pub const PROFILER_LEVEL_NONE: &'static str = "LevelNone";

    fn row(self) -> (Level, &'static str, &'static str) {
        Self::SPELLINGS
            .into_iter()
            .find(|r| r.0 == self)
            .unwrap_or(Self::SPELLINGS[0])
    }
    /// The `NPUPROF_LEVEL` spelling (`level0`).
    pub fn name(self) -> &'static str {
        self.row().1
    }
    /// MindSpore's `profiler_level` spelling (`Level0`).
    pub fn profiler_level(self) -> &'static str {
        self.row().2
    }
    /// A `NPUPROF_LEVEL` value: `level0`, `Level_0` or `0` (blanks, case and `_` ignored).
    pub fn parse(v: &str) -> Option<Level> {
        let v = v.trim().to_ascii_lowercase().replace('_', "");
        Self::SPELLINGS
            .into_iter()
            .find(|r| v == r.1 || v == r.1["level".len()..])
            .map(|r| r.0)
    }
    /// The names, for a warning: `level0, level1, level2`.
    pub(crate) fn spelled_list() -> String {
        Self::SPELLINGS.map(|r| r.1).join(", ")
    }
}

/// A capture window's bounds: steps skipped after a start before recording begins, recorded steps after which
/// the profile stops itself, and seconds of recording after which it stops itself (0 = no bound).
/// `NPUPROF_DELAY_STEPS`, `NPUPROF_MAX_STEPS` and `NPUPROF_MAX_SECONDS` give the defaults; a start's options
/// (`npuprof_start_with`, `npuprof trigger --steps`) replace them for that profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub delay_steps: u64,
    pub max_steps: u64,
    pub max_seconds: u64,
}

/// The largest step count a window takes (delay or max steps): a step's number is kept in 24 bits of its record.
pub const MAX_WINDOW_STEPS: u64 = (1 << 24) - 1;
/// The largest `max_seconds` a window takes: a week.
pub const MAX_WINDOW_SECONDS: u64 = 7 * 24 * 3600;

pub const DEFAULT_STOP_STEP: u64 = 5;
pub const DEFAULT_THRESHOLD: u64 = 1;
pub const DEFAULT_BUFFER_KB: u64 = 1024;
pub const MIN_BUFFER_KB: u64 = 4;
/// The documented maximum of `NPUPROF_BUFFER_KB` (256 MiB per recording thread); larger values warn and use
/// it. A ring is allocated and filled by its thread's first record, so its size is that record's latency
/// and, per thread, resident memory until `npuprof_shutdown`.
pub const MAX_BUFFER_KB: u64 = 256 * 1024;
pub const DEFAULT_MAX_DISK_MB: u64 = 4096;
/// The default of `NPUPROF_MAX_DEVICE_RECORDS`: device records (MSPTI records, op_summary rows, timeline
/// kernels) kept per profile. The export holds them in memory (about 130 bytes each, so at most about 0.5 GB at
/// this default); the ones beyond are left out and counted (`device_records_cut` in `profiler_metadata.json`).
pub const DEFAULT_MAX_DEVICE_RECORDS: u64 = 4_000_000;
/// The least default of `NPUPROF_FLUSH_TIMEOUT_S`; the default is longer when the device steps a flush waits for
/// take longer (see [`device_step_bound_s`]).
pub const DEFAULT_FLUSH_TIMEOUT_S: u64 = 300;
/// Beyond `NPUPROF_VENDOR_TIMEOUT_S` + `NPUPROF_MSPROF_TIMEOUT_S`, what a device step may take: the parse's
/// grace after an msprof that used its whole timeout (30 s), the helper's cleanup of msprof's leftovers (10 s),
/// and the host result's writes (20 s).
pub const DEVICE_STEP_MARGIN_S: u64 = 60;
pub const DEFAULT_MSPROF_TIMEOUT_S: u64 = 600;
pub const DEFAULT_VENDOR_TIMEOUT_S: u64 = 60;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `VLLM_TORCH_PROFILER_DIR`; `None` → profiling disabled.
    pub profiler_dir: Option<PathBuf>,
    pub trigger: Trigger,
    pub record_shapes: bool,
    pub with_profile_memory: bool,
    pub with_stack: bool,
    pub with_flops: bool,
    pub backend: BackendKind,
    pub log_level: log::LevelFilter,
    /// Per-thread ring size in KiB.
    pub buffer_kb: u64,
    /// Cap on one profile's bytes on disk.
    pub max_disk_mb: u64,
    /// `NPUPROF_MAX_DEVICE_RECORDS`: device records kept per profile (the export's memory bound).
    pub max_device_records: u64,
    /// `NPUPROF_WORKER_NAME`, sanitised; `None` → `{hostname}_{pid}` computed at each start (the pid can
    /// change across `fork`).
    pub worker_name: Option<String>,
    pub rank: u32,
    /// Which variable gave `rank` (`NPUPROF_RANK`, `RANK`, `LOCAL_RANK`; `"default"` when none).
    pub rank_source: &'static str,
    /// The NPU id the worker drives (`NPUPROF_DEVICE`, else `LOCAL_RANK`, else 0).
    pub device_id: u32,
    /// Which of those gave `device_id` (`"default"` when neither).
    pub device_source: &'static str,
    /// Keep the binary spool next to the result after a successful export.
    pub keep_spool: bool,
    /// Longest time `npuprof_flush`/`npuprof_shutdown` wait for exports. Default: long enough for the device
    /// steps it waits for ([`device_step_bound_s`], at least [`DEFAULT_FLUSH_TIMEOUT_S`]); set shorter, it is
    /// kept, with a warning (a flush then may return before the device data is in: the host result is
    /// written first either way).
    pub flush_timeout_s: u64,
    /// `NPUPROF_LEVEL` (aclprof data types).
    pub level: Level,
    /// `NPUPROF_AIC_METRICS`; `None` = torch_npu's default for the level (PipeUtilization at level1/2).
    pub aic_metrics: Option<AicMetrics>,
    /// `NPUPROF_MSPROFTX`: turn on `ACL_PROF_MSPROFTX` and mark each step with an aclprof stamp.
    pub msproftx: bool,
    /// Longest run of `msprof --export=on` after a profile (`NPUPROF_MSPROF_TIMEOUT_S`).
    pub msprof_timeout_s: u64,
    /// Longest wait for a device backend's stop (`NPUPROF_VENDOR_TIMEOUT_S`) before it is abandoned and the
    /// profile written with host data only (see `backend::vendor`).
    pub vendor_timeout_s: u64,
    /// MSPTI activity buffers: size of each (`NPUPROF_MSPTI_BUFFER_KB`) and how many (`NPUPROF_MSPTI_BUFFERS`),
    /// allocated once at the first MSPTI start.
    pub mspti_buffer_kb: u64,
    pub mspti_buffers: u64,
    /// `NPUPROF_MSPTI_API` (default true): also record CANN API calls (slices on the launching thread and
    /// flows to their kernels); off = kernels only, a third of the records.
    pub mspti_api: bool,
    /// `NPUPROF_DELAY_STEPS`, `NPUPROF_MAX_STEPS`, `NPUPROF_MAX_SECONDS`: the bounds of a profile started
    /// without options of its own (the old logic's automatic profile keeps `PROFILER_STOP_STEP` for its steps).
    pub window: Window,
    /// `NPUPROF_CONTROL`: accept start/stop requests from `npuprof trigger` through
    /// `$VLLM_TORCH_PROFILER_DIR/.control/<pid>.cmd` (polled by the drain thread).
    pub control: bool,
    /// `NPUPROF_EXPORT_TYPE`: which forms of the result are written (torch_npu's `export_type`).
    pub export_type: ExportType,
    /// `NPUPROF_TRACE_FORMAT`: `trace_view.json`, `trace_view.pftrace`, or both.
    pub trace_format: TraceFormat,
    /// `NPUPROF_TRACE_GZIP`: the JSON trace gzip-compressed, as `trace_view.json.gz` (the Perfetto UI opens
    /// it; msprof-analyze does not).
    pub trace_gzip: bool,
    /// `ASCEND_HOME_PATH` and `ASCEND_TOOLKIT_HOME` as set when the configuration was read (for
    /// `profiler_metadata.json`; the backends search them again at each start).
    pub ascend_home_path: Option<PathBuf>,
    pub ascend_toolkit_home: Option<PathBuf>,
    /// One line per invalid value, logged once.
    pub warnings: Vec<String>,
}

/// The longest a profile's device step can take after its stop: the vendor stop (`NPUPROF_VENDOR_TIMEOUT_S`),
/// then msprof and its parse (`NPUPROF_MSPROF_TIMEOUT_S` together), plus [`DEVICE_STEP_MARGIN_S`].
pub fn device_step_bound_s(vendor_timeout_s: u64, msprof_timeout_s: u64) -> u64 {
    vendor_timeout_s
        .saturating_add(msprof_timeout_s)
        .saturating_add(DEVICE_STEP_MARGIN_S)
}

impl Config {
    /// Ring capacity in records (a power of two) for `buffer_kb`.
    pub fn ring_capacity(&self) -> usize {
        let records = (self.buffer_kb as usize * 1024) / crate::record::RECORD_SIZE;
        records.next_power_of_two()
    }

    /// `{worker}` part of the directory name, evaluated now (the pid is the current one).
    pub fn worker_name_now(&self) -> String {
        match &self.worker_name {
            Some(w) => w.clone(),
            None => format!("{}_{}", sanitize_component(&hostname()), std::process::id()),
        }
    }

    /// `NPUPROF_MAX_DEVICE_RECORDS` as a length.
    pub fn max_device_records(&self) -> usize {
        usize::try_from(self.max_device_records).unwrap_or(usize::MAX)
    }

    pub fn max_disk_bytes(&self) -> u64 {
        self.max_disk_mb.saturating_mul(1 << 20)
    }
}

#[cfg(test)]
mod tests;
