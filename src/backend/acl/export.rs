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

use crate::backend::{DeviceData, DeviceEvent, DeviceResult, Kernel, Kernels, LaneStats, Lanes};
use crate::config::Level;
use crate::error::Result;
use crate::export::json;
use crate::export::jsonparse::{stream_array, us_to_ns, Parser, Value};
use crate::export::trace_view::TraceWriter;
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
        r.set_status("host-only", None);
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
        // `file_type` does not follow a symlink: a `PROF_*` link is never taken for CANN's directory.
        .filter(|e| {
            e.file_name().to_str().is_some_and(is_prof_dir)
                && e.file_type().is_ok_and(|t| t.is_dir())
        })
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

/// Runs `msprof --export=on --output=<prof>` with its output in `log`, killed after `timeout`. msprof starts
/// in the worker directory we hold open (`fchdir(cwd)` in the child) and gets `prof` relative to it, so it
/// works on the directory npuprof created even if someone renamed or replaced its name in the root (a
/// `/proc/self/fd/N` path would name the child's own descriptors, and msprof rejects symlinked paths).
fn run_msprof(
    msprof: &Path,
    cwd: std::os::fd::RawFd,
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
    // A relative program path (a relative PATH entry) must not be looked up in the directory we chdir to.
    let mut cmd =
        Command::new(std::path::absolute(msprof).unwrap_or_else(|_| msprof.to_path_buf()));
    // SAFETY: fchdir is async-signal-safe and touches only the child's own state; `cwd` is a directory
    // descriptor the parent keeps open until the child is waited for (it is inherited across fork).
    unsafe {
        cmd.pre_exec(move || {
            if libc::fchdir(cwd) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd
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

/// CSV records as raw text with the byte spans of their fields (quotes kept), so cells can be copied into
/// another CSV without decoding and re-encoding them.
pub struct RawRecords<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> RawRecords<'a> {
    pub fn new(s: &'a str) -> Self {
        RawRecords { s, pos: 0 }
    }

    /// The next record's field spans (absolute byte ranges into the text) in `spans`; `None` at the end.
    pub fn next_into(&mut self, spans: &mut Vec<(usize, usize)>) -> Option<()> {
        let b = self.s.as_bytes();
        if self.pos >= b.len() {
            return None;
        }
        spans.clear();
        let mut field = self.pos;
        let mut quoted = false;
        let mut i = self.pos;
        while i < b.len() {
            let c = b[i];
            if quoted {
                if c == b'"' {
                    if b.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    quoted = false;
                }
            } else if c == b'"' {
                quoted = true;
            } else if c == b',' {
                spans.push((field, i));
                field = i + 1;
            } else if c == b'\n' {
                let end = if i > field && b[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                spans.push((field, end));
                self.pos = i + 1;
                return Some(());
            }
            i += 1;
        }
        spans.push((field, b.len()));
        self.pos = b.len();
        Some(())
    }
}

/// Reads one CSV record (a line, or several while a quoted field is open) into `rec`; false at the end.
fn next_csv_record(rd: &mut impl std::io::BufRead, rec: &mut Vec<u8>) -> std::io::Result<bool> {
    rec.clear();
    let mut quotes = 0usize;
    loop {
        let from = rec.len();
        if rd.read_until(b'\n', rec)? == 0 {
            return Ok(!rec.is_empty());
        }
        quotes += rec[from..].iter().filter(|&&b| b == b'"').count();
        if quotes % 2 == 0 {
            return Ok(true);
        }
    }
}

/// A raw CSV field's value: quotes removed and doubled quotes undone.
pub fn unquote(raw: &str) -> std::borrow::Cow<'_, str> {
    match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if inner.contains('"') => inner.replace("\"\"", "\"").into(),
        Some(inner) => inner.into(),
        None => raw.into(),
    }
}

/// All records of CSV text, decoded.
pub fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut rows = RawRecords::new(text);
    let mut spans = Vec::new();
    let mut out = Vec::new();
    while rows.next_into(&mut spans).is_some() {
        out.push(
            spans
                .iter()
                .map(|&(a, b)| unquote(&text[a..b]).into_owned())
                .collect(),
        );
    }
    out
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
    kernels: Kernels,
    bad_rows: u64,
}

/// Parses op_summary files (one header per file; rows whose header differs from the first are re-mapped by
/// column name).
fn op_summary(files: &[PathBuf], shift: i128) -> std::result::Result<Option<Summary>, String> {
    let mut out: Option<Summary> = None;
    for f in files {
        // Read record by record: a million-row op_summary is never in memory at once.
        let file = std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let mut rd = std::io::BufReader::with_capacity(1 << 20, file);
        let mut raw = Vec::new();
        let mut spans = Vec::new();
        let io = |e: std::io::Error| format!("{}: {e}", f.display());
        if !next_csv_record(&mut rd, &mut raw).map_err(io)? {
            continue;
        }
        let text = String::from_utf8_lossy(&raw).into_owned();
        RawRecords::new(&text).next_into(&mut spans);
        let header: Vec<String> = spans
            .iter()
            .map(|&(a, b)| unquote(&text[a..b]).trim().to_string())
            .collect();
        let col = |n: &str| header.iter().position(|h| h == n);
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
                .map(|&i| rename(&header[i]).to_string())
                .collect(),
            kernels: Kernels::default(),
            bad_rows: 0,
        });
        // This file's column for each of the first file's (renamed) columns.
        let ours: Vec<Option<usize>> = s
            .header
            .iter()
            .map(|h| kept.iter().copied().find(|&i| rename(&header[i]) == h))
            .collect();
        let start_out = s.header.iter().position(|h| h == "Start Time(us)");
        let (c_type, c_core, c_wait) =
            (col("OP Type"), col("Task Type"), col("Task Wait Time(us)"));
        let (c_stream, c_task, c_model) = (col("Stream ID"), col("Task ID"), col("Model ID"));
        let c_block = col("Block Num").or(col("Block Dim"));
        while next_csv_record(&mut rd, &mut raw).map_err(io)? {
            let text = String::from_utf8_lossy(&raw);
            if text.trim().is_empty() || RawRecords::new(&text).next_into(&mut spans).is_none() {
                continue;
            }
            if spans.len() != header.len() {
                s.bad_rows += 1;
                continue;
            }
            let field = |i: usize| unquote(&text[spans[i].0..spans[i].1]);
            let opt = |i: Option<usize>| i.map(|i| field(i).trim().to_string());
            let num = |i: Option<usize>| -> u32 {
                i.and_then(|i| field(i).trim().parse::<u64>().ok())
                    .map_or(0, |v| v.min(u32::MAX as u64) as u32)
            };
            let (Some(st), Some(d)) = (us_to_ns(&field(start)), us_to_ns(&field(dur))) else {
                s.bad_rows += 1;
                continue;
            };
            let st = rebase(st, shift);
            // The row's cells in the header's order, copied CSV-encoded as they are (one String per task),
            // with the start time re-based.
            let mut cells = String::with_capacity(spans.last().map_or(0, |l| l.1 - spans[0].0) + 8);
            for (j, &i) in ours.iter().enumerate() {
                if j > 0 {
                    cells.push(',');
                }
                match i {
                    _ if Some(j) == start_out => {
                        cells.push('"');
                        json::push_us3(&mut cells, st);
                        cells.push_str("\t\"");
                    }
                    Some(i) => cells.push_str(&text[spans[i].0..spans[i].1]),
                    None => cells.push_str("N/A"),
                }
            }
            let k = Kernel {
                start_ns: st,
                dur_ns: d,
                wait_ns: opt(c_wait).and_then(|v| us_to_ns(&v)).unwrap_or(0),
                stream_id: num(c_stream),
                task_id: num(c_task),
                model_id: num(c_model),
                block_dim: num(c_block),
                cells,
                ..Default::default()
            };
            s.kernels.push(
                field(name).as_bytes(),
                opt(c_type).as_deref().unwrap_or("N/A"),
                opt(c_core).as_deref().unwrap_or("N/A"),
                k,
            );
        }
    }
    Ok(out)
}

