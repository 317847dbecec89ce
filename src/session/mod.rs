//! The state machine: disabled / armed / idle / running / stopping, and both trigger logics.
//!
//! * **disabled**: `VLLM_TORCH_PROFILER_DIR` unset → start returns `NPUPROF_ERR_DISABLED`, the rest no-ops.
//! * **armed** (old logic, `PROFILER_TOKEN_THRESHOLD` set): the first `step(n)` with `n >= threshold` starts
//!   a profile (that step is `ProfilerStep#1`); the step that would be number `PROFILER_STOP_STEP + 1` stops
//!   it instead, so exactly `PROFILER_STOP_STEP` complete steps are recorded. Fires once per process.
//! * **idle** ⇄ **running** by `start`/`stop` (new logic, and manual control in the old logic too).
//! * **stopping**: after `stop` the drain thread finishes the spool and the export thread writes the files;
//!   a new profile may start meanwhile. `flush` waits for every stopped profile.
//!
//! Control calls take one mutex (they are rare); the record calls never do: they read `record::STATE`.
//!
//! Threads of a stop: `stop` clears the recording bit, hands the device backend to a `npuprof-vendor`
//! thread for its stop (vendor calls that may block: see `backend::vendor`), sends the Stop to the drain and
//! returns, all under the control lock and without waiting for anything. While that vendor stop runs the
//! backend is out of `Control` (`stopping`); the next `start` waits for it outside the lock, at most until
//! the stop's deadline, then fails with `NPUPROF_ERR_BACKEND` naming the call it is stuck in (npuprof never
//! calls a vendor library concurrently with its own stop). The host backend calls no vendor: it stops inline.

use crate::backend::{self, Backend};
use crate::config::{Config, Trigger};
use crate::drain;
use crate::error::{Error, Result, Status};
use crate::profile::{Profile, StopReason};
use crate::record::{self, clock, ARMED, COUNT, GEN_SHIFT, INIT, REC, STATE};
use backend::vendor;
use crossbeam_channel::RecvTimeoutError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

mod exit;
mod fork;
mod start;
pub use start::start_with;
use start::{disabled, start_locked};
mod step_hook;
pub mod window;
use window::{Launch, Outcome, Waiting};

use crate::process::FORK_GEN;
pub use exit::export_ended;
pub use fork::{hold_every_lock, EveryLock};
use fork::{install_fork_handlers, reset_after_fork};

struct Control {
    /// `FORK_GEN` this state belongs to: a forked child resets what it inherited (see `lock`).
    fork_gen: u64,
    threads: Option<drain::Threads>,
    /// The device backend; `None` before the first start, and while its stop runs (then see `stopping`).
    backend: Option<Box<dyn Backend>>,
    /// The backend's stop still running on the `npuprof-vendor` thread, which gives the backend back.
    stopping: Option<Arc<vendor::Stopping>>,
    running: Option<Arc<Profile>>,
    last_dir: Option<PathBuf>,
    next_gen: u64,
    /// A forked child of a process that used a device backend: host-only from now on.
    device_unusable: bool,
    /// A start waiting for a step (a delay, `--at-step`); see `window`.
    waiting: Option<Waiting>,
    /// How the latest waiting start ended, by its id.
    outcome: Option<(u64, Outcome)>,
    next_wait_id: u64,
    /// The running profile's `max_seconds` deadline: (its generation, when).
    deadline: Option<(u64, std::time::Instant)>,
}

static CONTROL: Mutex<Control> = Mutex::new(Control {
    fork_gen: 0,
    threads: None,
    backend: None,
    stopping: None,
    running: None,
    last_dir: None,
    next_gen: 1,
    device_unusable: false,
    waiting: None,
    outcome: None,
    next_wait_id: 0,
    deadline: None,
});
static CONFIG: OnceLock<Config> = OnceLock::new();
/// Profiles stopped and not yet written (their export queued or running): what the exit hook waits for.
static WRITING: AtomicU64 = AtomicU64::new(0);
/// Steps seen in the running profile (the next step's number is this + 1).
static STEPS: AtomicU64 = AtomicU64::new(0);
/// Old logic: the step number that ends the running profile instead of being recorded; 0 = no limit.
static STOP_AT: AtomicU64 = AtomicU64::new(0);

