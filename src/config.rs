//! Environment → one immutable [`Config`].
//!
//! Read once, lazily, on the first exported call (never from a constructor). Every invalid value yields one
//! warning line that names the variable, the bad value and the value used instead; warnings are collected here
//! and logged by the caller once the logger exists.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
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

/// `NPUPROF_AIC_METRICS`: torch_npu's `AiCMetrics` names, each an `aclprofAicoreMetrics` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AicMetrics {
    None,
    ArithmeticUtilization,
    PipeUtilization,
    Memory,
    MemoryL0,
    ResourceConflictRatio,
    MemoryUB,
    L2Cache,
    MemoryAccess,
}

impl AicMetrics {
    /// (torch_npu `AiCMetrics` name, `ACL_AICORE_*` name, `aclprofAicoreMetrics` value).
    pub const TABLE: [(AicMetrics, &'static str, &'static str, u32); 9] = [
        (AicMetrics::None, "None", "ACL_AICORE_NONE", 0xFF),
        (
            AicMetrics::ArithmeticUtilization,
            "ArithmeticUtilization",
            "ACL_AICORE_ARITHMETIC_UTILIZATION",
            0,
        ),
        (
            AicMetrics::PipeUtilization,
            "PipeUtilization",
            "ACL_AICORE_PIPE_UTILIZATION",
            1,
        ),
        (
            AicMetrics::Memory,
            "Memory",
            "ACL_AICORE_MEMORY_BANDWIDTH",
            2,
        ),
        (
            AicMetrics::MemoryL0,
            "MemoryL0",
            "ACL_AICORE_L0B_AND_WIDTH",
            3,
        ),
        (
            AicMetrics::ResourceConflictRatio,
            "ResourceConflictRatio",
            "ACL_AICORE_RESOURCE_CONFLICT_RATIO",
            4,
        ),
        (AicMetrics::MemoryUB, "MemoryUB", "ACL_AICORE_MEMORY_UB", 5),
        (AicMetrics::L2Cache, "L2Cache", "ACL_AICORE_L2_CACHE", 6),
        (
            AicMetrics::MemoryAccess,
            "MemoryAccess",
            "ACL_AICORE_MEMORY_ACCESS",
            8,
        ),
    ];

    fn row(self) -> (AicMetrics, &'static str, &'static str, u32) {
        Self::TABLE
            .into_iter()
            .find(|r| r.0 == self)
            .unwrap_or(Self::TABLE[0])
    }
    pub fn name(self) -> &'static str {
        self.row().1
    }
    pub fn acl_name(self) -> &'static str {
        self.row().2
    }
    pub fn value(self) -> u32 {
        self.row().3
    }
    /// Accepts the torch_npu name (`PipeUtilization`, `AiCMetrics.PipeUtilization`) or the ACL name
    /// (`ACL_AICORE_PIPE_UTILIZATION`), case-insensitively.
    pub fn parse(v: &str) -> Option<AicMetrics> {
        let v = v.trim();
        let v = v.strip_prefix("AiCMetrics.").unwrap_or(v);
        Self::TABLE
            .into_iter()
            .find(|r| r.1.eq_ignore_ascii_case(v) || r.2.eq_ignore_ascii_case(v))
            .map(|r| r.0)
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

/// Every variable we read, for documentation and for `profiler_metadata.json`.
pub const VARIABLES: &[&str] = &[
    "VLLM_TORCH_PROFILER_DIR",
    "PROFILER_TOKEN_THRESHOLD",
    "PROFILER_STOP_STEP",
    "VLLM_TORCH_PROFILER_RECORD_SHAPES",
    "VLLM_TORCH_PROFILER_WITH_PROFILE_MEMORY",
    "VLLM_TORCH_PROFILER_WITH_STACK",
    "VLLM_TORCH_PROFILER_WITH_FLOPS",
    "NPUPROF_BACKEND",
    "NPUPROF_LOG",
    "NPUPROF_BUFFER_KB",
    "NPUPROF_MAX_DISK_MB",
    "NPUPROF_MAX_DEVICE_RECORDS",
    "NPUPROF_WORKER_NAME",
    "NPUPROF_RANK",
    "RANK",
    "LOCAL_RANK",
    "NPUPROF_DEVICE",
    "NPUPROF_KEEP_SPOOL",
    "NPUPROF_FLUSH_TIMEOUT_S",
    "NPUPROF_LEVEL",
    "NPUPROF_AIC_METRICS",
    "NPUPROF_MSPROFTX",
    "NPUPROF_MSPROF_TIMEOUT_S",
    "NPUPROF_VENDOR_TIMEOUT_S",
    "NPUPROF_MSPTI_BUFFER_KB",
    "NPUPROF_MSPTI_BUFFERS",
    "NPUPROF_MSPTI_API",
    "NPUPROF_CONTROL",
    "ASCEND_HOME_PATH",
    "ASCEND_TOOLKIT_HOME",
];

/// Parses the boolean spellings the seeds' users write. `None` for anything else.
///
/// ```
/// use npuprof::config::parse_bool;
/// assert_eq!(parse_bool(" True "), Some(true));
/// assert_eq!(parse_bool("off"), Some(false));
/// assert_eq!(parse_bool("enabled"), None);
/// ```
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The longest a profile's device step can take after its stop: the vendor stop (`NPUPROF_VENDOR_TIMEOUT_S`),
/// then msprof and its parse (`NPUPROF_MSPROF_TIMEOUT_S` together), plus [`DEVICE_STEP_MARGIN_S`].
pub fn device_step_bound_s(vendor_timeout_s: u64, msprof_timeout_s: u64) -> u64 {
    vendor_timeout_s
        .saturating_add(msprof_timeout_s)
        .saturating_add(DEVICE_STEP_MARGIN_S)
}

/// Shows a raw value in a warning: lossy UTF-8, control characters escaped, long values cut.
fn show(v: &OsString) -> String {
    let s = String::from_utf8_lossy(v.as_bytes());
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    format!("\"{out}\"")
}

struct Reader<'a> {
    get: &'a dyn Fn(&str) -> Option<OsString>,
    warnings: Vec<String>,
    /// Variables already warned about (a variable read twice, like `LOCAL_RANK`, warns once).
    warned: Vec<&'static str>,
}

