//! After an aclprof profile: run CANN's `msprof --export=on` on the `PROF_*` directory (export thread only,
//! with a timeout) and turn its `mindstudio_profiler_output/` into npuprof's device rows and lanes.
//!
//! * `op_summary_*.csv` → kernels (`kernel_details.csv` keeps every op_summary column, renamed as torch_npu
//!   and MindSpore do; `op_statistic.csv`; the device columns of `step_trace_time.csv`).
//! * `msprof_*.json` → the `Ascend Hardware`, `CANN` (host API) and other device processes of
//!   `trace_view.json`, with CANN's `HostToDevice` flows (host launch → device task).
//! * `op_statistic_*.csv`, `api_statistic_*.csv` → copied (as torch_npu does).
//!
//! Time base: msprof converts device time to CANN's "local time" from `host/start_info`
//! (`collectionTimeBegin` µs ↔ `clockMonotonicRaw` ns). npuprof maps CLOCK_MONOTONIC_RAW onto its own
//! CLOCK_REALTIME base with a pair read at start; the difference of the two mappings is added to every device
//! timestamp, so device lanes line up with host lanes even if CANN's wall clock differs from ours.
//!
//! Nothing here can crash the host: a missing or failing `msprof`, or unreadable output, leaves the raw data
//! in place, logs how to parse it later, and records the reason in `profiler_metadata.json`.

use crate::backend::{DeviceData, DeviceResult, Kernel, TimelineEvent};
use crate::config::Level;
use crate::error::Result;
use crate::export::json;
use crate::export::jsonparse::{us_to_ns, Parser, Value};
use crate::session::Profile;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Host pid base of device lanes (below 2^31, as Perfetto needs); 16 pids per device.
pub const DEVICE_PID_BASE: u32 = 1 << 30;
/// Pid slots per device.
pub const SLOT_HARDWARE: u32 = 0;
pub const SLOT_CANN: u32 = 1;
pub const SLOT_OVERLAP: u32 = 2;
const FIRST_OTHER_SLOT: u32 = 3;

pub fn device_pid(device: u32, slot: u32) -> u32 {
    DEVICE_PID_BASE + (device % 64) * 16 + slot
}

/// An `auto` profile that continued host-only.
pub struct HostOnly(pub Option<String>);

impl DeviceData for HostOnly {
    fn collect(self: Box<Self>, _: &Profile) -> Result<DeviceResult> {
        let mut r = DeviceResult::default();
        r.meta.push(("status".into(), json::string(b"host-only")));
        if let Some(m) = self.0 {
            r.meta.push(("reason".into(), json::string(m.as_bytes())));
        }
        Ok(r)
    }
}

/// What an aclprof profile left behind.
pub struct AclData {
    pub dir: PathBuf,
    pub device: u32,
    pub level: Level,
    pub clocks: (u64, u64),
    pub timeout_s: u64,
    pub meta: Vec<(String, String)>,
}

fn is_prof_dir(name: &str) -> bool {
    // ^PROF_\d+_\d+_[0-9a-zA-Z]+ (torch_npu's ProfilerPathManager.get_cann_path)
    let mut it = name.strip_prefix("PROF_").map(|r| r.splitn(3, '_'));
    let Some(parts) = it.as_mut() else {
        return false;
    };
    let (Some(a), Some(b), Some(c)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|x| x.is_ascii_digit());
    digits(a) && digits(b) && !c.is_empty() && c.bytes().all(|x| x.is_ascii_alphanumeric())
}

pub fn prof_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_prof_dir) && e.path().is_dir())
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// `msprof` on PATH (as torch_npu looks it up), else in the toolkit's `tools/profiler/bin`.
pub fn find_msprof() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exe = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("msprof");
            if exe(&p) {
                return Some(p);
            }
        }
    }
    for var in ["ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH"] {
        if let Some(home) = std::env::var_os(var) {
            let p = Path::new(&home).join("tools/profiler/bin/msprof");
            if exe(&p) {
                return Some(p);
            }
        }
    }
    None
}

enum RunError {
    Spawn(String),
    Failed(String),
    Timeout(u64),
}

