//! `npuprof recover DIR`: a worker directory whose result files are missing still holds its spool: the
//! process died without `npuprof_stop` (`kill -9`, a crash, the OOM killer), or ended while its export ran.
//! Every batch the drain thread moved out of the rings was written to the spool whole (frames are appended
//! whole and flushed per batch). This turns that spool into the usual result, whatever frames it holds:
//!
//! * with a STOP frame, the profile ends where the process stopped it, with its stop reason and counters;
//! * without one, it ends at its last recorded event, the tick rate is the one written at start, and the
//!   drop counters are those of the last COUNTERS frame (the metadata says "as of" when);
//! * the configuration is the one the process ran with (recorded in the START frame), not `recover`'s own
//!   environment; rank and pid are kept as written;
//! * `profiler_metadata.json` says it was recovered. A torn last frame is reported and skipped;
//! * the device data is rebuilt too: an MSPTI profile's `FRAMEWORK/mspti.spool` is read through the MSPTI
//!   export (its names from `FRAMEWORK/mspti.names`), an aclprof profile's `PROF_*` raw data is parsed with
//!   `msprof --export=on` (or, without msprof, the metadata says how to parse it later).
//!
//! A result counts as finished when its `profiler_metadata.json` says so: the export writes the host result
//! first with `npuprof.device_data: "pending"` and adds the device data after, so a process that ended in
//! between leaves `pending` (or `abandoned`, when its device step was given up at exit): `recover` finishes
//! such a result (host and device, from the spools). Any other `device_data`, or a metadata file without it
//! (written before it existed, always complete), is a finished result and is refused.
//!
//! A spool whose writer is alive is refused (exit 1, naming the pid): the writing process holds an advisory
//! `flock` on it from its first frame to the end of its export. Where the filesystem has no `flock`, the pid
//! and its start time (also in the START frame) decide, so a reused pid is not taken for the writer.
//! Directories are opened by handle and never through a symlink; `ASCEND_PROFILER_OUTPUT` must be a real
//! directory (or absent: then it is created).

use crate::config::Config;
use crate::device::{DeviceData, NoDeviceData};
use crate::dir::{Dir, Kind};
use crate::error::{Error, Result, Status};
use crate::export::ExportJob;
use crate::layout;
use crate::profile::{counter_keys, Counters};
use crate::profile::{BackendId, Profile, StopReason};
use crate::record::clock::Conversion;
use crate::spool::{self, Frame, Reader};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

/// What `recover` found and wrote.
#[derive(Debug)]
pub struct Recovered {
    pub records: u64,
    pub slices: u64,
    pub torn_frame_at: Option<u64>,
}

/// The exit a recovered profile's export sees: never begun (recover runs outside the profiled process).
static RECOVER_EXIT: crate::process::Exit = crate::process::Exit::new();

/// The device data a recovered profile can still have: the MSPTI spool, or CANN's raw `PROF_*` data.
fn recovered_device(
    p: &Profile,
    kv: &BTreeMap<String, String>,
    stop_ns: u64,
) -> Box<dyn DeviceData> {
    let recovered = || {
        vec![(
            "recovered_by".to_string(),
            crate::format::json::string(b"npuprof recover"),
        )]
    };
    match p.backend {
        BackendId::Mspti => {
            let fw = &p.dirs.framework;
            let Ok((f, _)) = fw.open_file(crate::layout::MSPTI_SPOOL_NAME) else {
                log::info!(
                    "{}: no MSPTI spool; the result has host data only",
                    p.dir.display()
                );
                return Box::new(NoDeviceData);
            };
            // Records are appended after they complete: none ends after the spool was last written.
            let written_ns = f
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as u64);
            Box::new(crate::backend::mspti::MsptiData {
                device: p.device_id,
                host_only: false,
                meta: recovered(),
                window: (p.anchor.1, stop_ns.max(written_ns)),
                names: crate::backend::mspti::names_file::NameSource::read(fw),
            })
        }
        BackendId::Acl => {
            let clocks = (
                num(kv, "clock_realtime_ns").unwrap_or(0),
                num(kv, "clock_monoraw_ns").unwrap_or(0),
            );
            Box::new(crate::backend::acl::export::AclData {
                dir: p.dir.clone(),
                device: p.device_id,
                level: p.config.level,
                clocks,
                timeout_s: p.config.msprof_timeout_s,
                meta: recovered(),
            })
        }
        BackendId::Host => Box::new(NoDeviceData),
    }
}