/// The one rule for empty values: a variable set to nothing or to blanks only is treated as unset (its
/// default, no warning), whatever the variable. `VLLM_TORCH_PROFILER_DIR=` is therefore "disabled" and
/// `PROFILER_TOKEN_THRESHOLD=` selects the new logic, as a Python `os.getenv(...)` truthiness check would.
fn is_blank(v: &OsString) -> bool {
    v.as_bytes().iter().all(u8::is_ascii_whitespace)
}

impl Reader<'_> {
    fn raw(&self, name: &str) -> Option<OsString> {
        (self.get)(name).filter(|v| !is_blank(v))
    }

    fn warn(&mut self, name: &'static str, v: &OsString, why: &str, used: impl std::fmt::Display) {
        if self.warned.contains(&name) {
            return;
        }
        self.warned.push(name);
        self.warnings
            .push(format!("{name}={} is {why}; using {used}", show(v)));
    }

    fn boolean(&mut self, name: &'static str) -> bool {
        let Some(v) = self.raw(name) else {
            return false;
        };
        match v.to_str().and_then(parse_bool) {
            Some(b) => b,
            None => {
                self.warn(
                    name,
                    &v,
                    "not a boolean (1/0, true/false, yes/no, on/off)",
                    "false",
                );
                false
            }
        }
    }

    /// An unsigned integer in `[min, max]`.
    fn uint(&mut self, name: &'static str, default: u64, min: u64, max: u64) -> u64 {
        let Some(v) = self.raw(name) else {
            return default;
        };
        let t = v.to_str().map(str::trim);
        match t {
            Some(t) => match t.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => n,
                Ok(n) => {
                    let used = n.clamp(min, max);
                    self.warn(name, &v, &format!("outside {min}..={max}"), used);
                    used
                }
                Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => {
                    self.warn(
                        name,
                        &v,
                        &format!("out of range (outside {min}..={max})"),
                        max,
                    );
                    max
                }
                Err(_) => {
                    self.warn(name, &v, "not an unsigned integer", default);
                    default
                }
            },
            None => {
                self.warn(name, &v, "not valid UTF-8", default);
                default
            }
        }
    }

    /// The first of `names` that is set and valid (and which one it was), else 0.
    fn first_u32(&mut self, names: &[&'static str]) -> (u32, Option<&'static str>) {
        for name in names {
            let Some(v) = self.raw(name) else { continue };
            match v.to_str().map(str::trim).map(str::parse::<u32>) {
                Some(Ok(n)) => return (n, Some(name)),
                _ => {
                    let next = names
                        .iter()
                        .skip_while(|n| *n != name)
                        .nth(1)
                        .map_or("0".to_string(), |n| format!("{n}, else 0"));
                    self.warn(name, &v, "not a rank/device number", next)
                }
            }
        }
        (0, None)
    }
}

