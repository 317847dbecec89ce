//! The host process's state as npuprof's threads and callbacks see it: fork generation and forks in progress
//! (set by the session's `pthread_atfork` handlers), exit in progress (set by its exit hook), and the signal
//! mask of npuprof's own threads. Atomics only: read from vendor callbacks, the drain and the exporters, which
//! sit below the session that sets them.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

// FORK_GEN and FORKING stay globals: their writers are `pthread_atfork` handlers (no arguments) and their
// readers include MSPTI's C callbacks, which run on vendor threads with no context of ours to carry them.

/// Incremented in every forked child.
pub(crate) static FORK_GEN: AtomicU64 = AtomicU64::new(0);
/// Forks in progress in this process (between our prepare and parent/child handlers).
pub(crate) static FORKING: AtomicU32 = AtomicU32::new(0);

/// The number of forks this process's ancestry went through since npuprof was loaded (this process's own
/// generation: it changes in a forked child).
pub(crate) fn fork_gen() -> u64 {
    FORK_GEN.load(Ordering::Acquire)
}

/// A fork is in progress: npuprof's fork handlers hold (or are about to take) the control, ring registry and
/// name table locks.
pub(crate) fn forking() -> bool {
    FORKING.load(Ordering::Acquire) != 0
}

/// The process's exit as work already under way sees it: set once by the exit hook when it finishes
/// profiles, read by exports queued or running then (through the `exit` of their `Profile`,
/// never through the global below).
#[derive(Debug)]
pub(crate) struct Exit {
    /// The exit hook is finishing profiles: exporters skip slow steps (CANN's msprof) and say so.
    exiting: AtomicBool,
    /// No export waits for a vendor stop, or lets msprof run, past this moment.
    cut: OnceLock<Instant>,
}

impl Exit {
    pub(crate) const fn new() -> Exit {
        Exit {
            exiting: AtomicBool::new(false),
            cut: OnceLock::new(),
        }
    }

    /// The exit hook begins finishing profiles; device steps end by `cut` at the latest, so the host data is
    /// still written within the exit wait.
    pub(crate) fn begin(&self, cut: Instant) {
        let _ = self.cut.set(cut);
        self.exiting.store(true, Ordering::Relaxed);
    }

    /// The exit hook is finishing profiles.
    pub(crate) fn exiting(&self) -> bool {
        self.exiting.load(Ordering::Relaxed)
    }

    /// The moment device steps must end by, once the exit hook has begun.
    pub(crate) fn cut(&self) -> Option<Instant> {
        self.cut.get().copied()
    }

    /// The exit cut has passed: a device step still running (msprof) must end now.
    pub(crate) fn cut_passed(&self) -> bool {
        self.cut().is_some_and(|c| Instant::now() >= c)
    }
}

impl Default for Exit {
    fn default() -> Exit {
        Exit::new()
    }
}

/// This process's exit. A global, not a parameter, because the one writer is an `atexit` handler (it
/// receives no arguments) and its readers are exports queued before it ran; the session hands a reference to
/// every profile it starts (`Profile::exit`), and nothing below reads this static directly.
pub(crate) static EXIT: Exit = Exit::new();

/// Blocks every signal on the calling (npuprof) thread: signals stay with the host's threads.
pub(crate) fn block_signals() {
    // SAFETY: plain libc calls on a local, zero-initialised sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
