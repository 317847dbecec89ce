//! A start, under the control lock: the checks, the backend, the profile's directory and spool, the drain's
//! START, then the state the record path reads. Steps of `start_locked`, in order.

use super::exit::install_exit_hook;
use super::{ensure_threads, reclaim_backend, step_hook, stop_backend, Control, STEPS, STOP_AT};
use crate::backend;
use crate::config::{Config, Trigger};
use crate::drain;
use crate::error::{Error, Result, Status};
use crate::layout;
use crate::profile::Profile;
use crate::record::{self, clock, ARMED, GEN_SHIFT, INIT, REC, STATE};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(super) fn disabled() -> Error {
    Error::new(
        Status::Disabled,
        "profiling is disabled: set VLLM_TORCH_PROFILER_DIR to the directory for results",
    )
}

/// The checks before a start, under the lock: no profile is recording, no backend stop is still out (a stop
/// that has returned gives its backend back), the background threads run. Returns the results root.
fn ready_to_start(ctl: &mut Control, cfg: &'static Config) -> Result<&'static PathBuf> {
    if let Some(p) = &ctl.running {
        return Err(Error::new(
            Status::AlreadyRunning,
            format!("a profile is already recording into {}", p.dir.display()),
        ));
    }
    let root = cfg.profiler_dir.as_ref().ok_or_else(disabled)?;
    reclaim_backend(ctl);
    if let Some(s) = &ctl.stopping {
        return Err(s.busy_error());
    }
    ensure_threads(ctl)?;
    Ok(root)
}

/// Selects the backend at the first start (host-only in a forked child of a device-using process).
fn ensure_backend(ctl: &mut Control, cfg: &'static Config) -> Result<()> {
    if ctl.backend.is_none() {
        ctl.backend = Some(if ctl.device_unusable {
            log::warn!(
                "this process was forked from one that used CANN profiling, which a child cannot use: \
                 recording host data only"
            );
            Box::new(backend::host::HostBackend)
        } else {
            backend::select(cfg.backend, cfg)?
        });
    }
    Ok(())
}

/// Creates the profile's worker directory and its locked spool under `root`, and the [`Profile`] itself
/// (the directory is removed again if the spool cannot be made).
fn new_profile(
    root: &std::path::Path,
    cfg: &'static Config,
    gen: u64,
    (device_id, backend): (u32, crate::profile::BackendId),
    auto: bool,
) -> Result<(Arc<Profile>, std::fs::File)> {
    let anchor = clock::anchor_now();
    let dirs = layout::create_worker_dir(root, &cfg.worker_name_now(), anchor.1)?;
    let dir = dirs.top.path.clone();
    let spool_path = dirs.framework.shown(layout::SPOOL_NAME);
    let spool = match new_locked_spool(&dirs) {
        Ok(f) => f,
        Err(e) => {
            dirs.discard();
            return Err(e);
        }
    };
    let profile = Arc::new(Profile {
        gen,
        dir,
        spool_path,
        dirs,
        anchor,
        pid: std::process::id(),
        worker: cfg.worker_name_now(),
        rank: cfg.rank,
        device_id,
        auto,
        backend,
        config: cfg,
        exit: &crate::process::EXIT,
    });
    Ok((profile, spool))
}

/// Hands the started profile and its spool to the drain thread; if that fails, stops the backend and removes
/// the profile's directory.
fn send_start(ctl: &mut Control, profile: &Arc<Profile>, spool: std::fs::File) -> Result<()> {
    let sent = match ctl.threads.as_ref() {
        Some(t) => t.send(drain::Msg::Start(
            profile.clone(),
            spool,
            record::baseline(),
        )),
        None => Err(Error::new(
            Status::Internal,
            "background threads missing after spawn",
        )),
    };
    if let Err(e) = sent {
        // Never leave the device session running for a profile that does not exist (its data is dropped).
        drop(stop_backend(ctl, profile));
        profile.dirs.discard();
        return Err(e);
    }
    Ok(())
}

/// Makes generation `gen` the recording one: the step hook, the step counter and limit, then REC in STATE.
fn publish_running(ctl: &mut Control, cfg: &'static Config, gen: u64, auto: bool) {
    ctl.next_gen += 1;
    step_hook::set(backend_step_hook(ctl));
    STEPS.store(0, Ordering::Relaxed);
    let stop_at = match cfg.trigger {
        Trigger::Auto { stop_step, .. } if auto => stop_step + 1,
        _ => 0,
    };
    STOP_AT.store(stop_at, Ordering::Relaxed);
    // Release pairs with the Acquire in `step` (STEPS/STOP_AT above are visible with REC). The record calls
    // load STATE Relaxed: they use no other data published here (the generation travels in STATE itself).
    let keep = STATE.load(Ordering::Relaxed) & (INIT | ARMED);
    STATE.store(keep | REC | (gen << GEN_SHIFT), Ordering::Release);
}

/// Starts a profile; runs under the control lock (every step below does).
pub(super) fn start_locked(ctl: &mut Control, cfg: &'static Config, auto: bool) -> Result<()> {
    let root = ready_to_start(ctl, cfg)?;
    ensure_backend(ctl, cfg)?;
    let backend = ctl
        .backend
        .as_mut()
        .ok_or_else(|| Error::new(Status::Internal, "backend missing after selection"))?;
    let device_id = backend.device_id(cfg);
    let gen = ctl.next_gen;
    let (profile, spool) = new_profile(root, cfg, gen, (device_id, backend.id()), auto)?;
    backend
        .start(&profile)
        .inspect_err(|_| profile.dirs.discard())?;
    // After the backend's start: exit handlers run newest first, so this one runs before the destructors of
    // whatever the backend's libraries registered while starting (CANN's singletons).
    install_exit_hook();
    send_start(ctl, &profile, spool)?;
    publish_running(ctl, cfg, gen, auto);
    log::info!(
        "profiling started{}: {}",
        if auto {
            " (PROFILER_TOKEN_THRESHOLD reached)"
        } else {
            ""
        },
        profile.dir.display()
    );
    ctl.last_dir = Some(profile.dir.clone());
    ctl.running = Some(profile);
    Ok(())
}

/// The step hook of the backend that just started (see [`Backend::step_hook`]).
fn backend_step_hook(ctl: &Control) -> Option<&'static backend::StepHook> {
    ctl.backend.as_ref().and_then(|b| b.step_hook())
}

/// Creates the spool already holding its writer lock: made under a temporary name, locked, then renamed,
/// so `npuprof recover` never finds `npuprof.spool` unlocked while this process owns it (not even before
/// the drain thread has written its first frame). The lock lives in the file's open description, which the
/// drain keeps until the export ends.
fn new_locked_spool(dirs: &layout::WorkerDirs) -> Result<std::fs::File> {
    let tmp = format!("{}.new", layout::SPOOL_NAME);
    let f = dirs.framework.create_new(&tmp)?;
    match crate::spool::try_lock(&f) {
        crate::spool::Lock::Acquired => {}
        // Another process opened a file it could not know the name of: recover refuses while it holds it.
        crate::spool::Lock::Busy => log::warn!(
            "spool {} was locked by another process as it was made",
            dirs.framework.shown(&tmp).display()
        ),
        // A filesystem without flock: recover falls back to the pid and its start time.
        crate::spool::Lock::Unsupported(_) => {}
    }
    dirs.framework
        .dir
        .rename(&tmp, layout::SPOOL_NAME)
        .map_err(|e| {
            Error::io(
                "cannot create spool",
                &dirs.framework.shown(layout::SPOOL_NAME),
                &e,
            )
        })?;
    Ok(f)
}
