//! Test-only fault injection, compiled in only with `--features fault-injection` (the reliability tests
//! build a separate copy of the library with it; a normal build has empty inline functions here).
//!
//! `NPUPROF_TEST_FAULTS` (read once, at the first fault point reached) is a comma-separated list of
//! * `panic@<point>[*<n>]`: panic at the first `n` (default 1) passes through `<point>`. Points are the
//!   exported function names (`npuprof_start`, ...: inside their panic boundary) and a few deep places named
//!   where they are (`session.start.locked`, `session.stop.locked`, `drain.msg`, `export.run`,
//!   `mspti.complete`);
//! * `stall@<point>=<ms>`: sleep `ms` at every pass through a stall point (`drain.batch`: each batch the
//!   host drain writes to the spool, as a blocked disk would; `mspti.consumer`: each MSPTI buffer written).

#[cfg(feature = "fault-injection")]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    struct Fault {
        point: String,
        /// Panics left (panic@), or the stall in ms (stall@).
        left: AtomicU64,
        stall: bool,
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
                            stall: true,
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
                        stall: false,
                    })
                })
                .collect()
        })
    }

    pub fn stall(name: &str) {
        for f in faults() {
            if f.stall && f.point == name {
                std::thread::sleep(std::time::Duration::from_millis(
                    f.left.load(Ordering::Relaxed),
                ));
            }
        }
    }

    pub fn point(name: &str) {
        for f in faults() {
            if !f.stall
                && f.point == name
                && f.left
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                    .is_ok()
            {
                panic!("injected fault at {name}");
            }
        }
    }
}

/// A place where a test may inject a panic (no-op without `--features fault-injection`).
#[inline(always)]
pub fn point(_name: &str) {
    #[cfg(feature = "fault-injection")]
    imp::point(_name);
}

/// A place where a test may inject a stall (no-op without `--features fault-injection`).
#[inline(always)]
pub fn stall(_name: &str) {
    #[cfg(feature = "fault-injection")]
    imp::stall(_name);
}
