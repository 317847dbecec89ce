//! Fork handling: a forked child drops the state it inherited from its parent.

use super::{Control, CONTROL};
use crate::backend;
use crate::process::{FORKING, FORK_GEN};
use crate::profile::BackendId;
use crate::record::{self, COUNT, REC, STATE};
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

// ---- fork ---------------------------------------------------------------------------------------------
//
// A forked child inherits this state but none of the threads. `pthread_atfork` handlers (registered with
// the configuration, on the first call, never at load) hold the three locks of the library across the fork
// so the child never inherits one held by a thread that does not exist there; the child handler clears the
// recording bit and bumps FORK_GEN (atomics only), and the child's next control call drops the inherited
// threads and profile. The child then starts its own profile, in its own directory (its own pid), lazily.
//
// A vendor library's own fork handlers (libmspti.so's, registered before ours when it is preloaded) run while
// ours hold those locks, and may complete an MSPTI buffer, on this thread or by waiting for another thread
// that does. The MSPTI callbacks therefore never wait for a lock these handlers hold: while FORKING is set
// they give up on a busy name table (the name is counted, see `backend::mspti::vendor_str`). In a child the
// MSPTI callbacks touch none of the parent's state (its channels, pool and threads): they compare the fork
// generation (and, inside a fork, the pid) with the one they were set up in.

type ForkLocks = (
    MutexGuard<'static, Control>,
    record::ForkLock,
    record::names::ForkLock,
);

thread_local! {
    /// The locks held by the forking thread between the prepare and parent/child handlers.
    static HELD: std::cell::RefCell<Option<ForkLocks>> = const { std::cell::RefCell::new(None) };
}

extern "C" fn before_fork() {
    // Before the locks: a callback already spinning on the name table gives up instead of waiting for us.
    FORKING.fetch_add(1, Ordering::AcqRel);
    let _ = std::panic::catch_unwind(|| {
        // Same order as everywhere else: CONTROL, then the ring registry, then the name table.
        let locks = (
            CONTROL.lock().unwrap_or_else(|e| e.into_inner()),
            record::fork_lock(),
            record::names::fork_lock(),
        );
        let _ = HELD.try_with(|h| *h.borrow_mut() = Some(locks));
    });
}

/// Every lock of the library, held until dropped (see [`hold_every_lock`]).
#[doc(hidden)]
pub struct EveryLock {
    _fork: ForkLocks,
}

/// Test hook (tests/lock_free.rs proves with it that the record calls take no lock): takes every lock of the
/// library, in the usual order, and holds them until the result is dropped: the control lock, the ring
/// registry and the name table (the three the fork handlers hold). The only other
/// mutexes belong to one device stop in progress (`backend::vendor::Stopping`, reached through the
/// control lock). Not an API: never call it from a thread that records or controls a profile.
#[doc(hidden)]
pub fn hold_every_lock() -> EveryLock {
    EveryLock {
        _fork: (
            CONTROL.lock().unwrap_or_else(|e| e.into_inner()),
            record::fork_lock(),
            record::names::fork_lock(),
        ),
    }
}

extern "C" fn after_fork_parent() {
    release_held();
    FORKING.fetch_sub(1, Ordering::AcqRel);
}

fn release_held() {
    let _ = std::panic::catch_unwind(|| {
        let _ = HELD.try_with(|h| h.borrow_mut().take());
    });
}

extern "C" fn after_fork_child() {
    // The child has one thread and no drain: nothing may record into rings nobody reads. A start waiting
    // for a step and the watcher's count are the parent's.
    STATE.fetch_and(!(REC | COUNT), Ordering::AcqRel);
    super::window::after_fork_child();
    super::step_hook::set(None);
    backend::after_fork_child();
    crate::process::sqlite_after_fork_child();
    FORK_GEN.fetch_add(1, Ordering::AcqRel);
    let _ = std::panic::catch_unwind(|| {
        let _ = HELD.try_with(|h| {
            if let Some(locks) = h.borrow().as_ref() {
                record::after_fork_child(&locks.1);
            }
        });
    });
    release_held();
    // The child's only thread is this one: no other fork is in progress here.
    FORKING.store(0, Ordering::Release);
}

pub(super) fn install_fork_handlers() {
    // SAFETY: the handlers are `extern "C"` functions that never unwind.
    let rc = unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        )
    };
    if rc != 0 {
        log::warn!("pthread_atfork failed ({rc}); a forked child must not use npuprof");
    }
}

/// In a forked child: forget the parent's threads (they do not exist here: never join or detach them) and
/// its profile (the parent finishes it).
#[cold]
pub(super) fn reset_after_fork(ctl: &mut Control, gen: u64) {
    if let Some(t) = ctl.threads.take() {
        std::mem::forget(t);
    }
    if let Some(b) = ctl.backend.take() {
        // CANN state copied from a parent that used it is not usable here (device contexts do not survive
        // fork, its locks may be held by parent threads): this child records host data only.
        ctl.device_unusable |= !matches!(b.id(), BackendId::Host);
        // A device backend's state belongs to the parent's session: do not run its destructor here.
        std::mem::forget(b);
    }
    if let Some(s) = ctl.stopping.take() {
        // The parent's device stop, on a thread this child does not have (its lock may be held there).
        ctl.device_unusable = true;
        std::mem::forget(s);
    }
    ctl.running = None;
    ctl.last_dir = None;
    ctl.waiting = None;
    ctl.outcome = None;
    ctl.deadline = None;
    ctl.fork_gen = gen;
    // The parent's exports are the parent's: this child has none to wait for at exit.
    super::WRITING.store(0, std::sync::atomic::Ordering::Release);
}