/// Runs `msprof --export=on --output=<prof>` with its output in `log`, killed after `timeout`.
fn run_msprof(
    msprof: &Path,
    prof: &Path,
    log: &Path,
    timeout: Duration,
) -> std::result::Result<(), RunError> {
    let out = std::fs::File::create(log)
        .map_err(|e| RunError::Spawn(format!("{}: {e}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(|e| RunError::Spawn(e.to_string()))?;
    let mut arg = std::ffi::OsString::from("--output=");
    arg.push(prof.as_os_str());
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(msprof)
        // Its own process group: a timeout kills msprof and whatever it started (the real one is a script
        // that runs Python), not only the direct child.
        .process_group(0)
        .arg("--export=on")
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| RunError::Spawn(format!("cannot run {}: {e}", msprof.display())))?;
    let t0 = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(RunError::Failed(format!("{st}: {}", tail.join(" | "))));
            }
            Ok(None) if t0.elapsed() >= timeout => {
                // SAFETY: kill(2) on the child's own process group (its pid, see `process_group(0)`).
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout(timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(RunError::Failed(e.to_string())),
        }
    }
}

/// `ts + shift`, clamped to the u64 range.
fn rebase(ts: u64, shift: i128) -> u64 {
    (ts as i128 + shift).clamp(0, u64::MAX as i128) as u64
}

/// `host/start_info` → CANN's local-time offset: local_ns = monotonic_raw_ns + offset.
fn cann_offset(prof: &Path) -> Option<i128> {
    let text = std::fs::read(prof.join("host/start_info")).ok()?;
    let v = Parser::new(&text).value(0).ok()?;
    let begin_us: u64 = v.get("collectionTimeBegin")?.num_text()?.parse().ok()?;
    let raw_ns: u64 = v.get("clockMonotonicRaw")?.num_text()?.parse().ok()?;
    Some(begin_us as i128 * 1000 - raw_ns as i128)
}

/// Output files of one kind (`op_summary`, `msprof`...) in export order (slices by index, then by name).
fn outputs(dir: &Path, kind: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<(u64, String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let rest = name.strip_prefix(kind)?.strip_prefix('_')?;
            if !name.ends_with(ext) {
                return None;
            }
            // `{kind}_{digits}...` or `{kind}_slice_{i}_{digits}...`; not `msprof_tx_...` & co.
            let (slice, rest) = match rest.strip_prefix("slice_") {
                Some(r) => {
                    let (i, r) = r.split_once('_')?;
                    (i.parse().ok()?, r)
                }
                None => (0, rest),
            };
            rest.starts_with(|c: char| c.is_ascii_digit()).then_some((
                slice,
                name.clone(),
                e.path(),
            ))
        })
        .collect();
    v.sort();
    v.into_iter().map(|x| x.2).collect()
}

/// CSV records one at a time (RFC 4180 quoting; CRLF or LF): a large op_summary is never held as cells.
pub struct CsvRecords<'a> {
    it: std::iter::Peekable<std::str::Chars<'a>>,
}

impl<'a> CsvRecords<'a> {
    pub fn new(text: &'a str) -> Self {
        CsvRecords {
            it: text.chars().peekable(),
        }
    }
}

impl Iterator for CsvRecords<'_> {
    type Item = Vec<String>;
    fn next(&mut self) -> Option<Vec<String>> {
        self.it.peek()?;
        let mut row = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        while let Some(c) = self.it.next() {
            if quoted {
                if c == '"' {
                    if self.it.peek() == Some(&'"') {
                        field.push('"');
                        self.it.next();
                    } else {
                        quoted = false;
                    }
                } else {
                    field.push(c);
                }
                continue;
            }
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\r' if self.it.peek() == Some(&'\n') => {}
                '\n' => {
                    row.push(field);
                    return Some(row);
                }
                c => field.push(c),
            }
        }
        row.push(field);
        Some(row)
    }
}

/// All records of CSV text.
pub fn csv_records(text: &str) -> Vec<Vec<String>> {
    CsvRecords::new(text).collect()
}

/// op_summary → kernel_details renames (torch_npu `_kernel_view_parser.py`, MindSpore viewer).
fn rename(col: &str) -> &str {
    match col {
        "Op Name" => "Name",
        "OP Type" => "Type",
        "Task Type" => "Accelerator Core",
        "Task Start Time(us)" => "Start Time(us)",
        "Task Duration(us)" => "Duration(us)",
        "Task Wait Time(us)" => "Wait Time(us)",
        c => c,
    }
}