fn invalid(msg: String) -> Error {
    Error::new(Status::InvalidArgument, msg)
}

fn num(kv: &BTreeMap<String, String>, k: &str) -> Result<u64> {
    kv.get(k)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| invalid(format!("spool start frame has no {k}")))
}

/// A 32-bit value as written (a pid or rank past u32 is not something a process wrote: refused, not cut).
fn num32(kv: &BTreeMap<String, String>, k: &str) -> Result<u32> {
    let v = kv
        .get(k)
        .ok_or_else(|| invalid(format!("spool start frame has no {k}")))?;
    v.parse().map_err(|_| {
        invalid(format!(
            "spool start frame has an invalid {k} {v:?} (not a 32-bit unsigned integer)"
        ))
    })
}

/// The stop reason a STOP frame names.
fn reason_named(name: Option<&String>) -> StopReason {
    const ALL: [StopReason; 8] = [
        StopReason::Manual,
        StopReason::StepLimit,
        StopReason::MaxSteps,
        StopReason::MaxSeconds,
        StopReason::DiskLimit,
        StopReason::IoError,
        StopReason::Shutdown,
        StopReason::Exit,
    ];
    ALL.into_iter()
        .find(|r| name.is_some_and(|n| n == r.name()))
        .unwrap_or(StopReason::Recovered)
}

/// The configuration recorded in the START frame (`env.*` keys), read as the process read its environment.
/// `NPUPROF_KEEP_SPOOL` set for `recover` itself also keeps the spool.
fn recorded_config(kv: &BTreeMap<String, String>) -> Config {
    let vars: BTreeMap<&str, &String> = kv
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(spool::CONFIG_PREFIX).map(|k| (k, v)))
        .collect();
    let mut c = Config::from_lookup(&|k| vars.get(k).map(|v| OsString::from(v.as_str())));
    c.keep_spool |= std::env::var("NPUPROF_KEEP_SPOOL")
        .ok()
        .and_then(|v| crate::config::parse_bool(&v))
        .unwrap_or(false);
    c.warnings.clear();
    c
}

/// Reads the START frame only (for the pid of a live writer).
fn start_frame(file: &File, len: u64) -> Option<BTreeMap<String, String>> {
    let mut rd = Reader::new(BufReader::new(file), len);
    match rd.next_frame() {
        Some(Frame::Start(kv)) => Some(kv),
        _ => None,
    }
}

/// Whether the process that wrote `kv` is alive: its pid exists with the start time it recorded.
fn writer_alive(kv: &BTreeMap<String, String>) -> Option<bool> {
    let pid: u32 = kv.get("pid")?.parse().ok()?;
    let t: u64 = kv.get("pid_start_time")?.parse().ok()?;
    Some(spool::process_start_time(pid) == Some(t))
}

/// Refuses a spool whose writer is alive; keeps the lock (when taken) for the caller.
fn check_not_live(file: &File, len: u64, spool_path: &Path) -> Result<()> {
    let pid = |kv: &Option<BTreeMap<String, String>>| {
        kv.as_ref()
            .and_then(|kv| kv.get("pid").cloned())
            .unwrap_or_else(|| "unknown".into())
    };
    match spool::try_lock(file) {
        spool::Lock::Acquired => Ok(()),
        spool::Lock::Busy => {
            let kv = start_frame(file, len);
            let who = match kv.as_ref().and_then(writer_alive) {
                Some(false) => format!(
                    "its lock is held by a live process (its writer, pid {}, has ended: a process it forked \
                     may hold it)",
                    pid(&kv)
                ),
                _ if kv.is_none() => "its writer holds its lock and has not written its first frame yet"
                    .to_string(),
                _ => format!(
                    "its writer, pid {}, is alive and holds its lock",
                    pid(&kv)
                ),
            };
            Err(invalid(format!(
                "{} is a live profile: {who}; recover refuses it (stop it with npuprof_stop or `npuprof \
                 trigger`, or wait for the process to end)",
                spool_path.display()
            )))
        }
        spool::Lock::Unsupported(e) => {
            let kv = start_frame(file, len);
            if kv.as_ref().and_then(writer_alive) == Some(true) {
                return Err(invalid(format!(
                    "{} is a live profile: its writer, pid {}, is alive (the filesystem cannot lock: {e}); \
                     recover refuses it",
                    spool_path.display(),
                    pid(&kv)
                )));
            }
            Ok(())
        }
    }
}

