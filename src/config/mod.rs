//! Environment → one immutable [`Config`].
//!
//! Read once, lazily, on the first exported call (never from a constructor). Every invalid value yields one
//! warning line that names the variable, the bad value and the value used instead; warnings are collected here
//! and logged by the caller once the logger exists.
//!
//! - [`variables`]: every variable read;
//! - `env`: the reader of raw values and its warnings;
//! - [`metrics`]: the aclprof AI Core metric table (`NPUPROF_AIC_METRICS`);
//! - [`identity`]: the worker name, the host name.

mod env;
pub mod identity;
pub mod metrics;
pub mod variables;

pub use env::parse_bool;
use env::{show, Reader};
use identity::worker_name;
pub use identity::{hostname, sanitize_component, MAX_WORKER_NAME_BYTES};
pub use metrics::AicMetrics;
pub use variables::VARIABLES;

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

/// Which backend collects data. `auto` means "the best one available": aclprof when the CANN libraries can
/// be opened, else host-only (with one warning).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Auto,
    Host,
    Acl,
    Mspti,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Host => "host",
            BackendKind::Acl => "acl",
            BackendKind::Mspti => "mspti",
        }
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
    pub fn name(self) -> &'static str {
        match self {
            Level::Level0 => "level0",
            Level::Level1 => "level1",
            Level::Level2 => "level2",
        }
    }
}

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
    /// `NPUPROF_CONTROL`: accept start/stop requests from `npuprof trigger` through
    /// `$VLLM_TORCH_PROFILER_DIR/.control/<pid>.cmd` (polled by the drain thread).
    pub control: bool,
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
    /// Reads the process environment.
    pub fn from_env() -> Config {
        Config::from_lookup(&|k| std::env::var_os(k))
    }

    /// Reads variables through `get` (tests pass a map).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<OsString>) -> Config {
        let mut r = Reader {
            get,
            warnings: Vec::new(),
            warned: Vec::new(),
        };
        // Resolved once, now, against the current directory: a process that changes directory later still
        // writes where it would have at this moment.
        let profiler_dir = r
            .raw("VLLM_TORCH_PROFILER_DIR")
            .map(|v| match std::path::absolute(&v) {
                Ok(p) => p,
                Err(e) => {
                    r.warnings.push(format!(
                        "VLLM_TORCH_PROFILER_DIR={} cannot be made absolute ({e}); it is used as given, relative \
                         to whatever the current directory is at each start",
                        show(&v)
                    ));
                    PathBuf::from(v)
                }
            });

        let stop_step = r.uint("PROFILER_STOP_STEP", DEFAULT_STOP_STEP, 1, u32::MAX as u64);
        let trigger = if r.raw("PROFILER_TOKEN_THRESHOLD").is_some() {
            let threshold = r.uint("PROFILER_TOKEN_THRESHOLD", DEFAULT_THRESHOLD, 0, u64::MAX);
            Trigger::Auto {
                threshold,
                stop_step,
            }
        } else {
            Trigger::Manual
        };

        let record_shapes = r.boolean("VLLM_TORCH_PROFILER_RECORD_SHAPES");
        let with_profile_memory = r.boolean("VLLM_TORCH_PROFILER_WITH_PROFILE_MEMORY");
        let with_stack = r.boolean("VLLM_TORCH_PROFILER_WITH_STACK");
        let with_flops = r.boolean("VLLM_TORCH_PROFILER_WITH_FLOPS");

        let backend = match r.raw("NPUPROF_BACKEND") {
            None => BackendKind::Auto,
            Some(v) => match v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
                Some("auto") => BackendKind::Auto,
                Some("host") => BackendKind::Host,
                Some("acl") | Some("aclprof") => BackendKind::Acl,
                Some("mspti") => BackendKind::Mspti,
                _ => {
                    r.warn(
                        "NPUPROF_BACKEND",
                        &v,
                        "not a known backend (auto, host, acl, mspti)",
                        "auto",
                    );
                    BackendKind::Auto
                }
            },
        };

        let log_level = match r.raw("NPUPROF_LOG") {
            None => log::LevelFilter::Info,
            Some(v) => match v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
                Some("off") => log::LevelFilter::Off,
                Some("error") => log::LevelFilter::Error,
                Some("warn") | Some("warning") => log::LevelFilter::Warn,
                Some("info") => log::LevelFilter::Info,
                Some("debug") => log::LevelFilter::Debug,
                Some("trace") => log::LevelFilter::Trace,
                _ => {
                    r.warn(
                        "NPUPROF_LOG",
                        &v,
                        "not a log level (off, error, warn, info, debug, trace)",
                        "info",
                    );
                    log::LevelFilter::Info
                }
            },
        };

        let buffer_kb = r.uint(
            "NPUPROF_BUFFER_KB",
            DEFAULT_BUFFER_KB,
            MIN_BUFFER_KB,
            MAX_BUFFER_KB,
        );
        let max_disk_mb = r.uint(
            "NPUPROF_MAX_DISK_MB",
            DEFAULT_MAX_DISK_MB,
            1,
            u64::MAX / (1 << 20),
        );
        let max_device_records = r.uint(
            "NPUPROF_MAX_DEVICE_RECORDS",
            DEFAULT_MAX_DEVICE_RECORDS,
            1,
            u32::MAX as u64,
        );

        let worker_name = r
            .raw("NPUPROF_WORKER_NAME")
            .and_then(|v| worker_name(&mut r, &v));

        let rank = r.first_u32(&["NPUPROF_RANK", "RANK", "LOCAL_RANK"]).0;
        let (device_id, device_var) = r.first_u32(&["NPUPROF_DEVICE", "LOCAL_RANK"]);
        let device_source = device_var.unwrap_or("default");
        let keep_spool = r.boolean("NPUPROF_KEEP_SPOOL");
        let flush_set = r.raw("NPUPROF_FLUSH_TIMEOUT_S").is_some();
        let mut flush_timeout_s = r.uint(
            "NPUPROF_FLUSH_TIMEOUT_S",
            DEFAULT_FLUSH_TIMEOUT_S,
            1,
            7 * 24 * 3600,
        );
        let level = match r.raw("NPUPROF_LEVEL") {
            None => Level::Level0,
            Some(v) => match v
                .to_str()
                .map(|s| s.trim().to_ascii_lowercase().replace('_', ""))
                .as_deref()
            {
                Some("level0") | Some("0") => Level::Level0,
                Some("level1") | Some("1") => Level::Level1,
                Some("level2") | Some("2") => Level::Level2,
                _ => {
                    r.warn(
                        "NPUPROF_LEVEL",
                        &v,
                        "not a level (level0, level1, level2)",
                        "level0",
                    );
                    Level::Level0
                }
            },
        };
        let aic_metrics = match r.raw("NPUPROF_AIC_METRICS") {
            None => None,
            Some(v) => match v.to_str().and_then(AicMetrics::parse) {
                Some(m) => Some(m),
                None => {
                    r.warn(
                        "NPUPROF_AIC_METRICS",
                        &v,
                        "not an AI Core metrics set (PipeUtilization, ArithmeticUtilization, Memory, MemoryL0, \
                         MemoryUB, ResourceConflictRatio, L2Cache, MemoryAccess, None)",
                        "the level's default",
                    );
                    None
                }
            },
        };
        let msproftx = r.boolean("NPUPROF_MSPROFTX");
        let msprof_timeout_s = r.uint(
            "NPUPROF_MSPROF_TIMEOUT_S",
            DEFAULT_MSPROF_TIMEOUT_S,
            1,
            7 * 24 * 3600,
        );
        let vendor_timeout_s = r.uint(
            "NPUPROF_VENDOR_TIMEOUT_S",
            DEFAULT_VENDOR_TIMEOUT_S,
            1,
            7 * 24 * 3600,
        );

        let device_step = device_step_bound_s(vendor_timeout_s, msprof_timeout_s);
        if !flush_set {
            flush_timeout_s = flush_timeout_s.max(device_step);
        } else if flush_timeout_s < device_step && backend != BackendKind::Host {
            r.warnings.push(format!(
                "NPUPROF_FLUSH_TIMEOUT_S={flush_timeout_s} is shorter than the device steps a flush waits for \
                 (NPUPROF_VENDOR_TIMEOUT_S {vendor_timeout_s} + NPUPROF_MSPROF_TIMEOUT_S {msprof_timeout_s} + \
                 {DEVICE_STEP_MARGIN_S} s = {device_step} s); using {flush_timeout_s} as set, so \
                 npuprof_flush/npuprof_shutdown may return before the device data is added (the host result is \
                 written first; `npuprof recover` adds the device data of a process that ended meanwhile)"
            ));
        }

        let mspti_buffer_kb = r.uint("NPUPROF_MSPTI_BUFFER_KB", 4096, 64, 256 * 1024);
        let mspti_buffers = r.uint("NPUPROF_MSPTI_BUFFERS", 8, 2, 1024);
        let mspti_api = r.raw("NPUPROF_MSPTI_API").is_none() || r.boolean("NPUPROF_MSPTI_API");
        let control = r.boolean("NPUPROF_CONTROL");

        Config {
            profiler_dir,
            trigger,
            record_shapes,
            with_profile_memory,
            with_stack,
            with_flops,
            backend,
            log_level,
            buffer_kb,
            max_disk_mb,
            max_device_records,
            worker_name,
            rank,
            device_id,
            device_source,
            keep_spool,
            flush_timeout_s,
            level,
            aic_metrics,
            msproftx,
            msprof_timeout_s,
            vendor_timeout_s,
            mspti_buffer_kb,
            mspti_buffers,
            mspti_api,
            control,
            warnings: r.warnings,
        }
    }

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