// ---- the control lock and its re-entry guard -------------------------------------------------------------
//
// CONTROL is not reentrant. A control call made on a thread that is already inside one (a signal handler
// that interrupted `npuprof_start` calls `npuprof_shutdown`) would wait forever for a lock its own thread
// holds. IN_CONTROL is set before the lock is taken and cleared after it is released, so such a call sees it
// and is refused at once with `Status::Busy`. (Set first and cleared last: a signal arriving between the flag
// and the lock finds the flag, never a held lock without it.)

thread_local! {
    /// This thread is taking, holding or releasing CONTROL. `const`, no destructor: readable from a signal
    /// handler and during thread exit.
    static IN_CONTROL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// CONTROL, held by this thread; releases the lock, then clears IN_CONTROL.
struct Held(Option<MutexGuard<'static, Control>>);

impl std::ops::Deref for Held {
    type Target = Control;
    fn deref(&self) -> &Control {
        self.0.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Control {
        self.0.as_mut().expect("held until dropped")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.0.take());
        let _ = IN_CONTROL.try_with(|f| f.set(false));
    }
}

/// True while this thread is inside a control call (taking, holding or releasing CONTROL).
fn reentered() -> bool {
    IN_CONTROL.try_with(|f| f.get()).unwrap_or(false)
}

fn busy() -> Error {
    Error::new(
        Status::Busy,
        "re-entered: this thread is already inside an npuprof control call (a signal handler that \
         interrupted npuprof_start/stop?); refused. From a signal handler, only set a flag and call \
         npuprof_stop/npuprof_shutdown from normal code (see npuprof.h)",
    )
}

fn lock() -> Result<Held> {
    if reentered() {
        return Err(busy());
    }
    // Outside a thread's lifetime (its TLS gone) the flag cannot be kept: take the lock unguarded.
    let _ = IN_CONTROL.try_with(|f| f.set(true));
    let mut ctl = Held(Some(CONTROL.lock().unwrap_or_else(|e| e.into_inner())));
    // Acquire pairs with the child handler's increment (same thread; kept for clarity).
    let gen = FORK_GEN.load(Ordering::Acquire);
    if ctl.fork_gen != gen {
        reset_after_fork(&mut ctl, gen);
    }
    Ok(ctl)
}

/// Reads the configuration (once), sets up logging and the clock, and arms the old logic.
pub fn config() -> &'static Config {
    let c = config_only();
    // NPUPROF_CONTROL: the watcher (the drain thread) runs from the first call on, not from the first start
    // (see `control`). Outside the OnceLock's initialiser: spawning takes the control lock.
    if c.control
        && c.profiler_dir.is_some()
        && !WATCHING.load(Ordering::Acquire)
        && !WATCHING.swap(true, Ordering::AcqRel)
    {
        (crate::WATCHER.prepare)(c);
        if let Err(e) = lock().and_then(|mut ctl| ensure_threads(&mut ctl)) {
            log::warn!("NPUPROF_CONTROL: no watcher: {}", e.msg);
        }
    }
    c
}

/// The background threads, started (or restarted after an unexpected end) under the control lock.
fn ensure_threads(ctl: &mut Control) -> Result<()> {
    if ctl.threads.as_ref().is_some_and(|t| !t.alive()) {
        log::warn!("the background threads ended unexpectedly; restarting them");
        ctl.threads = None;
    }
    if ctl.threads.is_none() {
        let t = drain::Threads::spawn(drain::Hooks {
            limit_reached: stop_from_drain,
            export_ended,
            tick: control_tick,
        })
        .map_err(|e| {
            Error::new(
                Status::Internal,
                format!("cannot start the npuprof-drain thread: {e}"),
            )
        })?;
        ctl.threads = Some(t);
    }
    Ok(())
}

/// The `NPUPROF_CONTROL` watcher as the session drives it: `prepare` when watching begins, `poll` on the
/// drain thread's tick. The watcher (`control`) is a front door above the session and calls into it; the
/// crate root wires the two together (`crate::WATCHER`), so the session never imports it.
pub struct Watcher {
    pub prepare: fn(&Config),
    pub poll: fn(&Config),
}

/// The drain thread's periodic tick: the `max_seconds` deadline, and the `NPUPROF_CONTROL` poll when enabled.
fn control_tick() {
    window::check_deadline();
    let cfg = config();
    if cfg.control {
        (crate::WATCHER.poll)(cfg);
    }
}

/// Reads the configuration and sets up logging, without starting anything (the command line tools).
pub fn init_logging() {
    config_only();
}

/// `NPUPROF_CONTROL` watching has begun in this process (until `shutdown` ends the threads).
static WATCHING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn config_only() -> &'static Config {
    CONFIG.get_or_init(|| {
        let c = Config::from_env();
        crate::logger::init(c.log_level);
        for w in &c.warnings {
            log::warn!("{w}");
        }
        clock::init();
        install_fork_handlers();
        record::RING_CAPACITY.store(c.ring_capacity(), Ordering::Relaxed);
        record::WITH_STACK.store(c.with_stack && c.profiler_dir.is_some(), Ordering::Relaxed);
        let armed = matches!(c.trigger, Trigger::Auto { .. }) && c.profiler_dir.is_some();
        // Release pairs with the Acquire loads in `step`: the config is visible once INIT is.
        STATE.fetch_or(INIT | if armed { ARMED } else { 0 }, Ordering::Release);
        c
    })
}

