//! The running profile's backend step hook ([`Backend::step_hook`](crate::backend::Backend::step_hook)), as
//! the step path reads it: one atomic pointer, set under the control lock at start and cleared at stop and in
//! a forked child, read on the step path without any lock.
//!
//! The hook is only an entry point: a stop clears it before stopping the backend, but a step that loaded it
//! just before may still call it. The backend's own handshake decides whether that call does anything (the
//! aclprof stamp hook checks its stamp API pointer, and `stop` waits for a call already inside it).

use crate::backend::StepHook;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The hook of the running profile's backend; null when it has none or no profile runs.
static HOOK: AtomicPtr<StepHook> = AtomicPtr::new(std::ptr::null_mut());

/// Installs (or, with `None`, clears) the hook. Under the control lock, or in the fork child handler.
pub(super) fn set(hook: Option<&'static StepHook>) {
    let p = hook.map_or(std::ptr::null_mut(), |h| {
        h as *const StepHook as *mut StepHook
    });
    // Relaxed: the pointee is a `static` initialised at compile time; nothing else is published with it (a
    // step that misses a just-installed hook skips one call, as a step just before the start would).
    HOOK.store(p, Ordering::Relaxed);
}

/// Calls the hook, if one is installed, with step `k`. Without one: one relaxed load and a null check.
#[inline(always)]
pub(super) fn call(k: u64) {
    let p = HOOK.load(Ordering::Relaxed);
    if !p.is_null() {
        // SAFETY: HOOK only ever holds null or a pointer made from a `&'static StepHook` (see `set`).
        let hook = unsafe { &*p };
        (hook.0)(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// A step number no other test's profile reaches: calls from other tests' steps (which run in parallel and
    /// may find this hook installed) are not counted.
    const K: u64 = u64::MAX - 17;
    static CALLS: AtomicU64 = AtomicU64::new(0);
    fn count(k: u64) {
        if k == K {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
    }
    static COUNT: StepHook = StepHook(count);

    /// No other unit test starts or stops a profile (which would set or clear the hook meanwhile).
    #[test]
    fn the_installed_hook_is_called_until_cleared() {
        call(K);
        set(Some(&COUNT));
        call(K);
        call(K);
        set(None);
        call(K);
        assert_eq!(CALLS.load(Ordering::Relaxed), 2);
    }
}