struct Summary {
    header: Vec<String>,
    kernels: Vec<Kernel>,
    bad_rows: u64,
}

/// Parses op_summary files (one header per file; rows whose header differs from the first are re-mapped by
/// column name).
fn op_summary(files: &[PathBuf], shift: i128) -> std::result::Result<Option<Summary>, String> {
    let mut out: Option<Summary> = None;
    for f in files {
        let text = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let text = String::from_utf8_lossy(&text);
        let mut rows = CsvRecords::new(&text);
        let Some(header) = rows.next() else { continue };
        let col = |n: &str| header.iter().position(|h| h.trim() == n);
        let (Some(name), Some(start), Some(dur)) = (
            col("Op Name"),
            col("Task Start Time(us)"),
            col("Task Duration(us)"),
        ) else {
            return Err(format!(
                "{}: not an op_summary (no Op Name / Task Start Time(us) / Task Duration(us) column)",
                f.display()
            ));
        };
        let dev = col("Device_id");
        let kept: Vec<usize> = (0..header.len()).filter(|&i| Some(i) != dev).collect();
        let s = out.get_or_insert_with(|| Summary {
            header: kept
                .iter()
                .map(|&i| rename(header[i].trim()).to_string())
                .collect(),
            kernels: Vec::new(),
            bad_rows: 0,
        });
        let ours: Vec<Option<usize>> = s
            .header
            .iter()
            .map(|h| {
                kept.iter()
                    .copied()
                    .find(|&i| rename(header[i].trim()) == h)
            })
            .collect();
        let start_out = s.header.iter().position(|h| h == "Start Time(us)");
        let get =
            |r: &[String], i: Option<usize>| i.and_then(|i| r.get(i)).map(|s| s.trim().to_string());
        let num = |r: &[String], n: &str| -> u32 {
            get(r, col(n))
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(0, |v| v.min(u32::MAX as u64) as u32)
        };
        for r in rows {
            if r.len() != header.len() {
                s.bad_rows += 1;
                continue;
            }
            let (Some(st), Some(d)) = (us_to_ns(&r[start]), us_to_ns(&r[dur])) else {
                s.bad_rows += 1;
                continue;
            };
            let st = rebase(st, shift);
            // The row's cells in the header's order, CSV-encoded (one String per task, not one per cell).
            let mut cells = String::new();
            for (j, &i) in ours.iter().enumerate() {
                if j > 0 {
                    cells.push(',');
                }
                if Some(j) == start_out {
                    cells.push_str(&json::csv_field(&format!("{}\t", json::us3(st))));
                } else {
                    cells.push_str(&json::csv_field(
                        i.and_then(|i| r.get(i)).map_or("N/A", |v| v),
                    ));
                }
            }
            s.kernels.push(Kernel {
                name: r[name].clone().into_bytes(),
                op_type: get(&r, col("OP Type")).unwrap_or_else(|| "N/A".into()),
                core: get(&r, col("Task Type")).unwrap_or_else(|| "N/A".into()),
                start_ns: st,
                dur_ns: d,
                wait_ns: get(&r, col("Task Wait Time(us)"))
                    .and_then(|v| us_to_ns(&v))
                    .unwrap_or(0),
                stream_id: num(&r, "Stream ID"),
                task_id: num(&r, "Task ID"),
                model_id: num(&r, "Model ID"),
                block_dim: col("Block Num")
                    .or(col("Block Dim"))
                    .and_then(|i| r.get(i))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0),
                cells,
            });
        }
    }
    Ok(out)
}

/// The device and CANN processes of `msprof_*.json`, re-based onto our pids and time.
struct Timeline {
    events: Vec<TimelineEvent>,
    /// Kernels from `Ascend Hardware` slices (used when there is no op_summary).
    hw_kernels: Vec<Kernel>,
    skipped: u64,
}