/// Removes the partial files (`*.tmp`, regular files only) an interrupted export left in `d`: the writer is
/// gone (we hold its lock), and they would stop the export from creating its files.
fn remove_partial(d: &Dir, path: &Path) -> Result<()> {
    // A result directory holds a dozen files; more names than this are not ours to clean.
    const MAX: usize = 4096;
    let names = d
        .names(MAX)
        .map_err(|e| Error::io("cannot read", path, &e))?;
    for n in names.iter().filter(|n| n.ends_with(".tmp")) {
        let is_file = d
            .stat_at(n)
            .ok()
            .flatten()
            .is_some_and(|s| s.kind == Kind::File);
        if is_file {
            d.unlink(n)
                .map_err(|e| Error::io("cannot remove", &path.join(n), &e))?;
            log::info!(
                "removed {} (left by an interrupted export)",
                path.join(n).display()
            );
        }
    }
    Ok(())
}

/// Refuses a directory whose result is finished; logs that an unfinished one (host data written) is finished.
fn refuse_finished(wd: &Dir, dir: &Path) -> Result<()> {
    match crate::results::stage(wd, dir)? {
        Some(s) if !s.unfinished() => {
            return Err(invalid(format!(
                "{} is already a finished result",
                dir.display()
            )))
        }
        Some(s) => log::info!(
            "{}: host data written, device data {}: finishing it",
            dir.display(),
            s.name()
        ),
        None => {}
    }
    Ok(())
}

/// Opens `FRAMEWORK/npuprof.spool` through the worker directory's handle; returns the file and its size.
fn open_spool(wd: &Dir, dir: &Path, spool_path: &Path) -> Result<(File, u64)> {
    let fw = wd
        .open_dir(layout::FRAMEWORK_DIR)
        .map_err(|e| Error::io("cannot open", &dir.join(layout::FRAMEWORK_DIR), &e))?;
    let (file, st) = fw
        .open_file(layout::SPOOL_NAME)
        .map_err(|e| Error::io("cannot open", spool_path, &e))?;
    Ok((file, st.size))
}

/// Makes `ASCEND_PROFILER_OUTPUT` ready for the export: created when absent, cleared of partial files when a
/// directory, refused when a symlink or anything else.
fn prepare_output(wd: &Dir, dir: &Path) -> Result<()> {
    let out_path = dir.join(layout::OUTPUT_DIR);
    let st = wd
        .stat_at(layout::OUTPUT_DIR)
        .map_err(|e| Error::io("cannot stat", &out_path, &e))?;
    match st.map(|s| s.kind) {
        None => {
            wd.mkdir(layout::OUTPUT_DIR, 0o750)
                .map_err(|e| Error::io("cannot create", &out_path, &e))?;
        }
        Some(Kind::Dir) => {
            let out = wd
                .open_dir(layout::OUTPUT_DIR)
                .map_err(|e| Error::io("cannot open", &out_path, &e))?;
            remove_partial(&out, &out_path)?;
        }
        Some(Kind::Symlink) => {
            return Err(invalid(format!(
                "{} is a symbolic link; recover never writes through one (remove it to recover)",
                out_path.display()
            )))
        }
        Some(_) => {
            return Err(invalid(format!(
                "{} is not a directory",
                out_path.display()
            )))
        }
    }
    Ok(())
}

/// What one pass over the spool found.
struct Scan {
    /// The first START frame.
    start: BTreeMap<String, String>,
    stop: Option<BTreeMap<String, String>>,
    last_counters: Option<BTreeMap<String, String>>,
    /// The latest record tick (0 without records).
    last_tick: u64,
    records: u64,
    torn_frame_at: Option<u64>,
}

