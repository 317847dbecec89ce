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
//! in place, logs how to parse it later, and records the reason in `profiler_metadata.json`. msprof and all
//! its descendants have ended before anything is read (see `msprof.rs`); its outputs are reached through
//! directory handles from the worker directory down (a symlinked `PROF_*` or output directory is refused),
//! only regular files are opened (never blocking on a FIFO), each read no further than its size when opened,
//! and the parse is bounded in time like msprof itself.

use super::host_records::AclHostRecords;
use super::msprof::{find_msprof, run_msprof, RunError};
use super::op_summary::op_summary;
use super::outputs::{outputs, prof_dirs, read_small, Deadline};
use super::time_base::cann_offset;
use super::timeline::MsprofLanes;
use crate::config::Level;
use crate::device::{DeviceData, DeviceResult, Kernels};
use crate::dir::Dir;
use crate::error::Result;
use crate::format::json;
use crate::process::Exit;
use crate::profile::Profile;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// Moved to their own files; re-exported where other modules and the CLI use them.

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

/// The most of CANN's statistics CSVs copied (they are held in memory; a single file is not copied again).
const MAX_STATISTIC_BYTES: u64 = 256 << 20;

/// Copies CANN CSVs of one kind into one file (header of the first, rows of all; torch_npu's IntegrateParser).
/// `Err` says why they cannot be used as they are (then the caller says so in the metadata).
fn concat_csv(dir: &Dir, files: &[String]) -> std::result::Result<Option<String>, String> {
    let mut out = String::new();
    for (i, f) in files.iter().enumerate() {
        let bytes = read_small(dir, f, MAX_STATISTIC_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            format!(
                "{f} is not UTF-8 (an invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            )
        })?;
        // One file already in the form written (the usual case): used as it is, not copied.
        if files.len() == 1
            && text.ends_with('\n')
            && !text.contains('\r')
            && !text.contains("\n\n")
        {
            return Ok((!text.is_empty()).then_some(text));
        }
        if out.try_reserve(text.len()).is_err() {
            return Err(format!("no memory to copy {f} ({} bytes)", text.len()));
        }
        let mut lines = text.lines();
        let Some(header) = lines.next() else {
            continue;
        };
        if i == 0 {
            out.push_str(header);
            out.push('\n');
        }
        for l in lines.filter(|l| !l.is_empty()) {
            out.push_str(l);
            out.push('\n');
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Reads msprof's `mindstudio_profiler_output/` at `out_dir` (never through a symlink) into `r`; see
/// `parse_dir`.
pub fn parse_output(
    out_dir: &Path,
    device: u32,
    shift: i128,
    r: &mut DeviceResult,
) -> std::result::Result<(), String> {
    let dir = Dir::open(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let limit = crate::config::DEFAULT_MAX_DEVICE_RECORDS as usize;
    parse_dir(&dir, device, shift, Deadline::after(PARSE_BOUND), limit, r)
}

/// The least time the parse gets after an msprof that used (nearly) all of NPUPROF_MSPROF_TIMEOUT_S.
const PARSE_GRACE: Duration = Duration::from_secs(30);

/// The parse's time bound when no msprof timeout applies (the `parse_output` entry point).
const PARSE_BOUND: Duration = Duration::from_secs(600);

/// Reads msprof's output directory (its handle) into `r`: kernels and their columns from op_summary, the
/// device/CANN lanes from the timeline (or kernels from its `Ascend Hardware` slices when there is no
/// op_summary), CANN's op_statistic/api_statistic. Times are shifted by `shift` ns onto the host base. Only
/// regular files are read (a FIFO or device is refused, never waited for), each no further than its size
/// when opened, and reading stops at `until` (the metadata says so). At most `limit` op_summary rows are
/// kept (`NPUPROF_MAX_DEVICE_RECORDS`; the rest are counted as `device_records_cut`).
pub(crate) fn parse_dir(
    out_dir: &Dir,
    device: u32,
    shift: i128,
    until: Deadline,
    limit: usize,
    r: &mut DeviceResult,
) -> std::result::Result<(), String> {
    let sum = op_summary(
        out_dir,
        &outputs(out_dir, "op_summary", ".csv"),
        shift,
        until,
        limit,
    )?;
    let files = outputs(out_dir, "msprof", ".json");
    if !files.is_empty() {
        r.timeline = Some(Box::new(MsprofLanes {
            dir: out_dir.try_clone().map_err(|e| e.to_string())?,
            files: files.clone(),
            budget: until.0.saturating_duration_since(std::time::Instant::now()),
            device,
            shift,
            want_kernels: sum.is_none(),
            launch_limit: limit,
            ops: Default::default(),
        }));
        // The CANN API calls for the database: the timeline read again when it is written.
        r.host_records = Some(Box::new(AclHostRecords {
            dir: out_dir.try_clone().map_err(|e| e.to_string())?,
            files: files.clone(),
            shift,
            pid: std::process::id(),
            device,
            budget: until.0.saturating_duration_since(std::time::Instant::now()),
        }));
    }
    if let Some(s) = sum {
        r.meta
            .push(("op_summary_rows".into(), s.kernels.len().to_string()));
        r.meta
            .push(("op_summary_bad_rows".into(), s.bad_rows.to_string()));
        r.meta
            .push(("device_records_cut".into(), s.kernels.cut.to_string()));
        if s.kernels.cut > 0 {
            log::warn!(
                "op_summary: {} rows beyond NPUPROF_MAX_DEVICE_RECORDS={limit} left out",
                s.kernels.cut
            );
        }
        if s.cut {
            let why = "op_summary was not read to its end: the parse ran out of time (NPUPROF_MSPROF_TIMEOUT_S)";
            log::warn!("{why}");
            r.meta
                .push(("parse_cut".into(), json::string(why.as_bytes())));
        }
        r.kernel_header = Some(s.header);
        r.kernels = s.kernels;
        // msprof gives HCCL ops as op_summary rows (Task Type COMMUNICATION), without group, count or type.
        r.collectives = crate::device::from_kernels(&r.kernels, device, limit);
    }
    let mut replaced = Vec::new();
    for (kind, file, instead) in [
        (
            "op_statistic",
            crate::layout::OP_STATISTIC,
            "npuprof's op_statistic.csv (computed from the kernels) stands in for CANN's",
        ),
        (
            "api_statistic",
            crate::layout::API_STATISTIC,
            "no api_statistic.csv is written",
        ),
    ] {
        match concat_csv(out_dir, &outputs(out_dir, kind, ".csv")) {
            Ok(Some(c)) => r.files.push((file.into(), c)),
            Ok(None) => {}
            Err(why) => {
                let msg = format!("{file}: CANN's {kind} not used ({why}); {instead}");
                log::warn!("{msg}");
                replaced.push(json::string(msg.as_bytes()));
            }
        }
    }
    if !replaced.is_empty() {
        r.meta.push((
            "cann_outputs_replaced".into(),
            format!("[{}]", replaced.join(", ")),
        ));
    }
    Ok(())
}

/// msprof's output directory in a `PROF_*` directory (stale output from an earlier export is removed first).
const STALE: &str = "mindstudio_profiler_output";

/// msprof's log, in the worker directory's `logs/`.
const LOG: &str = "msprof_export.log";

/// The `PROF_*` directory of a profile: its name in the worker directory, its path at start (for messages)
/// and the command that parses it later.
struct ProfDir {
    name: String,
    shown: PathBuf,
    later: String,
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
        let Some(prof) = self.find_prof_dir(top, &mut r) else {
            return Ok(r);
        };
        let Some(msprof) = find_msprof() else {
            let msg = format!(
                "msprof not found (PATH, $ASCEND_TOOLKIT_HOME/tools/profiler/bin): the device data stays raw in {}; \
                 parse it later with `{}`",
                prof.shown.display(),
                prof.later
            );
            log::warn!("{msg}");
            r.set_status("raw (msprof not found)", Some(&msg));
            return Ok(r);
        };
        let timeout_s = self.msprof_timeout_s(profile.exit);
        log::info!(
            "Parsing: CANN data with {} --export=on (up to {}s)",
            msprof.display(),
            timeout_s
        );
        let t0 = Instant::now();
        if let Err((status, msg)) =
            self.run_msprof_export(top, &prof, &msprof, timeout_s, profile.exit, &mut r)
        {
            log::warn!("{msg}");
            r.set_status(status, Some(&msg));
            return Ok(r);
        }
        r.meta.push((
            "msprof".into(),
            json::string(msprof.as_os_str().as_encoded_bytes()),
        ));
        r.meta
            .push(("msprof_ms".into(), t0.elapsed().as_millis().to_string()));

        // msprof's output is reached through handles from the worker directory down: a `PROF_*` or
        // `mindstudio_profiler_output` that is (now) a symlink is refused, never followed.
        let prof_dir = top
            .open_dir(&prof.name)
            .map_err(|e| format!("{}: {e}", prof.name));
        let shift = self.clock_shift(prof_dir.as_ref().ok(), &prof.shown);
        r.meta.push(("clock_shift_ns".into(), shift.to_string()));
        if shift != 0 {
            log::info!(
                "CANN's clock differs from npuprof's by {:.3} ms: device lanes re-based",
                shift as f64 / 1e6
            );
        }

        // One budget for msprof and the parse together (NPUPROF_MSPROF_TIMEOUT_S bounds the whole device step
        // after the vendor stop, plus at most PARSE_GRACE for a parse msprof left no time for; the flush's
        // default waits for all of it, see `config::DEVICE_STEP_MARGIN_S`).
        let budget = Duration::from_secs(timeout_s);
        let until = Deadline::after(
            budget
                .saturating_sub(t0.elapsed())
                .max(PARSE_GRACE.min(budget)),
        );
        let parsed = prof_dir.and_then(|p| {
            p.open_dir(STALE).map_err(|e| {
                format!("{STALE} cannot be opened as a directory of this profile (a symlink is refused): {e}")
            })
        });
        let parsed = parsed.and_then(|out| {
            let limit = profile.config.max_device_records();
            parse_dir(&out, self.device, shift, until, limit, &mut r)
        });
        self.note_parse(parsed, &prof, &mut r);
        Ok(r)
    }
}

impl AclData {
    /// The newest `PROF_*` directory CANN wrote into the worker directory (noted in the device metadata with
    /// the command that parses it later); `None` (and the status says so) when there is none.
    fn find_prof_dir(&self, top: &Dir, r: &mut DeviceResult) -> Option<ProfDir> {
        let profs = prof_dirs(top);
        let Some(prof) = profs.last() else {
            let msg = format!("CANN wrote no PROF_* directory into {}", self.dir.display());
            log::warn!("{msg}");
            r.set_status("no data", Some(&msg));
            return None;
        };
        let shown = self.dir.join(prof.as_str());
        r.meta.push((
            "prof_dir".into(),
            json::string(shown.as_os_str().as_encoded_bytes()),
        ));
        let later = format!("msprof --export=on --output={}", shown.display());
        r.meta
            .push(("parse_command".into(), json::string(later.as_bytes())));
        Some(ProfDir {
            name: prof.clone(),
            shown,
            later,
        })
    }

    /// NPUPROF_MSPROF_TIMEOUT_S; at exit the whole export must fit the exit hook's wait: at most 30 s then.
    fn msprof_timeout_s(&self, exit: &Exit) -> u64 {
        if exit.exiting() {
            self.timeout_s.min(30)
        } else {
            self.timeout_s
        }
    }

    /// Runs `msprof --export=on` on `prof` (its log in `logs/`, stale output removed first). An error is the
    /// device status and the message saying why and how to parse the data later.
    fn run_msprof_export(
        &self,
        top: &Dir,
        prof: &ProfDir,
        msprof: &Path,
        timeout_s: u64,
        exit: &Exit,
        r: &mut DeviceResult,
    ) -> std::result::Result<(), (&'static str, String)> {
        let _ = top.mkdir("logs", crate::layout::DIR_MODE);
        let logs = top.open_dir("logs");
        let log = logs.as_ref().map_err(|e| e.to_string()).and_then(|l| {
            let _ = l.unlink(LOG);
            l.create_new(LOG, 0o644).map_err(|e| e.to_string())
        });
        remove_stale_output(top, &prof.name);
        let mut leftovers = 0;
        let ran = match &log {
            Ok(log) => run_msprof(
                msprof,
                std::os::fd::AsRawFd::as_raw_fd(top),
                Path::new(prof.name.as_str()),
                log,
                Duration::from_secs(timeout_s),
                exit,
                &mut leftovers,
            ),
            Err(e) => Err(RunError::Spawn(format!("logs/{LOG}: {e}"))),
        };
        // Descendants of msprof still running when it ended (killed before anything was read).
        r.meta
            .push(("msprof_leftovers_killed".into(), leftovers.to_string()));
        let Err(e) = ran else {
            return Ok(());
        };
        let status = if matches!(e, RunError::Cancelled) {
            "abandoned"
        } else {
            "raw (msprof failed)"
        };
        let why = msprof_failure(e, logs.as_ref().ok());
        let msg = format!(
            "{why}; the device data stays raw in {}; parse it later with `{}` (log: {})",
            prof.shown.display(),
            prof.later,
            self.dir.join("logs").join(LOG).display()
        );
        Err((status, msg))
    }

    /// The shift from CANN's local time to our CLOCK_REALTIME base (0 when `host/start_info` is unreadable, or
    /// says a shift beyond a day: not a clock difference but a broken start_info).
    fn clock_shift(&self, prof_dir: Option<&Dir>, shown: &Path) -> i128 {
        let ours = self.clocks.0 as i128 - self.clocks.1 as i128;
        match prof_dir.and_then(cann_offset) {
            Some(c) if (100_000..86_400_000_000_000).contains(&(ours - c).abs()) => ours - c,
            Some(_) => 0,
            None => {
                log::warn!(
                    "{}/host/start_info unreadable: device times are used as msprof wrote them",
                    shown.display()
                );
                0
            }
        }
    }

    /// The device status after the parse of msprof's output: `parsed`, or the output unreadable (then no
    /// device rows at all, and the message says how to parse it again).
    fn note_parse(
        &self,
        parsed: std::result::Result<(), String>,
        prof: &ProfDir,
        r: &mut DeviceResult,
    ) {
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
                     with `{}`",
                    prof.shown.display(),
                    prof.later
                );
                log::warn!("{msg}");
                r.kernels = Kernels::default();
                r.kernel_header = None;
                r.timeline = None;
                r.set_status("raw (msprof output unreadable)", Some(&msg));
            }
        }
    }
}