fn timeline(files: &[PathBuf], device: u32, shift: i128) -> std::result::Result<Timeline, String> {
    struct Ev {
        ph: u8,
        pid: u64,
        tid: u64,
        ts: Option<u64>,
        dur: Option<u64>,
        name: String,
        cat: String,
        id: String,
        args: String,
    }
    let mut evs = Vec::new();
    let mut proc_name: HashMap<u64, String> = HashMap::new();
    let mut proc_label: HashMap<u64, String> = HashMap::new();
    let mut thread_meta: Vec<(u64, u64, String, String)> = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let mut p = Parser::new(&bytes);
        p.each_in_array(|v| {
            let ph = v.get("ph").and_then(Value::as_str).unwrap_or("");
            let pid = v.get("pid").and_then(Value::as_u64).unwrap_or(0);
            let tid = v.get("tid").and_then(Value::as_u64).unwrap_or(0);
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let args = v.member("args");
            if ph == "M" {
                let arg = |k: &str| args.and_then(|a| a.0.get(k));
                match name.as_str() {
                    "process_name" => {
                        if let Some(n) = arg("name").and_then(Value::as_str) {
                            proc_name.insert(pid, n.to_string());
                        }
                    }
                    "process_labels" => {
                        if let Some(n) = arg("labels").and_then(Value::as_str) {
                            proc_label.insert(pid, n.to_string());
                        }
                    }
                    "thread_name" | "thread_sort_index" => thread_meta.push((
                        pid,
                        tid,
                        name,
                        args.map_or("{}".into(), |a| a.1.to_string()),
                    )),
                    _ => {}
                }
                return;
            }
            evs.push(Ev {
                ph: ph.bytes().next().unwrap_or(b'?'),
                pid,
                tid,
                ts: v.get("ts").and_then(Value::num_text).and_then(us_to_ns),
                dur: v.get("dur").and_then(Value::num_text).and_then(us_to_ns),
                name,
                cat: v
                    .get("cat")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                id: v.member("id").map_or(String::new(), |m| m.1.to_string()),
                args: args.map_or(String::new(), |a| a.1.to_string()),
            });
        })
        .map_err(|e| format!("{}: {e}", f.display()))?;
    }
    // Source process → our pid slot.
    let mut slots: HashMap<u64, u32> = HashMap::new();
    let mut next = FIRST_OTHER_SLOT;
    let mut names: Vec<(u64, &String)> = proc_name.iter().map(|(k, v)| (*k, v)).collect();
    names.sort();
    for (pid, n) in names {
        let slot = match n.as_str() {
            "Ascend Hardware" => SLOT_HARDWARE,
            "CANN" => SLOT_CANN,
            // npuprof computes its own overlap lanes from the kernels.
            "Overlap Analysis" => continue,
            _ if next < 16 => {
                next += 1;
                next - 1
            }
            _ => continue,
        };
        slots.insert(pid, slot);
    }
    let mut out = Timeline {
        events: Vec::new(),
        hw_kernels: Vec::new(),
        skipped: 0,
    };
    let meta = |pid: u32, tid: u32, name: &str, args: String| TimelineEvent {
        ph: b'M',
        pid,
        tid,
        ts_ns: 0,
        dur_ns: 0,
        name: json::string(name.as_bytes()).into(),
        cat: "".into(),
        args: args.into(),
        id: "".into(),
    };
    let mut procs: Vec<(&u64, &u32)> = slots.iter().collect();
    procs.sort_by_key(|x| *x.1);
    for (src, &slot) in procs {
        let pid = device_pid(device, slot);
        let name = proc_name.get(src).cloned().unwrap_or_default();
        let label = proc_label.get(src).cloned().unwrap_or_else(|| {
            if slot == SLOT_CANN {
                "CPU".into()
            } else {
                format!("NPU {device}")
            }
        });
        let sort = match slot {
            SLOT_HARDWARE => 8,
            SLOT_CANN => 2,
            s => 10 + s,
        };
        out.events.push(meta(
            pid,
            0,
            "process_name",
            format!("{{\"name\":{}}}", json::string(name.as_bytes())),
        ));
        out.events.push(meta(
            pid,
            0,
            "process_labels",
            format!("{{\"labels\":{}}}", json::string(label.as_bytes())),
        ));
        out.events.push(meta(
            pid,
            0,
            "process_sort_index",
            format!("{{\"sort_index\":{sort}}}"),
        ));
    }
    for (src, tid, name, args) in thread_meta {
        if let Some(&slot) = slots.get(&src) {
            out.events
                .push(meta(device_pid(device, slot), tid as u32, &name, args));
        }
    }
    let rebase = |ts: u64| rebase(ts, shift);
    for e in evs {
        let (Some(&slot), Some(ts)) = (slots.get(&e.pid), e.ts) else {
            out.skipped += 1;
            continue;
        };
        if !matches!(e.ph, b'X' | b'C' | b's' | b'f' | b'i' | b'I')
            || (e.ph == b'X' && e.dur.is_none())
        {
            out.skipped += 1;
            continue;
        }
        let pid = device_pid(device, slot);
        let ts = rebase(ts);
        if slot == SLOT_HARDWARE && e.ph == b'X' {
            let mut p = Parser::new(e.args.as_bytes());
            let args = p.value(0).ok();
            let arg_u32 = |k: &str| {
                args.as_ref()
                    .and_then(|a| a.get(k))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    .min(u32::MAX as u64) as u32
            };
            out.hw_kernels.push(Kernel {
                name: e.name.clone().into_bytes(),
                op_type: "N/A".into(),
                core: args
                    .as_ref()
                    .and_then(|a| a.get("Task Type"))
                    .and_then(Value::as_str)
                    .unwrap_or("N/A")
                    .to_string(),
                start_ns: ts,
                dur_ns: e.dur.unwrap_or(0),
                stream_id: e.tid as u32,
                task_id: arg_u32("Task Id"),
                model_id: arg_u32("Model Id"),
                ..Default::default()
            });
        }
        out.events.push(TimelineEvent {
            ph: if e.ph == b'I' { b'i' } else { e.ph },
            pid,
            tid: e.tid.min(u32::MAX as u64) as u32,
            ts_ns: ts,
            dur_ns: e.dur.unwrap_or(0),
            name: json::string(e.name.as_bytes()).into(),
            cat: e.cat.into(),
            args: e.args.into(),
            id: e.id.into(),
        });
    }
    Ok(out)
}