/// The longest `NPUPROF_WORKER_NAME` in bytes: the directory name `{worker}_{17 digits}_ascend_ms` must fit
/// `NAME_MAX` (255 bytes).
pub const MAX_WORKER_NAME_BYTES: usize = 255 - 1 - 17 - crate::layout::SUFFIX.len();

/// `NPUPROF_WORKER_NAME`, made a plain directory name (one warning for each change), or `None` (one warning)
/// when it cannot be one.
fn worker_name(r: &mut Reader, v: &OsString) -> Option<String> {
    const VAR: &str = "NPUPROF_WORKER_NAME";
    const DEFAULT: &str = "{hostname}_{pid}";
    if v.to_str().is_none() {
        r.warn(VAR, v, "not valid UTF-8", DEFAULT);
        return None;
    }
    let s = String::from_utf8_lossy(v.as_bytes());
    let mut clean = sanitize_component(s.trim());
    if clean.is_empty() || clean == "." || clean == ".." {
        r.warn(VAR, v, "not usable as a directory name", DEFAULT);
        return None;
    }
    // A leading dot would hide the result (and could name `.control`): replaced, like `/`.
    if clean.starts_with('.') {
        clean.replace_range(..1, "_");
    }
    if clean.len() > MAX_WORKER_NAME_BYTES {
        r.warn(
            VAR,
            v,
            &format!(
                "{} bytes long, more than a directory name can hold ({MAX_WORKER_NAME_BYTES} bytes \
                 with the timestamp and suffix)",
                clean.len()
            ),
            DEFAULT,
        );
        return None;
    }
    if clean != s {
        r.warn(VAR, v, "not a plain directory name", format!("\"{clean}\""));
    }
    Some(clean)
}

