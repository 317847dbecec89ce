//! Test-only fault injection, compiled in only with `--features fault-injection` (the reliability tests
//! build a separate copy of the library with it; a normal build has empty inline functions here).
//!
//! `NPUPROF_TEST_FAULTS` (read once, at the first fault point reached) is a comma-separated list of
//! * `panic@<point>[*<n>]`: panic at the first `n` (default 1) passes through `<point>`. Points are the
//!   exported function names (`npuprof_start`, ...: inside their panic boundary) and a few deep places named
//!   where they are (`session.start.locked`, `session.stop.locked`, `drain.msg`, `export.run`,
//!   `mspti.complete`, `mspti.walked`: in the MSPTI buffer-completed callback before and after it took the
//!   buffer back from MSPTI);
//! * `stall@<point>=<ms>`: sleep `ms` at every pass through a stall point (`drain.batch`: each batch the
//!   host drain writes to the spool, as a blocked disk would; `mspti.consumer`: each MSPTI buffer written;
//!   `export.run`: each export, before it starts);
//! * `hold@<point>=<path>`: at every pass through a stall point, wait until the file `<path>` exists (polled
//!   every 10 ms, at most 60 s so that a forgotten release never hangs a test process): a stall the test
//!   ends itself, for assertions that must not depend on how long a sleep is. `msprof.timeout` is a hold
//!   only (no stall): msprof's helper process starts counting `NPUPROF_MSPROF_TIMEOUT_S` once the file
//!   exists (it polls it itself, see [`hold_path`]);
//! * `raise@<point>=<signo>`: raise signal `signo` on the calling thread at the first pass through a panic
//!   point (e.g. `session.start.locked`, to run a signal handler while the control lock is held).

#[cfg(feature = "fault-injection")]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    #[derive(PartialEq, Eq)]
    enum Kind {
        Panic,
        Stall,
        /// Wait for the file `Fault::path` (a stall point).
        Hold,
        Raise(i32),
    }

    /// The longest a `hold@` waits for its release file: generous, only a test that never releases it
    /// reaches it.
    pub(super) const HOLD_LIMIT: std::time::Duration =
        std::time::Duration::from_nanos(super::HOLD_LIMIT_NS);

    struct Fault {
        point: String,
        /// Panics or raises left (panic@, raise@), or the stall in ms (stall@).
        left: AtomicU64,
        kind: Kind,
        /// The release file of a `hold@`.
        path: String,
    }

    fn faults() -> &'static [Fault] {
        static F: OnceLock<Vec<Fault>> = OnceLock::new();
        F.get_or_init(|| {
            std::env::var("NPUPROF_TEST_FAULTS")
                .unwrap_or_default()
                .split(',')
                .filter_map(|f| {
                    let f = f.trim();
                    if let Some(s) = f.strip_prefix("stall@") {
                        let (point, ms) = s.split_once('=')?;
                        return Some(Fault {
                            point: point.to_string(),
                            left: AtomicU64::new(ms.parse().ok()?),
                            kind: Kind::Stall,
                            path: String::new(),
                        });
                    }
                    if let Some(s) = f.strip_prefix("hold@") {
                        let (point, path) = s.split_once('=')?;
                        return Some(Fault {
                            point: point.to_string(),
                            left: AtomicU64::new(0),
                            kind: Kind::Hold,
                            path: path.to_string(),
                        });
                    }
                    if let Some(s) = f.strip_prefix("raise@") {
                        let (point, sig) = s.split_once('=')?;
                        return Some(Fault {
                            point: point.to_string(),
                            left: AtomicU64::new(1),
                            kind: Kind::Raise(sig.parse().ok()?),
                            path: String::new(),
                        });
                    }
                    let f = f.strip_prefix("panic@")?;
                    let (point, n) = match f.split_once('*') {
                        Some((p, n)) => (p, n.parse().unwrap_or(1)),
                        None => (f, 1),
                    };
                    Some(Fault {
                        point: point.to_string(),
                        left: AtomicU64::new(n),
                        kind: Kind::Panic,
                        path: String::new(),
                    })
                })
                .collect()
        })
    }

    pub(super) fn stall(name: &str) {
        for f in faults() {
            if f.point != name {
                continue;
            }
            match f.kind {
                Kind::Stall => std::thread::sleep(std::time::Duration::from_millis(
                    f.left.load(Ordering::Relaxed),
                )),
                Kind::Hold => {
                    let until = std::time::Instant::now() + HOLD_LIMIT;
                    while !std::path::Path::new(&f.path).exists()
                        && std::time::Instant::now() < until
                    {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
                _ => {}
            }
        }
    }

    pub(crate) fn hold_path(name: &str) -> Option<std::ffi::CString> {
        faults()
            .iter()
            .find(|f| f.kind == Kind::Hold && f.point == name)
            .and_then(|f| std::ffi::CString::new(f.path.as_str()).ok())
    }

    pub(super) fn point(name: &str) {
        for f in faults() {
            if matches!(f.kind, Kind::Stall | Kind::Hold) || f.point != name {
                continue;
            }
            if f.left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_err()
            {
                continue;
            }
            match f.kind {
                // SAFETY: raise has no preconditions; the test installed a handler for `sig`.
                Kind::Raise(sig) => unsafe {
                    libc::raise(sig);
                },
                _ => panic!("injected fault at {name}"),
            }
        }
    }
}

/// A place where a test may inject a panic (no-op without `--features fault-injection`).
#[inline(always)]
pub(crate) fn point(_name: &str) {
    #[cfg(feature = "fault-injection")]
    imp::point(_name);
}

/// The release file of a `hold@<name>`, for a hold point that cannot call [`stall`] (a forked helper, where
/// only async-signal-safe calls are allowed): the caller polls it itself. Always `None` without
/// `--features fault-injection`.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn hold_path(_name: &str) -> Option<std::ffi::CString> {
    None
}
#[cfg(feature = "fault-injection")]
pub(crate) use imp::hold_path;

/// The longest a `hold@` waits for its release file (see `imp::HOLD_LIMIT`), for callers of [`hold_path`].
pub(crate) const HOLD_LIMIT_NS: u64 = 60_000_000_000;

/// A place where a test may inject a stall (no-op without `--features fault-injection`).
#[inline(always)]
pub(crate) fn stall(_name: &str) {
    #[cfg(feature = "fault-injection")]
    imp::stall(_name);
}
