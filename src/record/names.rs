//! Interned annotation names: any bytes (non-UTF-8 included) → a stable non-zero `u32` id.
//!
//! Not on the hot path (`npuprof_intern` is called once per name; the record calls take ids). Names are never
//! freed, so a runtime that interns unbounded unique strings is capped: past [`MAX_NAMES`] names or
//! [`MAX_BYTES`] bytes every new name maps to [`OVERFLOW_ID`] and one warning is logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, TryLockError};

pub const MAX_NAMES: usize = 1 << 20;
pub const MAX_BYTES: usize = 256 << 20;
/// Id 1 is reserved for the overflow bucket.
pub const OVERFLOW_ID: u32 = 1;
pub const OVERFLOW_NAME: &[u8] = b"[npuprof: name table full]";

struct Table {
    map: HashMap<&'static [u8], u32>,
    /// `list[id - 1]`.
    list: Vec<&'static [u8]>,
    bytes: usize,
    warned: bool,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);
/// Number of ids handed out so far (the highest id); lets the drain see new names without the lock.
static COUNT: AtomicU32 = AtomicU32::new(0);

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut g = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    f(Table::get_or_init(&mut g))
}

/// The name table's lock, held across `fork` (see `session`).
pub struct ForkLock(#[allow(dead_code)] std::sync::MutexGuard<'static, Option<Table>>);

pub fn fork_lock() -> ForkLock {
    ForkLock(TABLE.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The id for `name`; 0 for an empty name.
pub fn intern(name: &[u8]) -> u32 {
    if name.is_empty() {
        return 0;
    }
    with_table(|t| t.intern(name))
}

/// As [`intern`], but never waits for the table's lock while `give_up()` says so: spins (yielding) while
/// the lock is busy, and returns `None` once `give_up()` is true. For callers that must not wait for a lock
/// a fork handler may hold (the MSPTI callbacks, see `session::fork`).
pub fn try_intern(name: &[u8], give_up: impl Fn() -> bool) -> Option<u32> {
    if name.is_empty() {
        return Some(0);
    }
    loop {
        match TABLE.try_lock() {
            Ok(mut g) => return Some(Table::get_or_init(&mut g).intern(name)),
            Err(TryLockError::Poisoned(e)) => {
                return Some(Table::get_or_init(&mut e.into_inner()).intern(name))
            }
            Err(TryLockError::WouldBlock) if give_up() => return None,
            Err(TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
}

impl Table {
    fn get_or_init(g: &mut Option<Table>) -> &mut Table {
        g.get_or_insert_with(|| {
            let mut t = Table {
                map: HashMap::new(),
                list: Vec::new(),
                bytes: 0,
                warned: false,
            };
            t.map.insert(OVERFLOW_NAME, OVERFLOW_ID);
            t.list.push(OVERFLOW_NAME);
            COUNT.store(1, Ordering::Release);
            t
        })
    }

    fn intern(&mut self, name: &[u8]) -> u32 {
        let t = self;
        if let Some(&id) = t.map.get(name) {
            return id;
        }
        if t.list.len() >= MAX_NAMES || t.bytes + name.len() > MAX_BYTES {
            if !t.warned {
                t.warned = true;
                log::warn!(
                    "name table full ({} names, {} bytes); further new names are recorded as {:?}",
                    t.list.len(),
                    t.bytes,
                    String::from_utf8_lossy(OVERFLOW_NAME)
                );
            }
            return OVERFLOW_ID;
        }
        let owned: &'static [u8] = Box::leak(name.to_vec().into_boxed_slice());
        t.list.push(owned);
        t.bytes += owned.len();
        let id = t.list.len() as u32;
        t.map.insert(owned, id);
        // Release pairs with the Acquire in `count`: a reader that sees the new count finds the name in the
        // list (it takes the lock anyway; this only keeps `count` honest).
        COUNT.store(id, Ordering::Release);
        id
    }
}

/// The highest id handed out so far.
pub fn count() -> u32 {
    COUNT.load(Ordering::Acquire)
}

/// Names with ids in `from..=to`, for the spool.
pub fn range(from: u32, to: u32, mut f: impl FnMut(u32, &[u8])) {
    if from > to || to == 0 {
        return;
    }
    with_table(|t| {
        for id in from.max(1)..=to.min(t.list.len() as u32) {
            f(id, t.list[id as usize - 1]);
        }
    });
}

/// The name of `id`, if it exists.
pub fn get(id: u32) -> Option<&'static [u8]> {
    if id == 0 {
        return None;
    }
    with_table(|t| t.list.get(id as usize - 1).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_nonzero_and_bytes_exact() {
        assert_eq!(intern(b""), 0);
        let a = intern(b"attention");
        let b = intern(b"mlp\xff\xfe");
        assert!(a > OVERFLOW_ID && b > OVERFLOW_ID && a != b);
        assert_eq!(intern(b"attention"), a);
        assert_eq!(get(b), Some(&b"mlp\xff\xfe"[..]));
        assert!(count() >= b);
        let mut seen = Vec::new();
        range(a, b, |id, n| seen.push((id, n.to_vec())));
        assert!(seen.contains(&(a, b"attention".to_vec())));
    }

    #[test]
    fn try_intern_gives_up_only_on_a_busy_table() {
        let a = intern(b"try_intern_a");
        assert_eq!(try_intern(b"try_intern_a", || false), Some(a));
        assert_eq!(try_intern(b"", || true), Some(0));
        let held = fork_lock();
        assert_eq!(try_intern(b"try_intern_b", || true), None);
        drop(held);
        let b = try_intern(b"try_intern_b", || false).unwrap();
        assert_eq!(get(b), Some(&b"try_intern_b"[..]));
    }
}