/// Replaces what cannot appear in one path component (and what would confuse msprof-analyze's
/// `name.split('_')` parsing of the timestamp, which only cares about the last three fields).
pub fn sanitize_component(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '/' || c == '\0' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
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

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `len - 1` bytes, leaving room for a terminating NUL that
    // gethostname may omit on truncation; the last byte stays 0.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let s = String::from_utf8_lossy(&buf[..end]).into_owned();
    if s.is_empty() {
        "localhost".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Config {
        let m: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Config::from_lookup(&|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_disable_profiling_and_select_the_new_logic() {
        let c = cfg(&[]);
        assert_eq!(c.profiler_dir, None);
        assert_eq!(c.trigger, Trigger::Manual);
        assert_eq!(c.buffer_kb, 1024);
        assert_eq!(c.max_disk_mb, 4096);
        assert_eq!(c.rank, 0);
        assert!(!c.with_stack && !c.record_shapes && !c.with_flops && !c.with_profile_memory);
        assert!(c.warnings.is_empty());
        assert_eq!(c.ring_capacity(), 65536);
    }

    /// Issue 15 item 10: a flush waits at least as long as the device steps it waits for. Unset, its timeout
    /// covers the vendor stop and msprof (with the margin); set shorter, it is kept with one warning (unless
    /// the backend has no device step).
    #[test]
    fn the_flush_timeout_covers_the_device_steps_or_warns() {
        assert_eq!(cfg(&[]).flush_timeout_s, 60 + 600 + DEVICE_STEP_MARGIN_S);
        let c = cfg(&[
            ("NPUPROF_MSPROF_TIMEOUT_S", "1000"),
            ("NPUPROF_VENDOR_TIMEOUT_S", "5"),
        ]);
        assert_eq!(c.flush_timeout_s, 1005 + DEVICE_STEP_MARGIN_S);
        // Short device steps never lower the least default.
        let c = cfg(&[
            ("NPUPROF_MSPROF_TIMEOUT_S", "10"),
            ("NPUPROF_VENDOR_TIMEOUT_S", "5"),
        ]);
        assert_eq!(c.flush_timeout_s, DEFAULT_FLUSH_TIMEOUT_S);
        assert!(c.warnings.is_empty());
        let c = cfg(&[("NPUPROF_FLUSH_TIMEOUT_S", "100")]);
        assert_eq!(c.flush_timeout_s, 100);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].starts_with("NPUPROF_FLUSH_TIMEOUT_S=100 is shorter"));
        let c = cfg(&[
            ("NPUPROF_FLUSH_TIMEOUT_S", "100"),
            ("NPUPROF_BACKEND", "host"),
        ]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = cfg(&[("NPUPROF_FLUSH_TIMEOUT_S", "720")]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn empty_or_blank_dir_means_disabled() {
        assert_eq!(cfg(&[("VLLM_TORCH_PROFILER_DIR", "")]).profiler_dir, None);
        assert_eq!(cfg(&[("VLLM_TORCH_PROFILER_DIR", "  ")]).profiler_dir, None);
        // A relative root is made absolute once, against the current directory when the config is read.
        assert_eq!(
            cfg(&[("VLLM_TORCH_PROFILER_DIR", "./p")]).profiler_dir,
            Some(std::env::current_dir().unwrap().join("p"))
        );
    }

    #[test]
    fn threshold_selects_old_logic_empty_means_unset() {
        assert_eq!(
            cfg(&[("PROFILER_TOKEN_THRESHOLD", "")]).trigger,
            Trigger::Manual
        );
        let c = cfg(&[("PROFILER_TOKEN_THRESHOLD", "1")]);
        assert_eq!(
            c.trigger,
            Trigger::Auto {
                threshold: 1,
                stop_step: 5
            }
        );
        let c = cfg(&[
            ("PROFILER_TOKEN_THRESHOLD", " 64 "),
            ("PROFILER_STOP_STEP", "3"),
        ]);
        assert_eq!(
            c.trigger,
            Trigger::Auto {
                threshold: 64,
                stop_step: 3
            }
        );
        assert!(c.warnings.is_empty());
        // Stop step without threshold is ignored (new logic).
        assert_eq!(cfg(&[("PROFILER_STOP_STEP", "3")]).trigger, Trigger::Manual);
    }

    #[test]
    fn bad_numbers_warn_with_variable_value_and_replacement() {
        let c = cfg(&[
            ("PROFILER_TOKEN_THRESHOLD", "-3"),
            ("PROFILER_STOP_STEP", "0"),
            ("NPUPROF_BUFFER_KB", "1"),
            ("NPUPROF_MAX_DISK_MB", "lots"),
        ]);
        assert_eq!(
            c.trigger,
            Trigger::Auto {
                threshold: 1,
                stop_step: 1
            }
        );
        assert_eq!(c.buffer_kb, MIN_BUFFER_KB);
        assert_eq!(c.max_disk_mb, DEFAULT_MAX_DISK_MB);
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        assert!(c.warnings[0].starts_with("PROFILER_STOP_STEP=\"0\""));
        assert!(c.warnings[0].ends_with("using 1"));
        assert!(c.warnings[1].contains("PROFILER_TOKEN_THRESHOLD=\"-3\""));
        assert!(c.warnings[1].ends_with("using 1"));
        assert!(
            c.warnings[2].contains("NPUPROF_BUFFER_KB=\"1\"") && c.warnings[2].ends_with("using 4")
        );
        assert!(c.warnings[3].contains("\"lots\"") && c.warnings[3].ends_with("using 4096"));
    }

    #[test]
    fn booleans_accept_the_documented_spellings_only() {
        for (v, want) in [
            ("1", true),
            ("TRUE", true),
            (" yes ", true),
            ("On", true),
            ("0", false),
            ("False", false),
            ("no", false),
            ("OFF", false),
        ] {
            let c = cfg(&[("VLLM_TORCH_PROFILER_WITH_STACK", v)]);
            assert_eq!(c.with_stack, want, "{v}");
            assert!(c.warnings.is_empty());
        }
        let c = cfg(&[("VLLM_TORCH_PROFILER_RECORD_SHAPES", "enabled")]);
        assert!(!c.record_shapes);
        assert_eq!(
            c.warnings,
            vec![
                "VLLM_TORCH_PROFILER_RECORD_SHAPES=\"enabled\" is not a boolean (1/0, true/false, \
                 yes/no, on/off); using false"
            ]
        );
    }

    #[test]
    fn rank_falls_through_invalid_sources() {
        assert_eq!(cfg(&[("RANK", "3"), ("LOCAL_RANK", "1")]).rank, 3);
        assert_eq!(cfg(&[("NPUPROF_RANK", "7"), ("RANK", "3")]).rank, 7);
        let c = cfg(&[("NPUPROF_RANK", "x"), ("LOCAL_RANK", "2")]);
        assert_eq!((c.rank, c.device_id), (2, 2));
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].contains("NPUPROF_RANK=\"x\"") && c.warnings[0].contains("RANK, else 0")
        );
    }

    #[test]
    #[cfg_attr(miri, ignore = "gethostname is a foreign call Miri cannot run")]
    fn worker_name_is_sanitised() {
        let c = cfg(&[("NPUPROF_WORKER_NAME", "a/b\nc")]);
        assert_eq!(c.worker_name.as_deref(), Some("a_b_c"));
        assert_eq!(c.warnings.len(), 1);
        let c = cfg(&[("NPUPROF_WORKER_NAME", "..")]);
        assert_eq!(c.worker_name, None);
        let w = c.worker_name_now();
        assert!(w.ends_with(&format!("_{}", std::process::id())), "{w}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "gethostname is a foreign call Miri cannot run")]
    fn worker_names_that_cannot_be_directory_names_warn_once_and_use_the_default() {
        use std::os::unix::ffi::OsStringExt;
        // Fits exactly: the directory name is then 255 bytes.
        let fits = "w".repeat(MAX_WORKER_NAME_BYTES);
        let c = cfg(&[("NPUPROF_WORKER_NAME", &fits)]);
        assert_eq!(c.worker_name.as_deref(), Some(fits.as_str()));
        assert!(c.warnings.is_empty());
        let dir = format!("{fits}_{}{}", "2".repeat(17), crate::layout::SUFFIX);
        assert_eq!(dir.len(), 255);
        // One byte more (a multi-byte character counts in bytes) cannot be a directory name.
        for long in [format!("{fits}w"), format!("{}é", &fits[1..])] {
            let c = cfg(&[("NPUPROF_WORKER_NAME", &long)]);
            assert_eq!(c.worker_name, None);
            assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
            assert!(c.warnings[0].contains("more than a directory name can hold"));
        }
        // A leading dot is replaced (never a hidden directory, never `.control`).
        let c = cfg(&[("NPUPROF_WORKER_NAME", ".control")]);
        assert_eq!(c.worker_name.as_deref(), Some("_control"));
        assert_eq!(c.warnings.len(), 1);
        // Non-UTF-8 warns (it used to become U+FFFD silently).
        let bad = OsString::from_vec(vec![b'w', 0xff]);
        let c = Config::from_lookup(&|k| (k == "NPUPROF_WORKER_NAME").then(|| bad.clone()));
        assert_eq!(c.worker_name, None);
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].contains("not valid UTF-8"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn local_rank_warns_once_and_overflow_is_out_of_range() {
        let c = cfg(&[("LOCAL_RANK", "x")]);
        assert_eq!((c.rank, c.device_id), (0, 0));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        let c = cfg(&[("NPUPROF_MAX_DISK_MB", "18446744073709551616")]);
        assert_eq!(c.max_disk_mb, u64::MAX / (1 << 20));
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("out of range"), "{:?}", c.warnings);
        assert!(!c.warnings[0].contains("not an unsigned integer"));
    }

    #[test]
    fn an_empty_or_blank_value_is_unset_for_every_variable() {
        for name in VARIABLES {
            for v in ["", "  ", "\t"] {
                let c = cfg(&[(name, v)]);
                let mut want = cfg(&[]);
                want.warnings.clear();
                assert_eq!(c, want, "{name}={v:?}");
            }
        }
    }

    #[test]
    fn unknown_backend_and_log_level_warn() {
        let c = cfg(&[("NPUPROF_BACKEND", "cuda"), ("NPUPROF_LOG", "loud")]);
        assert_eq!(c.backend, BackendKind::Auto);
        assert_eq!(c.log_level, log::LevelFilter::Info);
        assert_eq!(c.warnings.len(), 2);
        assert_eq!(
            cfg(&[("NPUPROF_BACKEND", " HOST ")]).backend,
            BackendKind::Host
        );
    }

    #[test]
    fn non_utf8_values_do_not_panic() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![0xff, 0xfe, b'1']);
        let c = Config::from_lookup(&|_| Some(bad.clone()));
        assert!(c.profiler_dir.is_some());
        assert!(!c.warnings.is_empty());
    }
}