/// The device and CANN processes of `msprof_*.json`, written into `trace_view.json` on npuprof's pids and
/// time base while the files are read (one file in memory at a time, events not kept).
pub struct MsprofLanes {
    files: Vec<PathBuf>,
    device: u32,
    shift: i128,
    /// Also return the `Ascend Hardware` slices as kernels (when msprof wrote no op_summary).
    want_kernels: bool,
}

/// An event whose process is not named yet (msprof normally names processes first): kept until it is.
struct Pending {
    ph: u8,
    tid: u32,
    ts: u64,
    dur: u64,
    name: String,
    cat: String,
    args: String,
    id: String,
}

/// The mapping from msprof's processes to npuprof's device pids, built as `M` events arrive.
struct Procs {
    device: u32,
    /// Source pid → our slot (`None`: a process npuprof leaves out).
    slots: HashMap<u64, Option<u32>>,
    labels: HashMap<u64, String>,
    labelled: std::collections::HashSet<u64>,
    next: u32,
    pending: HashMap<u64, Vec<Pending>>,
    pending_threads: HashMap<u64, Vec<(u32, String, String)>>,
}

impl Procs {
    fn pid(&self, slot: u32) -> u32 {
        device_pid(self.device, slot)
    }

    fn write_label(
        &mut self,
        tw: &mut TraceWriter,
        src: u64,
        slot: u32,
        label: &str,
    ) -> Result<()> {
        if self.labelled.insert(src) {
            let args = format!("{{\"labels\":{}}}", json::string(label.as_bytes()));
            tw.device_event(&meta(self.pid(slot), 0, "\"process_labels\"", &args))?;
        }
        Ok(())
    }

