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

/// Databases being written (open SQLite connections of npuprof's bundled SQLite; see [`SqliteInUse`]).
static SQLITE_IN_USE: AtomicU32 = AtomicU32::new(0);
/// This process was forked while a database was being written: the child may hold SQLite's internal mutexes
/// locked forever (taken by a thread the child does not have), so it never calls SQLite.
static SQLITE_UNUSABLE: AtomicBool = AtomicBool::new(false);

/// Held while a database connection is open (from before it is opened until after it is closed): a fork in
/// that window leaves the child without databases ([`sqlite_usable`]).
pub(crate) struct SqliteInUse(());

impl SqliteInUse {
    /// `None` in a child forked while a database was being written: do not call SQLite.
    pub(crate) fn enter() -> Option<SqliteInUse> {
        if SQLITE_UNUSABLE.load(Ordering::Acquire) {
            return None;
        }
        // SeqCst (a full barrier): the count is visible before any SQLite mutex this thread then takes, so
        // a child that inherits a held SQLite mutex also inherits a non-zero count.
        SQLITE_IN_USE.fetch_add(1, Ordering::SeqCst);
        Some(SqliteInUse(()))
    }
}

impl Drop for SqliteInUse {
    fn drop(&mut self) {
        SQLITE_IN_USE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// In the forked child (from the session's fork handler): a database being written at the fork makes SQLite
/// unusable in this process.
pub(crate) fn sqlite_after_fork_child() {
    if SQLITE_IN_USE.swap(0, Ordering::SeqCst) != 0 {
        SQLITE_UNUSABLE.store(true, Ordering::Release);
    }
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

#[cfg(test)]
mod sqlite_fork_tests {
    use super::*;

    /// A child forked while a database connection is open never calls SQLite (it may inherit SQLite's
    /// internal mutexes held by a thread it does not have: before this, such a child's export hung).
    #[test]
    fn a_child_forked_while_a_database_is_open_does_not_use_sqlite() {
        let held = SqliteInUse::enter().expect("usable in the test process");
        // SAFETY: the child only calls async-signal-safe-enough code of ours (atomics) and `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            sqlite_after_fork_child();
            let refused = SqliteInUse::enter().is_none();
            // SAFETY: ends the child without running the parent's exit handlers or test harness.
            unsafe { libc::_exit(if refused { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status}"
        );
        drop(held);
        assert!(
            SqliteInUse::enter().is_some(),
            "the parent itself stays usable"
        );
    }
}