/// Stale output from an earlier export would be mixed in (torch_npu deletes it too). Removed through handles
/// (never following a symlink), not by re-resolving `PROF_*/mindstudio_profiler_output`.
fn remove_stale_output(top: &Dir, prof: &str) {
    if let Ok(p) = top.open_dir(prof) {
        if let Ok(old) = p.open_dir(STALE) {
            let _ = old.clear(16);
            let _ = p.rmdir(STALE);
        }
    }
}

/// Why msprof failed, for the device status (with the last lines of its log, read through the logs
/// directory's handle).
fn msprof_failure(e: RunError, logs: Option<&Dir>) -> String {
    match e {
        RunError::Spawn(m) => m,
        RunError::Failed(m) => {
            let text = logs
                .and_then(|l| read_small(l, LOG, 16 << 20).ok())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("msprof --export failed ({m}: {})", tail.join(" | "))
        }
        RunError::Timeout(s) => format!(
            "msprof --export did not finish within {s}s (NPUPROF_MSPROF_TIMEOUT_S) and was killed"
        ),
        RunError::Cancelled => {
            "msprof --export was stopped because the process is exiting (the exit \
                                hook's wait, NPUPROF_FLUSH_TIMEOUT_S at most 60 s, ran out)"
                .to_string()
        }
    }
}