    /// A `process_name`: assigns the slot and writes what waited for it.
    fn name(&mut self, tw: &mut TraceWriter, src: u64, name: &str, shift: i128) -> Result<u64> {
        if self.slots.contains_key(&src) {
            return Ok(0);
        }
        let slot = match name {
            "Ascend Hardware" => Some(SLOT_HARDWARE),
            "CANN" => Some(SLOT_CANN),
            // npuprof computes its own overlap lanes from the kernels.
            "Overlap Analysis" => None,
            _ if self.next < 16 => {
                self.next += 1;
                Some(self.next - 1)
            }
            _ => None,
        };
        self.slots.insert(src, slot);
        let Some(slot) = slot else {
            let dropped = self.pending.remove(&src).map_or(0, |v| v.len() as u64);
            self.pending_threads.remove(&src);
            return Ok(dropped);
        };
        let pid = self.pid(slot);
        let sort = match slot {
            SLOT_HARDWARE => 8,
            SLOT_CANN => 2,
            s => 10 + s,
        };
        let args = format!("{{\"name\":{}}}", json::string(name.as_bytes()));
        tw.device_event(&meta(pid, 0, "\"process_name\"", &args))?;
        tw.device_event(&meta(
            pid,
            0,
            "\"process_sort_index\"",
            &format!("{{\"sort_index\":{sort}}}"),
        ))?;
        if let Some(l) = self.labels.remove(&src) {
            self.write_label(tw, src, slot, &l)?;
        }
        for (tid, n, a) in self.pending_threads.remove(&src).unwrap_or_default() {
            tw.device_event(&meta(pid, tid, &n, &a))?;
        }
        for e in self.pending.remove(&src).unwrap_or_default() {
            tw.device_event(&DeviceEvent {
                ph: e.ph,
                pid,
                tid: e.tid,
                ts_ns: rebase(e.ts, shift),
                dur_ns: e.dur,
                name: &e.name,
                cat: &e.cat,
                args: &e.args,
                id: &e.id,
            })?;
        }
        Ok(0)
    }
}

fn meta<'a>(pid: u32, tid: u32, name: &'a str, args: &'a str) -> DeviceEvent<'a> {
    DeviceEvent {
        ph: b'M',
        pid,
        tid,
        ts_ns: 0,
        dur_ns: 0,
        name,
        cat: "",
        args,
        id: "",
    }
}

