//! The exit hook: a profile still recording (or still being written) when the process exits is finished.
//!
//! Bounded whatever the device library does: the hook's stop hands the backend to the `npuprof-vendor`
//! thread like any stop (`backend::vendor`) and waits only for the flush, at most `NPUPROF_FLUSH_TIMEOUT_S`
//! (60 s at exit); a device stop still inside the vendor at half of that wait is abandoned, so the host data
//! is written within it. The export writes the host result before any device step (`export::run`), and a
//! `msprof` still running at that cut is stopped with everything it started (`backend::acl::msprof`): the
//! metadata then says `device_data: "abandoned"` (or `"pending"` if the process ended first), and
//! `npuprof recover` adds the device data later.

use super::fork::reset_after_fork;
use super::{reentered, stop_locked, Held, CONFIG, CONTROL, IN_CONTROL, WRITING};
use crate::error::Result;
use crate::process::{EXIT, FORK_GEN};
use crate::profile::StopReason;
use crate::record::clock;
use crossbeam_channel::Receiver;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Registers an `atexit` handler that finishes a profile the process did not stop: the backend's session is
/// stopped and finalised (CANN must not be left running) and the export waited for, briefly. Called after
/// each successful backend start (never at load): handlers run newest first, so ours runs before the
/// destructors a device library registered up to then. Registrations are capped; only the first hook to run
/// does anything (see `RAN`).
pub(super) fn install_exit_hook() {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    if COUNT.fetch_add(1, Ordering::Relaxed) >= 64 {
        return;
    }
    // SAFETY: `at_exit` is an `extern "C"` function that never unwinds; the library is never unmapped
    // (`-z nodelete`), so the pointer stays valid until exit.
    if unsafe { libc::atexit(at_exit) } != 0 {
        log::warn!("atexit failed: a profile still running at exit will not be finished");
    }
}

/// Called by the background threads when a stopped profile's export has ended (written or failed).
pub fn export_ended() {
    // Saturating, as a guard: every stopped profile ends exactly once (written, failed, or abandoned by a
    // caught panic in the drain, see `drain_loop`); the count only decides whether the exit hook waits and
    // what it logs (the wait itself is a flush, which answers for everything sent before it).
    let _ = WRITING.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

/// Takes CONTROL at exit, marking this thread as inside a control call; `None` when another thread kept it
/// past the deadline. A forked child's inherited state is reset first.
fn lock_at_exit() -> Option<Held> {
    // Another thread may hold the lock while the process exits: wait a little, never forever.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let _ = IN_CONTROL.try_with(|f| f.set(true));
    let mut ctl = loop {
        match CONTROL.try_lock() {
            Ok(g) => break Held(Some(g)),
            Err(std::sync::TryLockError::Poisoned(p)) => break Held(Some(p.into_inner())),
            Err(std::sync::TryLockError::WouldBlock) => {
                if std::time::Instant::now() > deadline {
                    let _ = IN_CONTROL.try_with(|f| f.set(false));
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let gen = FORK_GEN.load(Ordering::Acquire);
    if ctl.fork_gen != gen {
        reset_after_fork(&mut ctl, gen);
    }
    Some(ctl)
}

/// The one log line saying what the exit hook finishes and waits for.
fn log_exit_wait(
    recording: Option<&PathBuf>,
    writing: u64,
    wait: Duration,
    last_dir: Option<&PathBuf>,
) {
    match recording {
        Some(dir) => log::warn!(
            "the process is exiting while recording: finishing {} and waiting up to {}s for it{} \
             (NPUPROF_FLUSH_TIMEOUT_S, at most 60 s at exit)",
            dir.display(),
            wait.as_secs(),
            match writing {
                0 => String::new(),
                n => format!(" and {n} stopped profile(s) still being written"),
            }
        ),
        None => log::warn!(
            "the process is exiting while {writing} stopped profile(s) are still being written \
             (the latest: {}): waiting up to {}s for them (NPUPROF_FLUSH_TIMEOUT_S, at most 60 s at exit)",
            last_dir.map_or("?".into(), |d| d.display().to_string()),
            wait.as_secs()
        ),
    }
}

/// Waits (without the lock) at most `wait` for the flush's answer; logs a failed or late one.
fn wait_for_flush(ack: Option<Result<Receiver<Result<()>>>>, wait: Duration) {
    if let Some(Ok(ack)) = ack {
        match ack.recv_timeout(wait) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                log::warn!("a profile could not be finished before exit: {}", e.msg)
            }
            Err(_) => log::warn!(
                "profiles were not finished within {}s of exit; their spools are kept for `npuprof \
                 recover`",
                wait.as_secs()
            ),
        }
    }
}

/// The exit hook: finishes a profile still recording, and waits, bounded (`NPUPROF_FLUSH_TIMEOUT_S`, at most
/// 60 s), for every export queued or running, so `npuprof_stop(); exit(0);` keeps its profile. One log line
/// says what it waits for.
extern "C" fn at_exit() {
    // The hook is registered once per start (up to 64 times) so that the newest registration runs before
    // the destructors of whatever a backend loaded meanwhile; the first one to run does the work, the
    // others return at once (each waiting again would make exit take up to 64 times the bound).
    static RAN: AtomicBool = AtomicBool::new(false);
    if RAN.swap(true, Ordering::AcqRel) {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        let Some(cfg) = CONFIG.get() else {
            return;
        };
        if reentered() {
            // exit() from a signal handler that interrupted a control call of this thread: the lock is ours
            // and held mid-change; leave everything as it is.
            return;
        }
        let Some(mut ctl) = lock_at_exit() else {
            return;
        };
        // A start still waiting for its step must not fire during exit (its profile would never be finished).
        super::window::cancel(&mut ctl);
        // Never `config()` here: it may start the NPUPROF_CONTROL watcher, a control call of its own.
        let wait = Duration::from_secs(cfg.flush_timeout_s.min(60));
        let recording = ctl.running.as_ref().map(|p| p.dir.clone());
        // Stopped profiles still being written (the one stopped below is added by `stop_locked`).
        let writing = WRITING.load(Ordering::Acquire);
        if recording.is_none() && (writing == 0 || ctl.threads.is_none()) {
            return;
        }
        // A device stop that blocks (the one below, or one still running) gets half of the wait: the host
        // data is then still written within it. Exports see it through their profile's `exit`.
        EXIT.begin(std::time::Instant::now() + wait / 2);
        log_exit_wait(recording.as_ref(), writing, wait, ctl.last_dir.as_ref());
        if recording.is_some()
            && stop_locked(&mut ctl, clock::now(), StopReason::Exit, None).is_err()
        {
            return;
        }
        // exit() called on our own drain or export thread (by a vendor library): nobody can answer a
        // flush there. The stop above is sent; the spool stays for `npuprof recover`.
        if crate::drain::on_background_thread() {
            log::warn!("exit() was called on an npuprof thread: not waiting for exports");
            return;
        }
        // Ask for the flush under the lock we hold (never block on it again), wait without it. The flush
        // travels behind every stop sent before it, so its answer means they are all written.
        let ack = ctl.threads.as_ref().map(|t| t.request_flush());
        drop(ctl);
        wait_for_flush(ack, wait);
    });
}
