//! `npuprof recover DIR`: a worker directory whose process died without `npuprof_stop` (`kill -9`, a crash,
//! the OOM killer) still holds its spool: every batch the drain thread moved out of the rings was written to
//! it whole (frames are appended whole and flushed per batch). This turns that spool into the usual result:
//! the profile ends at its last recorded event, the tick rate is the one written at start, and
//! `profiler_metadata.json` says it was recovered. A torn last frame is reported and skipped.

use crate::backend::NoDeviceData;
use crate::config::Config;
use crate::drain::{Counters, ExportJob};
use crate::error::{Error, Result, Status};
use crate::export::layout;
use crate::record::clock::Conversion;
use crate::session::{Profile, StopReason};
use crate::spool::{Frame, Reader};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// What `recover` found and wrote.
#[derive(Debug)]
pub struct Recovered {
    pub records: u64,
    pub slices: u64,
    pub torn_frame_at: Option<u64>,
}

fn num(kv: &BTreeMap<String, String>, k: &str) -> Result<u64> {
    kv.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
        Error::new(
            Status::InvalidArgument,
            format!("spool start frame has no {k}"),
        )
    })
}

/// Recovers the worker directory `dir` (a `*_ascend_ms` directory with `FRAMEWORK/npuprof.spool`).
pub fn recover(dir: &Path) -> Result<Recovered> {
    let spool_path = dir.join(layout::FRAMEWORK_DIR).join(layout::SPOOL_NAME);
    let info_exists = std::fs::read_dir(dir)
        .map_err(|e| Error::io("cannot read", dir, &e))?
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("profiler_info_")
        });
    if info_exists {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("{} is already a finished result", dir.display()),
        ));
    }
    let mut rd =
        Reader::open(&spool_path).map_err(|e| Error::io("cannot open", &spool_path, &e))?;
    // Opened once (never through a symlink); the export writes and reads through these handles.
    let dirs = layout::WorkerDirs::open(dir)?;
    let mut start = None;
    let (mut last_tick, mut records) = (0u64, 0u64);
    while let Some(f) = rd.next_frame() {
        match f {
            Frame::Start(kv) => start = Some(kv),
            Frame::Records { records: r, .. } => {
                records += r.len() as u64;
                last_tick = r.iter().fold(last_tick, |m, x| m.max(x.ts));
            }
            Frame::Stop(_) => {
                return Err(Error::new(
                    Status::InvalidArgument,
                    format!(
                        "{} has a complete spool (its export was interrupted, not its recording); \
                         its files are written by the process at stop",
                        spool_path.display()
                    ),
                ))
            }
            _ => {}
        }
    }
    let torn_frame_at = match rd.damage {
        Some(crate::spool::Damage::TornFrame(at)) => Some(at),
        Some(crate::spool::Damage::BadHeader) => {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("{} is not an npuprof spool", spool_path.display()),
            ))
        }
        None => None,
    };
    let kv = start.ok_or_else(|| {
        Error::new(
            Status::InvalidArgument,
            format!("{} has no start frame", spool_path.display()),
        )
    })?;
    let anchor = (num(&kv, "start_tick")?, num(&kv, "anchor_ns")?);
    let conversion = Conversion {
        anchor_tick: anchor.0,
        anchor_ns: anchor.1,
        ticks_per: num(&kv, "ticks_per")?.max(1),
        ns_per: num(&kv, "ns_per")?.max(1),
    };
    let config: &'static Config = Box::leak(Box::new(Config::from_env()));
    let backend: &'static str = match kv.get("backend").map(String::as_str) {
        Some("acl") => "acl",
        Some("mspti") => "mspti",
        _ => "host",
    };
    let profile = Arc::new(Profile {
        gen: num(&kv, "gen").unwrap_or(0),
        dir: dir.to_path_buf(),
        spool_path,
        dirs,
        anchor,
        pid: num(&kv, "pid")? as u32,
        worker: kv.get("worker").cloned().unwrap_or_default(),
        rank: num(&kv, "rank")? as u32,
        device_id: num(&kv, "device_id").unwrap_or(0) as u32,
        auto: kv.get("auto").is_some_and(|v| v == "true"),
        backend,
        config,
    });
    let job = ExportJob {
        profile,
        stop_tick: last_tick.max(anchor.0),
        reason: StopReason::Recovered,
        device: Box::new(NoDeviceData),
        counters: Counters {
            recorded: records,
            ..Default::default()
        },
        conversion,
        truncated: false,
        spool_error: torn_frame_at.map(|o| {
            format!("the spool's last frame was torn at byte {o} (the process died while writing it) and left out")
        }),
    };
    let s = crate::export::run(job)?;
    Ok(Recovered {
        records,
        slices: s.slices,
        torn_frame_at,
    })
}