/// Copies CANN CSVs of one kind into one file (header of the first, rows of all; torch_npu's IntegrateParser).
fn concat_csv(files: &[PathBuf]) -> Option<String> {
    let mut out = String::new();
    for (i, f) in files.iter().enumerate() {
        let text = std::fs::read_to_string(f).ok()?;
        let mut lines = text.lines();
        let header = lines.next()?;
        if i == 0 {
            out.push_str(header);
            out.push('\n');
        }
        for l in lines.filter(|l| !l.is_empty()) {
            out.push_str(l);
            out.push('\n');
        }
    }
    (!out.is_empty()).then_some(out)
}

impl AclData {
    fn status(r: &mut DeviceResult, status: &str, msg: &str) {
        r.meta.retain(|(k, _)| k != "status");
        r.meta
            .push(("status".into(), json::string(status.as_bytes())));
        r.meta
            .push(("message".into(), json::string(msg.as_bytes())));
    }
}

/// Reads msprof's `mindstudio_profiler_output/` into `r`: kernels and their columns from op_summary, the
/// device/CANN lanes from the timeline (or kernels from its `Ascend Hardware` slices when there is no
/// op_summary), CANN's op_statistic/api_statistic. Times are shifted by `shift` ns onto the host base.
pub fn parse_output(
    out_dir: &Path,
    device: u32,
    shift: i128,
    r: &mut DeviceResult,
) -> std::result::Result<(), String> {
    let sum = op_summary(&outputs(out_dir, "op_summary", ".csv"), shift)?;
    let tl = match timeline(&outputs(out_dir, "msprof", ".json"), device, shift) {
        Ok(t) => Some(t),
        Err(e) => {
            log::warn!("msprof timeline unreadable, device lanes are drawn from op_summary: {e}");
            r.meta
                .push(("timeline_error".into(), json::string(e.as_bytes())));
            None
        }
    };
    if let Some(t) = tl {
        r.meta
            .push(("timeline_events".into(), t.events.len().to_string()));
        r.meta
            .push(("timeline_skipped".into(), t.skipped.to_string()));
        r.timeline = Some(t.events);
        if sum.is_none() {
            r.kernels = t.hw_kernels;
        }
    }
    if let Some(s) = sum {
        r.meta
            .push(("op_summary_rows".into(), s.kernels.len().to_string()));
        r.meta
            .push(("op_summary_bad_rows".into(), s.bad_rows.to_string()));
        r.kernel_header = Some(s.header);
        r.kernels = s.kernels;
    }
    for (kind, file) in [
        ("op_statistic", "op_statistic.csv"),
        ("api_statistic", "api_statistic.csv"),
    ] {
        if let Some(c) = concat_csv(&outputs(out_dir, kind, ".csv")) {
            r.files.push((file.into(), c));
        }
    }
    Ok(())
}

