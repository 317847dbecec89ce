//! A start, under the control lock: the checks, the backend, the profile's directory and spool, the drain's
//! START, then the state the record path reads. Steps of `start_locked`, in order.

use super::exit::install_exit_hook;
use super::window::{self, Launch, Outcome, StartOptions, Waiting};
use super::{
    ensure_threads, lock, reclaim_backend, step_hook, stop_backend, Control, STEPS, STOP_AT,
};
use crate::backend;
use crate::config::{Config, Window};
use crate::drain;
use crate::error::{Error, Result, Status};
use crate::layout;
use crate::profile::Profile;
use crate::record::{self, clock, ARMED, COUNT, GEN_SHIFT, INIT, REC, STATE};
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
fn ready_to_start<'a>(
    ctl: &mut Control,
    cfg: &'static Config,
    launch: &'a Launch,
) -> Result<&'a std::path::Path> {
    not_started(ctl)?;
    let env_root = cfg.profiler_dir.as_deref().ok_or_else(disabled)?;
    let root = launch.root.as_deref().unwrap_or(env_root);
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
    launch: &Launch,
) -> Result<(Arc<Profile>, std::fs::File)> {
    let anchor = clock::anchor_now();
    let worker = cfg.worker_name_now();
    let named = match &launch.tag {
        Some(t) => format!("{t}_{worker}"),
        None => worker.clone(),
    };
    let dirs = layout::create_worker_dir(root, &named, anchor.1)?;
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
        worker,
        rank: cfg.rank,
        device_id,
        auto: launch.auto,
        window: launch.window,
        first_step: launch.first_step,
        tag: launch.tag.clone(),
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

/// Makes generation `gen` the recording one: the step hook, the step counter and limit, the deadline, then
/// REC in STATE.
fn publish_running(ctl: &mut Control, gen: u64, w: &Window) {
    ctl.next_gen += 1;
    step_hook::set(backend_step_hook(ctl));
    STEPS.store(0, Ordering::Relaxed);
    // The step that would be number max_steps + 1 stops the profile instead (PROFILER_STOP_STEP's rule).
    let stop_at = match w.max_steps {
        0 => 0,
        n => n + 1,
    };
    STOP_AT.store(stop_at, Ordering::Relaxed);
    super::window::set_deadline(ctl, gen, w);
    // Release pairs with the Acquire in `step` (STEPS/STOP_AT above are visible with REC). The record calls
    // load STATE Relaxed: they use no other data published here (the generation travels in STATE itself).
    // One read-modify-write: COUNT may be set meanwhile outside the lock (the watcher begins counting).
    let _ = STATE.fetch_update(Ordering::Release, Ordering::Relaxed, |s| {
        Some(s & (INIT | ARMED | COUNT) | REC | (gen << GEN_SHIFT))
    });
}

/// `npuprof_start_with`: a start with options; returns the id of a start that waits for a step (0 when the
/// profile started now).
pub fn start_with(opts: &StartOptions) -> Result<u64> {
    let cfg = super::config();
    if cfg.profiler_dir.is_none() {
        return Err(disabled());
    }
    let (window, root) = opts.resolve(cfg)?;
    let now = window::counted_now();
    // A step already reached (a late rank, an idle one) starts now rather than wait for a step that may
    // never come: its next step is recorded either way.
    let waits = opts.at_step.is_some_and(|at| at > now) || window.delay_steps > 0;
    if let Some(at) = opts.at_step.filter(|_| !waits) {
        log::info!("start at step {at}: this process is at step {now} already, so it starts now");
    }
    if !waits {
        super::start_now(Launch {
            auto: false,
            window,
            root,
            tag: opts.tag.clone(),
            first_step: window::counted_now_if_counting().map_or(0, |n| n + 1),
        })?;
        return Ok(0);
    }
    let mut ctl = lock()?;
    not_started(&ctl)?;
    super::ensure_threads(&mut ctl)?;
    // A delay counts from the current step.
    let now = window::counted_now();
    let at = opts.at_step.unwrap_or(now + window.delay_steps + 1);
    ctl.next_wait_id += 1;
    let id = ctl.next_wait_id;
    log::info!("profiling will start at step {at} (this process is at step {now})");
    let launch = Launch {
        auto: false,
        window,
        root,
        tag: opts.tag.clone(),
        first_step: at,
    };
    window::arm(&mut ctl, Waiting { at, id, launch });
    Ok(id)
}

/// Step `k` fires the waiting start: starts the profile on this thread (never waiting: a device stop still
/// out leaves it for the next step) and records this step as its first.
#[cold]
pub(super) fn fire_waiting(k: u64, tokens: u64) -> Result<()> {
    let mut ctl = lock()?;
    if ctl.running.is_some() {
        return Ok(());
    }
    reclaim_backend(&mut ctl);
    if ctl.stopping.is_some() {
        return Ok(());
    }
    let Some(mut w) = window::take_due(&mut ctl, k) else {
        return Ok(());
    };
    w.launch.first_step = k;
    match start_at_this_step(&mut ctl, super::config(), w.launch, tokens) {
        Ok(()) => {
            let dir = ctl.last_dir.clone().unwrap_or_default();
            ctl.outcome = Some((w.id, Outcome::Started(dir)));
            Ok(())
        }
        Err(e) => {
            log::warn!("the start waiting for step {} failed: {}", w.at, e.msg);
            ctl.outcome = Some((w.id, Outcome::Failed(e.clone())));
            Err(e)
        }
    }
}

/// Starts a profile on the step path (the old logic's threshold, a waiting start) with this step, `tokens`
/// scheduled, as its `ProfilerStep#1`.
pub(super) fn start_at_this_step(
    ctl: &mut Control,
    cfg: &'static Config,
    launch: Launch,
    tokens: u64,
) -> Result<()> {
    start_locked(ctl, cfg, launch)?;
    STEPS.store(1, Ordering::Relaxed);
    record::record_step(clock::now(), 1, tokens);
    Ok(())
}

/// No profile records and no start waits for its step; else `NPUPROF_ERR_ALREADY_RUNNING` saying which.
pub(super) fn not_started(ctl: &Control) -> Result<()> {
    if let Some(p) = &ctl.running {
        return Err(Error::new(
            Status::AlreadyRunning,
            format!("a profile is already recording into {}", p.dir.display()),
        ));
    }
    match &ctl.waiting {
        Some(w) => Err(Error::new(
            Status::AlreadyRunning,
            format!("a start already waits for step {}", w.at),
        )),
        None => Ok(()),
    }
}

/// Starts a profile; runs under the control lock (every step below does).
pub(super) fn start_locked(ctl: &mut Control, cfg: &'static Config, launch: Launch) -> Result<()> {
    let root = ready_to_start(ctl, cfg, &launch)?.to_path_buf();
    ensure_backend(ctl, cfg)?;
    let backend = ctl
        .backend
        .as_mut()
        .ok_or_else(|| Error::new(Status::Internal, "backend missing after selection"))?;
    let device_id = backend.device_id(cfg);
    let gen = ctl.next_gen;
    let (profile, spool) = new_profile(&root, cfg, gen, (device_id, backend.id()), &launch)?;
    backend
        .start(&profile)
        .inspect_err(|_| profile.dirs.discard())?;
    // After the backend's start: exit handlers run newest first, so this one runs before the destructors of
    // whatever the backend's libraries registered while starting (CANN's singletons).
    install_exit_hook();
    send_start(ctl, &profile, spool)?;
    publish_running(ctl, gen, &launch.window);
    log::info!(
        "profiling started{}: {}",
        if launch.auto {
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
