//! [`Config::from_lookup`]: the variables read in named steps, in a fixed order (the order of the warnings).

use super::env::{show, Reader};
use super::identity::identity;
use super::*;

/// The longest timeout any `*_TIMEOUT_S` variable accepts: a week.
const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;

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
        let profiler_dir = profiler_dir(&mut r);
        let trigger = trigger(&mut r);
        let record_shapes = r.boolean("VLLM_TORCH_PROFILER_RECORD_SHAPES");
        let with_profile_memory = r.boolean("VLLM_TORCH_PROFILER_WITH_PROFILE_MEMORY");
        let with_stack = r.boolean("VLLM_TORCH_PROFILER_WITH_STACK");
        let with_flops = r.boolean("VLLM_TORCH_PROFILER_WITH_FLOPS");
        let backend = backend(&mut r);
        let log_level = log_level(&mut r);
        let (buffer_kb, max_disk_mb, max_device_records) = sizes(&mut r);
        let id = identity(&mut r);
        let keep_spool = r.boolean("NPUPROF_KEEP_SPOOL");
        // Read here (its warning, if any, comes in this place); its default depends on the device timeouts.
        let flush = flush_timeout(&mut r);
        let level = level(&mut r);
        let aic_metrics = aic_metrics(&mut r);
        let msproftx = r.boolean("NPUPROF_MSPROFTX");
        let msprof_timeout_s = r.uint(
            "NPUPROF_MSPROF_TIMEOUT_S",
            DEFAULT_MSPROF_TIMEOUT_S,
            1,
            MAX_TIMEOUT_S,
        );
        let vendor_timeout_s = r.uint(
            "NPUPROF_VENDOR_TIMEOUT_S",
            DEFAULT_VENDOR_TIMEOUT_S,
            1,
            MAX_TIMEOUT_S,
        );
        let flush_timeout_s =
            flush_covering_device_steps(&mut r, flush, backend, vendor_timeout_s, msprof_timeout_s);
        let mspti_buffer_kb = r.uint("NPUPROF_MSPTI_BUFFER_KB", 4096, 64, 256 * 1024);
        let mspti_buffers = r.uint("NPUPROF_MSPTI_BUFFERS", 8, 2, 1024);
        let mspti_api = r.raw("NPUPROF_MSPTI_API").is_none() || r.boolean("NPUPROF_MSPTI_API");
        let window = window(&mut r);
        let control = r.boolean("NPUPROF_CONTROL");
        let export_type = export_type(&mut r);
        let trace_format = trace_format(&mut r);
        let trace_gzip = r.boolean("NPUPROF_TRACE_GZIP");
        let ascend_home_path = r.raw("ASCEND_HOME_PATH").map(PathBuf::from);
        let ascend_toolkit_home = r.raw("ASCEND_TOOLKIT_HOME").map(PathBuf::from);

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
            worker_name: id.worker_name,
            rank: id.rank,
            rank_source: id.rank_source,
            device_id: id.device_id,
            device_source: id.device_source,
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
            window,
            control,
            export_type,
            trace_format,
            trace_gzip,
            ascend_home_path,
            ascend_toolkit_home,
            warnings: r.warnings,
        }
    }
}

/// `NPUPROF_DELAY_STEPS`, `NPUPROF_MAX_STEPS`, `NPUPROF_MAX_SECONDS` (each 0, no bound, by default).
fn window(r: &mut Reader) -> Window {
    Window {
        delay_steps: r.uint("NPUPROF_DELAY_STEPS", 0, 0, MAX_WINDOW_STEPS),
        max_steps: r.uint("NPUPROF_MAX_STEPS", 0, 0, MAX_WINDOW_STEPS),
        max_seconds: r.uint("NPUPROF_MAX_SECONDS", 0, 0, MAX_WINDOW_SECONDS),
    }
}

/// `VLLM_TORCH_PROFILER_DIR`, resolved once, now, against the current directory: a process that changes
/// directory later still writes where it would have at this moment.
fn profiler_dir(r: &mut Reader) -> Option<PathBuf> {
    let v = r.raw("VLLM_TORCH_PROFILER_DIR")?;
    Some(match std::path::absolute(&v) {
        Ok(p) => p,
        Err(e) => {
            r.warnings.push(format!(
                "VLLM_TORCH_PROFILER_DIR={} cannot be made absolute ({e}); it is used as given, relative \
                 to whatever the current directory is at each start",
                show(&v)
            ));
            PathBuf::from(v)
        }
    })
}

/// `PROFILER_TOKEN_THRESHOLD` set → the old logic with `PROFILER_STOP_STEP`; unset → the new (manual) logic.
fn trigger(r: &mut Reader) -> Trigger {
    let stop_step = r.uint("PROFILER_STOP_STEP", DEFAULT_STOP_STEP, 1, u32::MAX as u64);
    if r.raw("PROFILER_TOKEN_THRESHOLD").is_some() {
        let threshold = r.uint("PROFILER_TOKEN_THRESHOLD", DEFAULT_THRESHOLD, 0, u64::MAX);
        Trigger::Auto {
            threshold,
            stop_step,
        }
    } else {
        Trigger::Manual
    }
}