impl DeviceData for AclData {
    fn collect(self: Box<Self>, _profile: &Profile) -> Result<DeviceResult> {
        let mut r = DeviceResult {
            meta: self.meta.clone(),
            ..Default::default()
        };
        let profs = prof_dirs(&self.dir);
        let Some(prof) = profs.last() else {
            let msg = format!("CANN wrote no PROF_* directory into {}", self.dir.display());
            log::warn!("{msg}");
            Self::status(&mut r, "no data", &msg);
            return Ok(r);
        };
        r.meta.push((
            "prof_dir".into(),
            json::string(prof.as_os_str().as_encoded_bytes()),
        ));
        let later = format!("msprof --export=on --output={}", prof.display());
        r.meta
            .push(("parse_command".into(), json::string(later.as_bytes())));
        let Some(msprof) = find_msprof() else {
            let msg = format!(
                "msprof not found (PATH, $ASCEND_TOOLKIT_HOME/tools/profiler/bin): the device data stays raw in {}; \
                 parse it later with `{later}`",
                prof.display()
            );
            log::warn!("{msg}");
            Self::status(&mut r, "raw (msprof not found)", &msg);
            return Ok(r);
        };
        // At exit the whole export must fit the exit hook's wait: give msprof at most 30 s then.
        let timeout_s = if crate::session::EXITING.load(std::sync::atomic::Ordering::Relaxed) {
            self.timeout_s.min(30)
        } else {
            self.timeout_s
        };
        log::info!(
            "Parsing: CANN data with {} --export=on (up to {}s)",
            msprof.display(),
            timeout_s
        );
        let logs = self.dir.join("logs");
        let _ = std::fs::create_dir_all(&logs);
        let out_dir = prof.join("mindstudio_profiler_output");
        // Stale output from an earlier export would be mixed in (torch_npu deletes it too).
        let _ = std::fs::remove_dir_all(&out_dir);
        let t0 = Instant::now();
        match run_msprof(
            &msprof,
            prof,
            &logs.join("msprof_export.log"),
            Duration::from_secs(timeout_s),
        ) {
            Ok(()) => {}
            Err(e) => {
                let why = match e {
                    RunError::Spawn(m) => m,
                    RunError::Failed(m) => format!("msprof --export failed ({m})"),
                    RunError::Timeout(s) => format!(
                        "msprof --export did not finish within {s}s (NPUPROF_MSPROF_TIMEOUT_S) and was killed"
                    ),
                };
                let msg = format!(
                    "{why}; the device data stays raw in {}; parse it later with `{later}` (log: {})",
                    prof.display(),
                    logs.join("msprof_export.log").display()
                );
                log::warn!("{msg}");
                Self::status(&mut r, "raw (msprof failed)", &msg);
                return Ok(r);
            }
        }
        r.meta.push((
            "msprof".into(),
            json::string(msprof.as_os_str().as_encoded_bytes()),
        ));
        r.meta
            .push(("msprof_ms".into(), t0.elapsed().as_millis().to_string()));

        // CANN's local time → our CLOCK_REALTIME base.
        let ours = self.clocks.0 as i128 - self.clocks.1 as i128;
        let shift = match cann_offset(prof) {
            // A shift beyond a day is not a clock difference but a broken start_info: ignore it.
            Some(c) if (100_000..86_400_000_000_000).contains(&(ours - c).abs()) => ours - c,
            Some(_) => 0,
            None => {
                log::warn!(
                    "{}/host/start_info unreadable: device times are used as msprof wrote them",
                    prof.display()
                );
                0
            }
        };
        r.meta.push(("clock_shift_ns".into(), shift.to_string()));
        if shift != 0 {
            log::info!(
                "CANN's clock differs from npuprof's by {:.3} ms: device lanes re-based",
                shift as f64 / 1e6
            );
        }

        let parsed = parse_output(&out_dir, self.device, shift, &mut r);
        match parsed {
            Ok(()) => {
                r.meta.retain(|(k, _)| k != "status");
                r.meta.push(("status".into(), json::string(b"parsed")));
                log::info!(
                    "Parsing: CANN data done: {} device tasks{}",
                    r.kernels.len(),
                    if self.level == Level::Level0 {
                        " (level0: no op types, op_statistic needs level1)"
                    } else {
                        ""
                    }
                );
            }
            Err(e) => {
                let msg = format!(
                    "the msprof output could not be read ({e}); the raw data stays in {}; parse it again later \
                     with `{later}`",
                    prof.display()
                );
                log::warn!("{msg}");
                r.kernels.clear();
                r.kernel_header = None;
                r.timeline = None;
                Self::status(&mut r, "raw (msprof output unreadable)", &msg);
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prof_dir_names() {
        assert!(is_prof_dir(
            "PROF_000001_20220729204439087_FMDBBBNDOAKFEOIA"
        ));
        assert!(!is_prof_dir("PROF_x_1_A"));
        assert!(!is_prof_dir("PROF_1_2_"));
        assert!(!is_prof_dir("PROF_1_2_a-b"));
        assert!(!is_prof_dir("xPROF_1_2_A"));
    }

    #[test]
    fn csv_quoting() {
        let r = csv_records("a,\"\"\"8,1024;1024\"\"\",c\r\n1,2,3\nx");
        assert_eq!(r[0], ["a", "\"8,1024;1024\"", "c"]);
        assert_eq!(r[1], ["1", "2", "3"]);
        assert_eq!(r[2], ["x"]);
    }

    #[test]
    fn output_files_in_slice_order() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "op_summary_slice_1_20240101000000.csv",
            "op_summary_slice_0_20240101000000.csv",
            "op_statistic_20240101000000.csv",
            "msprof_20240101000000.json",
            "msprof_tx_20240101000000.json",
        ] {
            std::fs::write(d.path().join(n), "").unwrap();
        }
        let names = |k, e| {
            outputs(d.path(), k, e)
                .iter()
                .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("op_summary", ".csv"),
            [
                "op_summary_slice_0_20240101000000.csv",
                "op_summary_slice_1_20240101000000.csv"
            ]
        );
        assert_eq!(names("msprof", ".json"), ["msprof_20240101000000.json"]);
    }

    #[test]
    fn op_summary_rows_become_kernels_with_renamed_columns() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("op_summary_1.csv");
        std::fs::write(
            &f,
            "Device_id,Model ID,Task ID,Stream ID,Op Name,OP Type,OP State,Task Type,Task Start Time(us),\
Task Duration(us),Task Wait Time(us),Block Num,Input Shapes\n\
0,4294967295,10,1,MatMulV3,MatMul,dynamic,AI_CORE,1717575960208020.758\t,151.000,0,8,\"\"\"8,1024\"\"\"\n\
0,4294967295,11,1,short\n",
        )
        .unwrap();
        let s = op_summary(&[f], -1000).unwrap().unwrap();
        assert_eq!(s.bad_rows, 1);
        assert_eq!(
            s.header,
            [
                "Model ID",
                "Task ID",
                "Stream ID",
                "Name",
                "Type",
                "OP State",
                "Accelerator Core",
                "Start Time(us)",
                "Duration(us)",
                "Wait Time(us)",
                "Block Num",
                "Input Shapes"
            ]
        );
        let k = &s.kernels[0];
        assert_eq!(
            (k.start_ns, k.dur_ns, k.stream_id, k.task_id, k.block_dim),
            (1_717_575_960_208_019_758, 151_000, 1, 10, 8)
        );
        let cells = &csv_records(&k.cells)[0];
        assert_eq!(cells.len(), s.header.len());
        assert_eq!(cells[7], "1717575960208019.758\t");
        assert_eq!(cells[11], "\"8,1024\"");
        assert_eq!((k.op_type.as_str(), k.core.as_str()), ("MatMul", "AI_CORE"));
    }
}