/// Reads the spool in one linear pass: the first START frame, the STOP frame if any, the last COUNTERS frame.
fn scan_spool(file: &File, size: u64, spool_path: &Path) -> Result<Scan> {
    let mut rd = Reader::new(BufReader::with_capacity(256 << 10, file), size);
    let (mut start, mut stop, mut last_counters) = (None, None, None);
    let (mut last_tick, mut records) = (0u64, 0u64);
    while let Some(f) = rd.next_frame() {
        match f {
            Frame::Start(kv) => {
                start.get_or_insert(kv);
            }
            Frame::Records { records: r, .. } => {
                records += r.len() as u64;
                last_tick = r.iter().fold(last_tick, |m, x| m.max(x.ts));
            }
            Frame::Counters(kv) => last_counters = Some(kv),
            Frame::Stop(kv) => stop = Some(kv),
            _ => {}
        }
    }
    let torn_frame_at = match rd.damage {
        Some(spool::Damage::TornFrame(at)) => Some(at),
        Some(spool::Damage::BadHeader) => {
            return Err(invalid(format!(
                "{} is not an npuprof spool",
                spool_path.display()
            )))
        }
        None => None,
    };
    let start =
        start.ok_or_else(|| invalid(format!("{} has no start frame", spool_path.display())))?;
    Ok(Scan {
        start,
        stop,
        last_counters,
        last_tick,
        records,
        torn_frame_at,
    })
}

/// The tick conversion: the START frame's anchor, the STOP frame's rate (else the START frame's).
fn conversion(scan: &Scan) -> Result<Conversion> {
    let kv = &scan.start;
    let rate = scan.stop.as_ref().unwrap_or(kv);
    Ok(Conversion {
        anchor_tick: num(kv, "start_tick")?,
        anchor_ns: num(kv, "anchor_ns")?,
        ticks_per: num(rate, "ticks_per")
            .or_else(|_| num(kv, "ticks_per"))?
            .max(1),
        ns_per: num(rate, "ns_per").or_else(|_| num(kv, "ns_per"))?.max(1),
    })
}

/// The profile as the process started it, from its START frame (`kv`).
fn recovered_profile(
    dir: &Path,
    spool_path: std::path::PathBuf,
    dirs: layout::WorkerDirs,
    anchor: (u64, u64),
    kv: &BTreeMap<String, String>,
) -> Result<Arc<Profile>> {
    let config: &'static Config = Box::leak(Box::new(recorded_config(kv)));
    let backend = kv
        .get("backend")
        .and_then(|b| BackendId::from_name(b))
        .unwrap_or(BackendId::Host);
    Ok(Arc::new(Profile {
        gen: num(kv, "gen").unwrap_or(0),
        dir: dir.to_path_buf(),
        spool_path,
        dirs,
        anchor,
        pid: num32(kv, "pid")?,
        worker: kv.get("worker").cloned().unwrap_or_default(),
        rank: num32(kv, "rank")?,
        device_id: num32(kv, "device_id").unwrap_or(0),
        auto: kv.get("auto").is_some_and(|v| v == "true"),
        window: crate::config::Window {
            delay_steps: num(kv, "window_delay_steps").unwrap_or(0),
            max_steps: num(kv, "window_max_steps").unwrap_or(0),
            max_seconds: num(kv, "window_max_seconds").unwrap_or(0),
        },
        first_step: num(kv, "first_step").unwrap_or(0),
        tag: kv.get("tag").cloned(),
        backend,
        config,
        // `npuprof recover` runs in a process of its own, whose exit hook never finishes profiles.
        exit: &RECOVER_EXIT,
    }))
}

/// How the recovered profile ends: from its STOP frame, or else at its last record.
struct Ending {
    stop_tick: u64,
    reason: StopReason,
    counters: Counters,
    truncated: bool,
    counters_as_of_ns: Option<u64>,
}