pub fn is_running() -> bool {
    STATE.load(Ordering::Acquire) & REC != 0
}

/// `npuprof_start`: a profile with the environment's window (a delay makes it wait for a step).
pub fn start() -> Result<()> {
    start_with(&window::StartOptions::default()).map(drop)
}

/// Starts a profile now (see `window::start_with` for one that waits for a step).
fn start_now(launch: Launch) -> Result<()> {
    let cfg = config();
    let mut ctl = lock()?;
    start::not_started(&ctl)?;
    // The previous profile's device stop may still run: wait for it (bounded by its deadline) without the
    // lock, so output_dir, fork and the exit hook are never held up by a vendor library. (An `npuprof
    // trigger start` runs this on the drain thread: no profile can record while a stop is out, since every
    // start waits here, so the rings have nothing to drain meanwhile.)
    if let Some(s) = ctl.stopping.clone().filter(|_| ctl.running.is_none()) {
        drop(ctl);
        s.wait();
        ctl = lock()?;
    }
    crate::fault::point("session.start.locked");
    start_locked(&mut ctl, cfg, launch)
}

/// Takes the backend back from its stop, if that has returned.
fn reclaim_backend(ctl: &mut Control) {
    if let Some(b) = ctl.stopping.as_ref().and_then(|s| s.take()) {
        ctl.backend = Some(b);
        ctl.stopping = None;
    }
}

/// Stops the backend for `p`: inline for the host backend (no vendor call), else on the `npuprof-vendor`
/// thread (returns at once; the device data waits for it, bounded).
fn stop_backend(ctl: &mut Control, p: &Arc<Profile>) -> Box<dyn crate::device::DeviceData> {
    match ctl.backend.take() {
        None => Box::new(crate::device::NoDeviceData),
        Some(mut b) if !b.calls_vendor() => {
            let d = b
                .stop(p, &vendor::VendorCall::default())
                .unwrap_or_else(|e| {
                    log::warn!("backend stop failed, the profile keeps its host data only: {e}");
                    Box::new(crate::device::NoDeviceData)
                });
            ctl.backend = Some(b);
            d
        }
        Some(b) => {
            let timeout = Duration::from_secs(p.config.vendor_timeout_s);
            let (s, d) = vendor::stop(b, p.clone(), timeout);
            ctl.stopping = Some(s);
            d
        }
    }
}

/// `npuprof_stop`.
pub fn stop() -> Result<()> {
    let cfg = config();
    if cfg.profiler_dir.is_none() {
        return Err(disabled());
    }
    let mut ctl = lock()?;
    crate::fault::point("session.stop.locked");
    if ctl.running.is_none() && window::cancel(&mut ctl) {
        return Ok(());
    }
    stop_locked(&mut ctl, clock::now(), StopReason::Manual, None)
}

