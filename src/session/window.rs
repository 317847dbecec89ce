//! Capture windows: a start's options, a start that waits for a step (a delay, `npuprof trigger --at-step`),
//! and the two bounds that end a profile by themselves (its recorded steps, its wall time).
//!
//! * **Steps.** `max_steps` becomes the step limit the step path already checks (the old logic's
//!   `PROFILER_STOP_STEP` uses the same one): the step that would be number `max_steps + 1` stops the profile
//!   instead of being recorded.
//! * **Time.** `max_seconds` becomes a deadline that the drain thread checks on its periodic tick (about
//!   five times a second), so a profile ends on time when no step comes at all (an idle data-parallel rank,
//!   a prefill step of tens of seconds).
//! * **Waiting starts.** With `delay_steps` or `at_step`, `start` only schedules the start: it sets
//!   [`COUNT`] (the step path counts the process's steps, one relaxed atomic add) and the step number that
//!   fires it. That step starts the profile on the caller's thread, as the old logic's threshold does, and is
//!   recorded as `ProfilerStep#1`; it never waits there (a device stop still out leaves the start for the
//!   next step). `stop` cancels a waiting start. The process's step count is also what the `NPUPROF_CONTROL`
//!   watcher publishes for `npuprof trigger --all` (then [`COUNT`] stays set).

use super::{lock, Control};
use crate::config::{Config, Window, MAX_WINDOW_SECONDS, MAX_WINDOW_STEPS};
use crate::error::{Error, Result, Status};
use crate::record::{clock, COUNT, STATE};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// How a profile starts: by the old logic's threshold or a start call, its window, and where it goes.
#[derive(Debug)]
pub(super) struct Launch {
    pub auto: bool,
    pub window: Window,
    /// The results root instead of `VLLM_TORCH_PROFILER_DIR`.
    pub root: Option<PathBuf>,
    pub tag: Option<String>,
    /// The process's step count at the first recorded step (0 when not counted).
    pub first_step: u64,
}

/// The process's steps counted while [`COUNT`] is set (the number of the latest step).
static SEEN: AtomicU64 = AtomicU64::new(0);
/// The step number that fires the waiting start; 0 = none waits.
static FIRE_AT: AtomicU64 = AtomicU64::new(0);
/// The `NPUPROF_CONTROL` watcher wants the steps counted (then [`COUNT`] stays set without a waiting start).
static WATCHING_STEPS: AtomicBool = AtomicBool::new(false);
/// A running profile has a deadline (the tick checks it under the lock only then).
static HAS_DEADLINE: AtomicBool = AtomicBool::new(false);

/// The longest tag: it is the first part of a directory name.
pub const MAX_TAG_BYTES: usize = 64;

/// A start's options. `None` takes the environment's value (`NPUPROF_DELAY_STEPS`, `NPUPROF_MAX_STEPS`,
/// `NPUPROF_MAX_SECONDS`, `VLLM_TORCH_PROFILER_DIR`); for the bounds, `Some(0)` is "none".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartOptions {
    pub delay_steps: Option<u64>,
    pub max_steps: Option<u64>,
    pub max_seconds: Option<u64>,
    /// Start when the process's step count reaches this step (`npuprof trigger --at-step`; not with a delay).
    pub at_step: Option<u64>,
    /// The results root for this profile instead of `VLLM_TORCH_PROFILER_DIR`.
    pub output_dir: Option<PathBuf>,
    /// The first part of the directory name: `{tag}_{worker}_{stamp}_ascend_ms` (SGLang's `profile_prefix`).
    pub tag: Option<String>,
}

impl StartOptions {
    /// Checks the options and resolves them against the environment's defaults.
    pub(super) fn resolve(&self, cfg: &Config) -> Result<(Window, Option<PathBuf>)> {
        let bad = |m: String| Error::new(Status::InvalidArgument, m);
        let steps = |name: &str, v: Option<u64>, default: u64| match v {
            Some(n) if n > MAX_WINDOW_STEPS => Err(bad(format!(
                "{name} {n} is more than {MAX_WINDOW_STEPS} steps"
            ))),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let d = cfg.window;
        let window = Window {
            delay_steps: steps("delay_steps", self.delay_steps, d.delay_steps)?,
            max_steps: steps("num_steps", self.max_steps, d.max_steps)?,
            max_seconds: match self.max_seconds {
                Some(s) if s > MAX_WINDOW_SECONDS => {
                    return Err(bad(format!(
                        "max_seconds {s} is more than {MAX_WINDOW_SECONDS} (a week)"
                    )))
                }
                Some(s) => s,
                None => d.max_seconds,
            },
        };
        if self.at_step.is_some() && self.delay_steps.is_some_and(|n| n > 0) {
            return Err(bad("a start takes delay_steps or at_step, not both".into()));
        }
        if let Some(t) = &self.tag {
            check_tag(t)?;
        }
        let root = match &self.output_dir {
            None => None,
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(std::path::absolute(p).map_err(|e| {
                bad(format!(
                    "output_dir {} cannot be made absolute: {e}",
                    p.display()
                ))
            })?),
        };
        Ok((window, root))
    }
}

/// A tag: 1 to [`MAX_TAG_BYTES`] bytes of letters, digits, `.`, `_` and `-`, not starting with `.`.
pub fn check_tag(t: &str) -> Result<()> {
    let ok = !t.is_empty()
        && t.len() <= MAX_TAG_BYTES
        && !t.starts_with('.')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            Status::InvalidArgument,
            format!(
                "tag {t:?} is not 1 to {MAX_TAG_BYTES} letters, digits, '.', '_' or '-' (not starting with \
                 '.'): it becomes part of a directory name"
            ),
        ))
    }
}

