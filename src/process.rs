//! The host process's state as npuprof's threads and callbacks see it: fork generation and forks in progress
//! (set by the session's `pthread_atfork` handlers), exit in progress (set by its exit hook), and the signal
//! mask of npuprof's own threads. Atomics only: read from vendor callbacks, the drain and the exporters, which
//! sit below the session that sets them.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Incremented in every forked child.
pub(crate) static FORK_GEN: AtomicU64 = AtomicU64::new(0);
/// Forks in progress in this process (between our prepare and parent/child handlers).
pub(crate) static FORKING: AtomicU32 = AtomicU32::new(0);

/// The number of forks this process's ancestry went through since npuprof was loaded (this process's own
/// generation: it changes in a forked child).
pub fn fork_gen() -> u64 {
    FORK_GEN.load(Ordering::Acquire)
}

/// A fork is in progress: npuprof's fork handlers hold (or are about to take) the control, ring registry and
/// name table locks.
pub fn forking() -> bool {
    FORKING.load(Ordering::Acquire) != 0
}

/// Set while the exit hook finishes a profile: exporters skip slow steps (CANN's msprof) and say so.
pub static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Blocks every signal on the calling (npuprof) thread: signals stay with the host's threads.
pub fn block_signals() {
    // SAFETY: plain libc calls on a local, zero-initialised sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