/// The profile's end: the STOP frame's when there is one, else its last event with the last COUNTERS frame.
fn ending(scan: &Scan, conversion: &Conversion) -> Ending {
    let anchor = (conversion.anchor_tick, conversion.anchor_ns);
    match &scan.stop {
        Some(s) => Ending {
            stop_tick: num(s, "stop_tick").unwrap_or(scan.last_tick).max(anchor.0),
            reason: reason_named(s.get("reason")),
            counters: Counters::from_kv(s),
            truncated: s.get("truncated").is_some_and(|v| v == "true"),
            counters_as_of_ns: None,
        },
        None => {
            let c = scan.last_counters.as_ref();
            let as_of = c
                .and_then(|c| c.get(counter_keys::TICK))
                .and_then(|t| t.parse().ok())
                .map(|t| conversion.to_ns(t));
            Ending {
                stop_tick: scan.last_tick.max(anchor.0),
                reason: StopReason::Recovered,
                counters: c.map(Counters::from_kv).unwrap_or_default(),
                truncated: false,
                // Without a COUNTERS frame the counters are those at start: zero.
                counters_as_of_ns: Some(as_of.unwrap_or(anchor.1)),
            }
        }
    }
}

/// Recovers the worker directory `dir` (a `*_ascend_ms` directory with `FRAMEWORK/npuprof.spool`).
pub fn recover(dir: &Path) -> Result<Recovered> {
    let wd = Dir::open(dir).map_err(|e| Error::io("cannot open", dir, &e))?;
    refuse_finished(&wd, dir)?;
    let spool_path = dir.join(layout::FRAMEWORK_DIR).join(layout::SPOOL_NAME);
    let (file, size) = open_spool(&wd, dir, &spool_path)?;
    // Held (when taken) until the export below ends: a second `recover` meanwhile is refused too.
    check_not_live(&file, size, &spool_path)?;
    prepare_output(&wd, dir)?;

    remove_partial(&wd, dir)?;
    // Opened once (never through a symlink); the export writes and reads through these handles.
    let dirs = layout::WorkerDirs::open(dir)?;

    let scan = scan_spool(&file, size, &spool_path)?;
    let conversion = conversion(&scan)?;
    let anchor = (conversion.anchor_tick, conversion.anchor_ns);
    let profile = recovered_profile(dir, spool_path, dirs, anchor, &scan.start)?;
    let Ending {
        stop_tick,
        reason,
        mut counters,
        truncated,
        counters_as_of_ns,
    } = ending(&scan, &conversion);
    // What is in the spool, exactly (a torn last frame is left out).
    counters.recorded = scan.records;
    counters.spool_bytes = size;
    let device = recovered_device(&profile, &scan.start, conversion.to_ns(stop_tick));
    let job = ExportJob {
        profile,
        stop_tick,
        reason,
        device,
        counters,
        conversion,
        truncated,
        spool_error: scan.torn_frame_at.map(|o| {
            format!("the spool's last frame was torn at byte {o} (the process died while writing it) and left out")
        }),
        recovered: true,
        counters_as_of_ns,
    };
    let s = crate::export::run(job)?;
    drop(file);
    Ok(Recovered {
        records: scan.records,
        slices: s.slices,
        torn_frame_at: scan.torn_frame_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore)] // /proc
    fn a_writer_is_alive_only_with_its_recorded_start_time() {
        let me = std::process::id();
        let t = spool::process_start_time(me).unwrap();
        let kv = |pid: u32, t: u64| {
            BTreeMap::from([
                ("pid".to_string(), pid.to_string()),
                ("pid_start_time".to_string(), t.to_string()),
            ])
        };
        assert_eq!(writer_alive(&kv(me, t)), Some(true));
        // The same pid with another start time: a reused pid, not the writer.
        assert_eq!(writer_alive(&kv(me, t + 1)), Some(false));
        assert_eq!(writer_alive(&kv(u32::MAX, t)), Some(false));
        // An old spool without a start time: unknown.
        assert_eq!(
            writer_alive(&BTreeMap::from([("pid".into(), me.to_string())])),
            None
        );
    }

    #[test]
    fn stop_reasons_are_read_back_by_name() {
        for r in [StopReason::Manual, StopReason::DiskLimit, StopReason::Exit] {
            assert_eq!(reason_named(Some(&r.name().to_string())), r);
        }
        assert_eq!(
            reason_named(Some(&"???".to_string())),
            StopReason::Recovered
        );
        assert_eq!(reason_named(None), StopReason::Recovered);
    }
}