/// A start that waits for a step, kept under the control lock.
#[derive(Debug)]
pub(super) struct Waiting {
    /// The step number that fires it.
    pub at: u64,
    /// Its id, for [`outcome`].
    pub id: u64,
    /// The profile it starts (its `first_step` is set when it fires).
    pub launch: Launch,
}

/// How a waiting start ended: the profile's directory, or the error that kept it from starting.
#[derive(Debug, Clone)]
pub enum Outcome {
    Waiting { at: u64, now: u64 },
    Started(PathBuf),
    Failed(Error),
    Cancelled,
}

/// The process's step count now (0 when it has never counted).
pub fn counted_now() -> u64 {
    SEEN.load(Ordering::Relaxed)
}

/// The process's step count, when it is counting now (a count that stopped is stale).
pub fn counted_now_if_counting() -> Option<u64> {
    (STATE.load(Ordering::Acquire) & COUNT != 0).then(counted_now)
}

/// Where the waiting start `id` is: still waiting (and at which step the process is), started or failed.
pub fn outcome(id: u64) -> Option<Outcome> {
    let ctl = lock().ok()?;
    if let Some(w) = ctl.waiting.as_ref().filter(|w| w.id == id) {
        return Some(Outcome::Waiting {
            at: w.at,
            now: SEEN.load(Ordering::Relaxed),
        });
    }
    ctl.outcome
        .as_ref()
        .filter(|(i, _)| *i == id)
        .map(|(_, o)| o.clone())
}

/// The step path's count, when [`COUNT`] is set: returns the step's number in the process.
#[inline(always)]
pub(super) fn count_step() -> u64 {
    SEEN.fetch_add(1, Ordering::Relaxed) + 1
}

/// True when step `k` fires the waiting start.
#[inline(always)]
pub(super) fn fires(k: u64) -> bool {
    let at = FIRE_AT.load(Ordering::Relaxed);
    at != 0 && k >= at
}

/// Arms the waiting start `w` (under the control lock): the step path counts steps and fires it at `w.at`.
pub(super) fn arm(ctl: &mut Control, w: Waiting) {
    ctl.outcome = None;
    FIRE_AT.store(w.at.max(1), Ordering::Relaxed);
    ctl.waiting = Some(w);
    // Release pairs with the Acquire in `step`: FIRE_AT is visible with COUNT.
    STATE.fetch_or(COUNT, Ordering::Release);
}

/// Takes the waiting start to fire it at step `k` (under the control lock); `None` when none is due.
pub(super) fn take_due(ctl: &mut Control, k: u64) -> Option<Waiting> {
    if !ctl.waiting.as_ref().is_some_and(|w| k >= w.at) {
        return None;
    }
    FIRE_AT.store(0, Ordering::Relaxed);
    stop_counting_unless_watched();
    ctl.waiting.take()
}

/// `stop` while a start waits: cancels it. True when there was one.
pub(super) fn cancel(ctl: &mut Control) -> bool {
    let Some(w) = ctl.waiting.take() else {
        return false;
    };
    FIRE_AT.store(0, Ordering::Relaxed);
    stop_counting_unless_watched();
    ctl.outcome = Some((w.id, Outcome::Cancelled));
    log::info!("the start waiting for step {} is cancelled", w.at);
    true
}

/// Clears [`COUNT`] unless the watcher still wants the steps counted. Under the control lock.
fn stop_counting_unless_watched() {
    if !WATCHING_STEPS.load(Ordering::Relaxed) {
        STATE.fetch_and(!COUNT, Ordering::AcqRel);
    }
}

/// The `NPUPROF_CONTROL` watcher wants the process's steps counted from now on.
pub fn count_steps_for_watcher() {
    WATCHING_STEPS.store(true, Ordering::Relaxed);
    STATE.fetch_or(COUNT, Ordering::Release);
}

/// In a forked child (one thread, inside the fork handler: atomics only): the parent's waiting start,
/// watcher count and deadline are not this process's.
pub(super) fn after_fork_child() {
    FIRE_AT.store(0, Ordering::Relaxed);
    WATCHING_STEPS.store(false, Ordering::Relaxed);
    HAS_DEADLINE.store(false, Ordering::Relaxed);
}

/// Sets (or clears) the running profile's deadline from its window. Under the control lock, at its start.
pub(super) fn set_deadline(ctl: &mut Control, gen: u64, w: &Window) {
    ctl.deadline = (w.max_seconds > 0).then(|| {
        (
            gen,
            Instant::now() + std::time::Duration::from_secs(w.max_seconds),
        )
    });
    HAS_DEADLINE.store(ctl.deadline.is_some(), Ordering::Release);
}

/// The running profile stopped (under the control lock): no deadline any more.
pub(super) fn clear_deadline(ctl: &mut Control) {
    ctl.deadline = None;
    HAS_DEADLINE.store(false, Ordering::Release);
}

/// The drain thread's tick: stops the running profile when its deadline has passed.
pub(super) fn check_deadline() {
    if !HAS_DEADLINE.load(Ordering::Acquire) {
        return;
    }
    let Ok(mut ctl) = lock() else {
        return;
    };
    let Some((gen, at)) = ctl.deadline else {
        return;
    };
    if Instant::now() < at {
        return;
    }
    // The stop clears the deadline.
    let _ = super::stop_locked(
        &mut ctl,
        clock::now(),
        crate::profile::StopReason::MaxSeconds,
        Some(gen),
    );
}