/// Stops the running profile at `stop_tick`; with `only_gen`, only if that profile is still the running one.
fn stop_locked(
    ctl: &mut Control,
    stop_tick: u64,
    reason: StopReason,
    only_gen: Option<u64>,
) -> Result<()> {
    let Some(p) = ctl.running.as_ref() else {
        return Err(Error::new(Status::NotRunning, "no profile is recording"));
    };
    if only_gen.is_some_and(|g| g != p.gen) {
        return Ok(());
    }
    let p = ctl.running.take().expect("checked above");
    STATE.fetch_and(!REC, Ordering::AcqRel);
    window::clear_deadline(ctl);
    step_hook::set(None);
    let device = stop_backend(ctl, &p);
    // Counted before the message can arrive, so the export's end never precedes its count.
    WRITING.fetch_add(1, Ordering::AcqRel);
    let sent = ctl.threads.as_ref().map(|t| {
        t.send(drain::Msg::Stop {
            profile: p.clone(),
            stop_tick,
            reason,
            device,
        })
    });
    if !matches!(sent, Some(Ok(()))) {
        export_ended();
        return Err(Error::new(
            Status::Internal,
            format!(
                "cannot finish {}: the npuprof-drain thread is gone",
                p.dir.display()
            ),
        ));
    }
    log::info!(
        "profiling stopped ({}); writing {} in the background",
        reason.name(),
        p.dir.display()
    );
    Ok(())
}

/// Called by the drain thread when a profile must end on its own (disk cap).
pub fn stop_from_drain(gen: u64, reason: StopReason) {
    if let Ok(mut ctl) = lock() {
        let _ = stop_locked(&mut ctl, clock::now(), reason, Some(gen));
    }
}

/// True when `npuprof_step` has nothing to do: configured, not recording, not armed, not counting. One
/// relaxed load.
#[inline(always)]
pub fn step_is_noop() -> bool {
    STATE.load(Ordering::Relaxed) & (INIT | REC | ARMED | COUNT) == INIT
}

/// `npuprof_step`.
#[inline(never)]
pub fn step(tokens: u64) -> Result<()> {
    // Acquire pairs with the Release stores in `config` and `start_locked`.
    let mut s = STATE.load(Ordering::Acquire);
    if s & INIT == 0 {
        config();
        s = STATE.load(Ordering::Acquire);
    }
    if s & COUNT != 0 {
        let k = window::count_step();
        if s & REC == 0 && window::fires(k) {
            return start::fire_waiting(k, tokens);
        }
    }
    if s & REC != 0 {
        let ts = clock::now();
        let k = STEPS.fetch_add(1, Ordering::Relaxed) + 1;
        let stop_at = STOP_AT.load(Ordering::Relaxed);
        if stop_at != 0 && k >= stop_at {
            if k == stop_at {
                let mut ctl = lock()?;
                let reason = match ctl.running.as_ref().is_some_and(|p| p.auto) {
                    true => StopReason::StepLimit,
                    false => StopReason::MaxSteps,
                };
                return stop_locked(&mut ctl, ts, reason, Some(s >> GEN_SHIFT)).or_else(|e| {
                    if e.status == Status::NotRunning {
                        Ok(())
                    } else {
                        Err(e)
                    }
                });
            }
            return Ok(());
        }
        record::record_step(ts, k, tokens);
        step_hook::call(k);
        return Ok(());
    }
    if s & ARMED != 0 {
        if let Trigger::Auto { threshold, .. } = config().trigger {
            if tokens >= threshold {
                return auto_start(tokens);
            }
        }
    }
    Ok(())
}

#[cold]
fn auto_start(tokens: u64) -> Result<()> {
    let cfg = config();
    let mut ctl = lock()?;
    if STATE.load(Ordering::Acquire) & ARMED == 0 || ctl.running.is_some() || ctl.waiting.is_some()
    {
        // Someone else fired it, or a manual profile runs or waits for its step (this step is then recorded
        // by the next call).
        return Ok(());
    }
    reclaim_backend(&mut ctl);
    if ctl.stopping.is_some() {
        // A manual profile's device stop is still running: never wait on the step path, and keep the
        // trigger armed for a later step (firing now would fail and use up the one-shot trigger).
        return Ok(());
    }
    STATE.fetch_and(!ARMED, Ordering::AcqRel);
    start::start_at_this_step(
        &mut ctl,
        cfg,
        Launch {
            auto: true,
            // The old logic's steps are PROFILER_STOP_STEP's; its time bound is NPUPROF_MAX_SECONDS.
            window: crate::config::Window {
                delay_steps: 0,
                max_steps: match cfg.trigger {
                    Trigger::Auto { stop_step, .. } => stop_step,
                    Trigger::Manual => 0,
                },
                max_seconds: cfg.window.max_seconds,
            },
            root: None,
            tag: None,
            first_step: window::counted_now_if_counting().unwrap_or(0),
        },
        tokens,
    )
}