/// Kernels from `Ascend Hardware` slices.
fn hw_kernel(e: &DeviceEvent<'_>, out: &mut Kernels) {
    let args = Parser::new(e.args.as_bytes()).value(0).ok();
    let arg = |k: &str| args.as_ref().and_then(|a| a.get(k));
    let arg_u32 = |k: &str| {
        arg(k)
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(u32::MAX as u64) as u32
    };
    let name = Parser::new(e.name.as_bytes())
        .value(0)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let k = Kernel {
        start_ns: e.ts_ns,
        dur_ns: e.dur_ns,
        stream_id: e.tid,
        task_id: arg_u32("Task Id"),
        model_id: arg_u32("Model Id"),
        ..Default::default()
    };
    let core = arg("Task Type").and_then(Value::as_str).unwrap_or("N/A");
    out.push(name.as_bytes(), "N/A", core, k);
}

impl Lanes for MsprofLanes {
    fn write(self: Box<Self>, tw: &mut TraceWriter) -> (LaneStats, Option<String>) {
        let mut st = LaneStats::default();
        let mut procs = Procs {
            device: self.device,
            slots: HashMap::new(),
            labels: HashMap::new(),
            labelled: Default::default(),
            next: FIRST_OTHER_SLOT,
            pending: HashMap::new(),
            pending_threads: HashMap::new(),
        };
        let shift = self.shift;
        let hw_pid = device_pid(self.device, SLOT_HARDWARE);
        for f in &self.files {
            let file = match std::fs::File::open(f) {
                Ok(b) => b,
                Err(e) => return (st, Some(format!("{}: {e}", f.display()))),
            };
            let mut write_err: Option<crate::error::Error> = None;
            // Streamed in 8 MiB blocks: a timeline of millions of events is never in memory at once.
            let r = stream_array(file, 8 << 20, |p| {
                let (mut ph, mut pid, mut tid) = (b'?', 0u64, 0u64);
                let (mut ts, mut dur) = (None, None);
                let (mut name, mut cat, mut id, mut args) = ("", "", "", "");
                p.object(|k, p| {
                    match k {
                        "args" => args = p.skip(0)?,
                        "id" => id = p.skip(0)?,
                        // Kept as validated JSON literals: written back as they are.
                        "name" => name = p.skip(0)?,
                        "cat" => cat = p.skip(0)?,
                        _ => {
                            let v = p.scalar()?;
                            let v = v.as_ref();
                            match k {
                                "ph" => {
                                    ph = v
                                        .and_then(Value::as_str)
                                        .and_then(|s| s.bytes().next())
                                        .unwrap_or(b'?')
                                }
                                "pid" => pid = v.and_then(Value::as_u64).unwrap_or(0),
                                "tid" => tid = v.and_then(Value::as_u64).unwrap_or(0),
                                "ts" => ts = v.and_then(Value::num_text).and_then(us_to_ns),
                                "dur" => dur = v.and_then(Value::num_text).and_then(us_to_ns),
                                _ => {}
                            }
                        }
                    }
                    Ok(())
                })?;
                if write_err.is_some() {
                    return Ok(());
                }
                let tid32 = tid.min(u32::MAX as u64) as u32;
                let res = (|| -> Result<()> {
                    if ph == b'M' {
                        let a = Parser::new(args.as_bytes()).value(0).ok();
                        let arg =
                            |k: &str| a.as_ref().and_then(|a| a.get(k)).and_then(Value::as_str);
                        match name {
                            "\"process_name\"" => {
                                if let Some(n) = arg("name") {
                                    st.skipped += procs.name(tw, pid, n, shift)?;
                                }
                            }
                            "\"process_labels\"" => {
                                if let Some(l) = arg("labels") {
                                    match procs.slots.get(&pid) {
                                        Some(Some(slot)) => procs.write_label(tw, pid, *slot, l)?,
                                        Some(None) => {}
                                        None => {
                                            procs.labels.insert(pid, l.to_string());
                                        }
                                    }
                                }
                            }
                            "\"thread_name\"" | "\"thread_sort_index\"" if !args.is_empty() => {
                                match procs.slots.get(&pid) {
                                    Some(Some(slot)) => {
                                        tw.device_event(&meta(procs.pid(*slot), tid32, name, args))?
                                    }
                                    Some(None) => {}
                                    None => procs.pending_threads.entry(pid).or_default().push((
                                        tid32,
                                        name.to_string(),
                                        args.to_string(),
                                    )),
                                }
                            }
                            _ => {}
                        }
                        return Ok(());
                    }
                    let ph = if ph == b'I' { b'i' } else { ph };
                    let (Some(t), true) = (
                        ts,
                        matches!(ph, b'X' | b'C' | b's' | b'f' | b'i')
                            && (ph != b'X' || dur.is_some()),
                    ) else {
                        st.skipped += 1;
                        return Ok(());
                    };
                    match procs.slots.get(&pid) {
                        Some(Some(slot)) => {
                            let e = DeviceEvent {
                                ph,
                                pid: procs.pid(*slot),
                                tid: tid32,
                                ts_ns: rebase(t, shift),
                                dur_ns: dur.unwrap_or(0),
                                name,
                                cat,
                                args,
                                id,
                            };
                            tw.device_event(&e)?;
                            st.events += 1;
                            if self.want_kernels && ph == b'X' && e.pid == hw_pid {
                                hw_kernel(&e, &mut st.kernels);
                            }
                        }
                        Some(None) => st.skipped += 1,
                        None => procs.pending.entry(pid).or_default().push(Pending {
                            ph,
                            tid: tid32,
                            ts: t,
                            dur: dur.unwrap_or(0),
                            name: name.to_string(),
                            cat: cat.to_string(),
                            args: args.to_string(),
                            id: id.to_string(),
                        }),
                    }
                    Ok(())
                })();
                if let Err(e) = res {
                    write_err = Some(e);
                }
                Ok(())
            });
            if let Some(e) = write_err {
                return (st, Some(e.msg));
            }
            if let Err(e) = r {
                return (st, Some(format!("{}: {e}", f.display())));
            }
        }
        // Processes never named: their events are left out; named processes without a label get a default.
        st.skipped += procs.pending.values().map(|v| v.len() as u64).sum::<u64>();
        let named: Vec<(u64, u32)> = procs
            .slots
            .iter()
            .filter_map(|(s, slot)| slot.map(|x| (*s, x)))
            .collect();
        for (src, slot) in named {
            let label = if slot == SLOT_CANN {
                "CPU".to_string()
            } else {
                format!("NPU {}", self.device)
            };
            if let Err(e) = procs.write_label(tw, src, slot, &label) {
                return (st, Some(e.msg));
            }
        }
        (st, None)
    }
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
    let files = outputs(out_dir, "msprof", ".json");
    if !files.is_empty() {
        r.timeline = Some(Box::new(MsprofLanes {
            files,
            device,
            shift,
            want_kernels: sum.is_none(),
        }));
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
    fn collect(self: Box<Self>, profile: &Profile) -> Result<DeviceResult> {
        let mut r = DeviceResult {
            meta: self.meta.clone(),
            ..Default::default()
        };
        // Everything is reached through the worker directory's handle (`/proc/self/fd/N/...`: the directory we
        // created, whatever its name in the root is now); `self.dir` is its path at start, for messages.
        let top = &profile.dirs.top.dir;
        let here = top.proc_path();
        let profs = prof_dirs(&here);
        let Some(prof) = profs.last() else {
            let msg = format!("CANN wrote no PROF_* directory into {}", self.dir.display());
            log::warn!("{msg}");
            r.set_status("no data", Some(&msg));
            return Ok(r);
        };
        let prof_name = prof.file_name().unwrap_or_default();
        let shown = self.dir.join(prof_name);
        r.meta.push((
            "prof_dir".into(),
            json::string(shown.as_os_str().as_encoded_bytes()),
        ));
        let later = format!("msprof --export=on --output={}", shown.display());
        r.meta
            .push(("parse_command".into(), json::string(later.as_bytes())));
        let Some(msprof) = find_msprof() else {
            let msg = format!(
                "msprof not found (PATH, $ASCEND_TOOLKIT_HOME/tools/profiler/bin): the device data stays raw in {}; \
                 parse it later with `{later}`",
                shown.display()
            );
            log::warn!("{msg}");
            r.set_status("raw (msprof not found)", Some(&msg));
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
        let _ = top.mkdir("logs", crate::export::layout::DIR_MODE);
        let logs = here.join("logs");
        // Stale output from an earlier export would be mixed in (torch_npu deletes it too). Removed through
        // handles (never following a symlink), not by re-resolving `PROF_*/mindstudio_profiler_output`.
        const STALE: &str = "mindstudio_profiler_output";
        let out_dir = prof.join(STALE);
        if let Ok(p) = top.open_dir(&prof_name.to_string_lossy()) {
            if let Ok(old) = p.open_dir(STALE) {
                let _ = old.clear(16);
                let _ = p.rmdir(STALE);
            }
        }
        let t0 = Instant::now();
        match run_msprof(
            &msprof,
            std::os::fd::AsRawFd::as_raw_fd(top),
            Path::new(prof_name),
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
                    shown.display(),
                    self.dir.join("logs/msprof_export.log").display()
                );
                log::warn!("{msg}");
                r.set_status("raw (msprof failed)", Some(&msg));
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
                    shown.display()
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
                r.set_status("parsed", None);
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
                    shown.display()
                );
                log::warn!("{msg}");
                r.kernels = Kernels::default();
                r.kernel_header = None;
                r.timeline = None;
                r.set_status("raw (msprof output unreadable)", Some(&msg));
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "directory system calls")]
    fn a_symlink_named_like_cann_output_is_not_taken_for_it() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("PROF_000001_20261206_abc")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), t.path().join("PROF_000002_20261206_abc"))
            .unwrap();
        assert_eq!(
            prof_dirs(t.path()),
            [t.path().join("PROF_000001_20261206_abc")]
        );
    }

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
        let text = "a,\"\"\"8,1024;1024\"\"\",c\r\n1,2,3\nx,\"multi\nline\"";
        let r = csv_records(text);
        assert_eq!(r[0], ["a", "\"8,1024;1024\"", "c"]);
        assert_eq!(r[1], ["1", "2", "3"]);
        assert_eq!(r[2], ["x", "multi\nline"]);
        // The raw reader finds the same fields, undecoded.
        let mut rr = RawRecords::new(text);
        let mut spans = Vec::new();
        let mut raw = Vec::new();
        while rr.next_into(&mut spans).is_some() {
            raw.push(spans.iter().map(|&(a, b)| &text[a..b]).collect::<Vec<_>>());
        }
        assert_eq!(raw[0], ["a", "\"\"\"8,1024;1024\"\"\"", "c"]);
        assert_eq!(raw[2], ["x", "\"multi\nline\""]);
        assert_eq!(unquote(raw[0][1]), "\"8,1024;1024\"");
        let decoded: Vec<Vec<String>> = raw
            .iter()
            .map(|r| r.iter().map(|f| unquote(f).into_owned()).collect())
            .collect();
        assert_eq!(decoded, r);
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
        let k = &s.kernels.list[0];
        assert_eq!(
            (k.start_ns, k.dur_ns, k.stream_id, k.task_id, k.block_dim),
            (1_717_575_960_208_019_758, 151_000, 1, 10, 8)
        );
        let cells = &csv_records(&k.cells)[0];
        assert_eq!(cells.len(), s.header.len());
        assert_eq!(cells[7], "1717575960208019.758\t");
        assert_eq!(cells[11], "\"8,1024\"");
        assert_eq!(
            (
                &*s.kernels.str(k.op_type).text,
                &*s.kernels.str(k.core).text
            ),
            ("MatMul", "AI_CORE")
        );
    }
}