fn backend(r: &mut Reader) -> BackendKind {
    let Some(v) = r.raw("NPUPROF_BACKEND") else {
        return BackendKind::Auto;
    };
    match v.to_str().and_then(BackendKind::parse) {
        Some(b) => b,
        None => {
            r.warn(
                "NPUPROF_BACKEND",
                &v,
                "not a known backend (auto, host, acl, mspti)",
                "auto",
            );
            BackendKind::Auto
        }
    }
}

fn log_level(r: &mut Reader) -> log::LevelFilter {
    let Some(v) = r.raw("NPUPROF_LOG") else {
        return log::LevelFilter::Info;
    };
    match v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
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
    }
}

/// The memory and disk bounds: (`NPUPROF_BUFFER_KB`, `NPUPROF_MAX_DISK_MB`, `NPUPROF_MAX_DEVICE_RECORDS`).
fn sizes(r: &mut Reader) -> (u64, u64, u64) {
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
    (buffer_kb, max_disk_mb, max_device_records)
}

/// `NPUPROF_FLUSH_TIMEOUT_S` as read, and whether it was set.
struct FlushTimeout {
    set: bool,
    s: u64,
}

fn flush_timeout(r: &mut Reader) -> FlushTimeout {
    let set = r.raw("NPUPROF_FLUSH_TIMEOUT_S").is_some();
    let s = r.uint(
        "NPUPROF_FLUSH_TIMEOUT_S",
        DEFAULT_FLUSH_TIMEOUT_S,
        1,
        MAX_TIMEOUT_S,
    );
    FlushTimeout { set, s }
}

/// The flush timeout in effect: unset, long enough for the device steps a flush waits for; set shorter, kept
/// with a warning (unless the backend has no device step).
fn flush_covering_device_steps(
    r: &mut Reader,
    flush: FlushTimeout,
    backend: BackendKind,
    vendor_timeout_s: u64,
    msprof_timeout_s: u64,
) -> u64 {
    let device_step = device_step_bound_s(vendor_timeout_s, msprof_timeout_s);
    let flush_timeout_s = flush.s;
    if !flush.set {
        return flush_timeout_s.max(device_step);
    }
    if flush_timeout_s < device_step && backend != BackendKind::Host {
        r.warnings.push(format!(
            "NPUPROF_FLUSH_TIMEOUT_S={flush_timeout_s} is shorter than the device steps a flush waits for \
             (NPUPROF_VENDOR_TIMEOUT_S {vendor_timeout_s} + NPUPROF_MSPROF_TIMEOUT_S {msprof_timeout_s} + \
             {DEVICE_STEP_MARGIN_S} s = {device_step} s); using {flush_timeout_s} as set, so \
             npuprof_flush/npuprof_shutdown may return before the device data is added (the host result is \
             written first; `npuprof recover` adds the device data of a process that ended meanwhile)"
        ));
    }
    flush_timeout_s
}

fn level(r: &mut Reader) -> Level {
    let Some(v) = r.raw("NPUPROF_LEVEL") else {
        return Level::Level0;
    };
    match v.to_str().and_then(Level::parse) {
        Some(l) => l,
        None => {
            r.warn(
                "NPUPROF_LEVEL",
                &v,
                &format!("not a level ({})", Level::spelled_list()),
                Level::Level0.name(),
            );
            Level::Level0
        }
    }
}

fn export_type(r: &mut Reader) -> ExportType {
    let Some(v) = r.raw("NPUPROF_EXPORT_TYPE") else {
        return ExportType::TextAndDb;
    };
    match v.to_str().and_then(ExportType::parse) {
        Some(t) => t,
        None => {
            r.warn(
                "NPUPROF_EXPORT_TYPE",
                &v,
                "not an export type (text, db, text,db)",
                ExportType::TextAndDb.name(),
            );
            ExportType::TextAndDb
        }
    }
}

fn trace_format(r: &mut Reader) -> TraceFormat {
    let Some(v) = r.raw("NPUPROF_TRACE_FORMAT") else {
        return TraceFormat::Json;
    };
    match v.to_str().and_then(TraceFormat::parse) {
        Some(f) => f,
        None => {
            r.warn(
                "NPUPROF_TRACE_FORMAT",
                &v,
                "not a trace format (json, perfetto, both)",
                TraceFormat::Json.name(),
            );
            TraceFormat::Json
        }
    }
}

fn aic_metrics(r: &mut Reader) -> Option<AicMetrics> {
    let v = r.raw("NPUPROF_AIC_METRICS")?;
    match v.to_str().and_then(AicMetrics::parse) {
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
    }
}