/// `npuprof_flush`: waits until every stopped profile is written (at most `NPUPROF_FLUSH_TIMEOUT_S`).
/// Returns the first export error since the last flush, if any.
pub fn flush() -> Result<()> {
    flush_waiting().map_err(FlushFailed::into_error)
}

/// How a flush failed: `shutdown` decides on the kind (never joins threads a timed-out flush left busy).
enum FlushFailed {
    /// The export thread did not answer within `NPUPROF_FLUSH_TIMEOUT_S`.
    TimedOut(Error),
    /// Any other failure: an export error, or threads already gone.
    Other(Error),
}

impl FlushFailed {
    fn into_error(self) -> Error {
        match self {
            FlushFailed::TimedOut(e) | FlushFailed::Other(e) => e,
        }
    }
}

fn flush_waiting() -> std::result::Result<(), FlushFailed> {
    let timeout = Duration::from_secs(config().flush_timeout_s);
    // The request goes under the lock (so it is ordered after any stop already sent); the wait does not.
    let ack = match lock().map_err(FlushFailed::Other)?.threads.as_ref() {
        None => return Ok(()),
        Some(t) => t.request_flush().map_err(FlushFailed::Other)?,
    };
    match ack.recv_timeout(timeout) {
        Ok(r) => r.map_err(FlushFailed::Other),
        Err(RecvTimeoutError::Timeout) => Err(FlushFailed::TimedOut(Error::new(
            Status::Io,
            format!(
                "profiles are still being written after {}s (NPUPROF_FLUSH_TIMEOUT_S)",
                timeout.as_secs()
            ),
        ))),
        Err(RecvTimeoutError::Disconnected) => Err(FlushFailed::Other(Error::new(
            Status::Internal,
            "the background threads ended before answering the flush",
        ))),
    }
}

/// `npuprof_shutdown`: stop if running, flush, end the background threads. Later calls start again lazily.
pub fn shutdown() -> Result<()> {
    let cfg = config();
    if cfg.profiler_dir.is_none() {
        return Ok(());
    }
    {
        let mut ctl = lock()?;
        // A start still waiting for its step would otherwise fire after the shutdown.
        window::cancel(&mut ctl);
        match stop_locked(&mut ctl, clock::now(), StopReason::Shutdown, None) {
            Ok(()) => {}
            Err(e) if e.status == Status::NotRunning => {}
            Err(e) => return Err(e),
        }
    }
    let flushed = match flush_waiting() {
        Ok(()) => Ok(()),
        // Do not join threads that are stuck on I/O: leave them, never hang the host.
        Err(FlushFailed::TimedOut(e)) => return Err(e),
        Err(FlushFailed::Other(e)) => Err(e),
    };
    // Taken under the lock, and only when no profile runs: a start on another thread after our stop owns the
    // threads now (shutdown is then ordered before that start, which keeps recording). Joined outside the
    // lock; a start meanwhile spawns new threads.
    let (threads, vendor_busy) = {
        let mut ctl = lock()?;
        reclaim_backend(&mut ctl);
        let busy = ctl.stopping.is_some();
        if ctl.running.is_some() {
            (None, busy)
        } else {
            (ctl.threads.take(), busy)
        }
    };
    if let Some(t) = threads {
        t.shutdown();
        // The NPUPROF_CONTROL watcher ended with them: the next call that reads the configuration starts it
        // again.
        WATCHING.store(false, Ordering::Release);
    }
    if vendor_busy {
        // Never call into a library our own stop is still stuck in.
        log::warn!(
            "npuprof_shutdown: the device stop has not returned; the MSPTI subscription is kept"
        );
    } else {
        backend::shutdown();
    }
    release_ring_memory()?;
    flushed
}

/// Returns the rings' pages to the system, if no profile records and no background thread runs (a start
/// on another thread since our stop owns the rings again: then they are kept).
fn release_ring_memory() -> Result<()> {
    let ctl = lock()?;
    if ctl.running.is_none() && ctl.threads.is_none() {
        let bytes = record::release_ring_memory();
        log::debug!("shutdown: {} MiB of record buffers returned", bytes >> 20);
    }
    Ok(())
}

/// The current or most recent worker directory.
pub fn output_dir() -> Option<PathBuf> {
    config();
    lock().ok()?.last_dir.clone()
}
