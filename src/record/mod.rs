//! The hot path: per-thread rings, the recording gate, and the record calls.
//!
//! `STATE` is the one word every record call reads: bit 0 "recording", bit 1 "armed" (old logic waiting for
//! its threshold), bit 2 "initialised", bit 3 "counting" (steps are counted for a pending start or for the
//! `NPUPROF_CONTROL` watcher), bits 4.. the profile generation. When the recording bit is clear a
//! record call is a load and a branch. When it is set, the call reads the clock and writes one 16-byte record
//! into the calling thread's own ring: no lock, no syscall, no allocation (the first record of a thread
//! takes a free ring or allocates one, once; the allocation is made outside the registry lock, so other
//! threads never wait for it).
//!
//! Memory: rings are never freed (a thread's CURRENT may point to its ring at any time, and a record call
//! that saw the recording bit just before a stop may still write one slot). `npuprof_shutdown` returns
//! their pages to the system instead (`release_ring_memory`: the buffers stay mapped, as zero pages that are
//! faulted in again by the next profile's records).
//!
//! Thread exit: the ring pointer lives in a `const`-initialised thread-local `Cell` that has no destructor, so
//! it can be read during any thread-local destructor. The ring is retired by a pthread key destructor (set
//! at registration), which only swaps the pointer for a sentinel and marks the ring "exited". glibc runs key
//! destructors after every C++/Rust thread-local destructor, so records made from those still land; records
//! made after it (a later key's destructor) are dropped and counted. A thread whose first record happens
//! during the key-destructor phase still gets its ring retired: glibc re-runs destructors of keys set during
//! that phase. The ring, with its unread records, stays in the registry until the drain has emptied it, and
//! is then reused by the next new thread: memory stays bounded by the number of threads alive at once.
//!
//! The record calls are not async-signal-safe (a call from a signal handler that interrupts another record
//! call on the same thread would share its ring's producer state).

pub(crate) mod clock;
pub mod names;
pub mod ring;

pub use ring::{Record, Ring, RECORD_SIZE};

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Record kinds (top byte of `Record::meta`).
pub mod kind {
    /// payload: depth (bits 32..56) | name id (bits 0..32)
    pub const BEGIN: u8 = 1;
    /// payload: depth (bits 32..56) of the range being closed
    pub const END: u8 = 2;
    /// payload: name id
    pub const MARK: u8 = 3;
    /// payload: step number (bits 32..56) | scheduled tokens, saturated (bits 0..32)
    pub const STEP: u8 = 4;
    /// payload: one return address of the call stack of the preceding BEGIN (innermost first)
    pub const STACK: u8 = 5;
}

pub const REC: u64 = 1;
pub const ARMED: u64 = 2;
pub const INIT: u64 = 4;
/// `npuprof_step` counts the process's steps: a start waits for a step (delay, `--at-step`), or the
/// `NPUPROF_CONTROL` watcher publishes the count for `npuprof trigger --all`.
pub const COUNT: u64 = 8;
pub const GEN_SHIFT: u32 = 4;

/// The recording gate (see module doc). Written only by `session` under its lock.
pub(crate) static STATE: AtomicU64 = AtomicU64::new(0);
/// `VLLM_TORCH_PROFILER_WITH_STACK`: capture the call stack at each range start.
pub static WITH_STACK: AtomicBool = AtomicBool::new(false);
/// Records made after the calling thread's ring was retired (thread exit) or could not be allocated.
/// By record kind (index `kind & 7`); the total is their sum (one count, so totals and kinds agree).
pub static ORPHAN_DROPS_BY_KIND: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
/// Ring capacity in records; set by `session` from the config before the first profile.
pub static RING_CAPACITY: AtomicUsize = AtomicUsize::new(1 << 16);

const DEAD: *const Ring = 1 as *const Ring;

thread_local! {
    static CURRENT: Cell<*const Ring> = const { Cell::new(std::ptr::null()) };
}

/// The pthread key whose destructor retires a thread's ring (see module doc). Created once.
static EXIT_KEY: std::sync::OnceLock<Option<libc::pthread_key_t>> = std::sync::OnceLock::new();

unsafe extern "C" fn retire_ring(value: *mut libc::c_void) {
    // Runs at thread exit, in C context: must not unwind.
    let _ = std::panic::catch_unwind(|| {
        // CURRENT has no destructor, so it is still accessible here.
        let p = CURRENT
            .try_with(|c| c.replace(DEAD))
            .unwrap_or(std::ptr::null());
        let p = if p.is_null() || p == DEAD {
            value as *const Ring
        } else {
            p
        };
        if !p.is_null() && p != DEAD {
            // SAFETY: rings are leaked ('static) and never freed; `p` came from the registry.
            unsafe { &*p }.mark_exited();
        }
    });
}

fn exit_key() -> Option<libc::pthread_key_t> {
    *EXIT_KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-parameter; `retire_ring` has the destructor signature.
        let rc = unsafe { libc::pthread_key_create(&mut key, Some(retire_ring)) };
        (rc == 0).then_some(key)
    })
}

struct Registry {
    rings: Vec<&'static Ring>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { rings: Vec::new() });

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// A ring no thread owns and the drain has emptied, if any.
fn take_free(reg: &Registry) -> Option<&'static Ring> {
    reg.rings
        .iter()
        .find(|r| r.owner_state() == ring::OWNER_FREE && r.is_empty())
        .copied()
}

/// Slow path: the first record of this thread. Takes a free ring or allocates one, and arms the exit key.
#[cold]
#[inline(never)]
fn register() -> Option<&'static Ring> {
    // Acquire pairs with the Release stores of STATE in `session` (the record call that brought us here
    // loaded STATE Relaxed): the configuration written before the first profile started (RING_CAPACITY,
    // WITH_STACK, the clock source) is visible to this thread from its first record on.
    std::sync::atomic::fence(Ordering::Acquire);
    let Some(key) = exit_key() else {
        CURRENT.with(|c| c.set(DEAD));
        return None;
    };
    let tid = gettid();
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    // A ring allocated here but not needed after all (another became free meanwhile); freed after the lock.
    let mut spare: Option<Box<Ring>> = None;
    let ring = match take_free(&reg) {
        Some(r) => r,
        None => {
            // Allocate (and fill) the ring without the registry lock: at NPUPROF_BUFFER_KB's maximum that
            // takes a while, and other threads' first records (and the drain) must not wait for it.
            drop(reg);
            #[cfg(test)]
            tests::observe_allocation();
            // Relaxed: written once by `session::config` before STATE's REC bit is first set (Release),
            // and this thread saw REC before registering (the fence above).
            let Some(mut new) =
                Ring::try_new(0, RING_CAPACITY.load(Ordering::Relaxed)).map(Box::new)
            else {
                log::warn!(
                    "could not allocate a record buffer for thread {tid}; its records are dropped"
                );
                CURRENT.with(|c| c.set(DEAD));
                return None;
            };
            reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
            match take_free(&reg) {
                Some(r) => {
                    spare = Some(new);
                    r
                }
                None => {
                    new.id = reg.rings.len() as u32;
                    // Leaked: a ring lives as long as the process (a thread's CURRENT may point to it at any
                    // time); its memory is returned at shutdown by `release_ring_memory`.
                    let r: &'static Ring = Box::leak(new);
                    reg.rings.push(r);
                    r
                }
            }
        }
    };
    // SAFETY: the ring is new or FREE (no producer) and we hold the registry lock (see `Ring::assign`).
    unsafe { ring.assign(tid) };
    drop(reg);
    drop(spare);
    CURRENT.with(|c| c.set(ring));
    // SAFETY: a valid key; the value is only passed back to `retire_ring`.
    if unsafe { libc::pthread_setspecific(key, ring as *const Ring as *const libc::c_void) } != 0 {
        // Cannot arm the exit hook: retire at once rather than leak the ring.
        CURRENT.with(|c| c.set(DEAD));
        ring.mark_exited();
        return None;
    }
    Some(ring)
}

/// The calling thread's ring, registering it on first use; `None` after thread exit.
#[inline(always)]
fn my_ring() -> Option<&'static Ring> {
    let p = CURRENT.with(|c| c.get());
    if p.is_null() {
        return register();
    }
    if p == DEAD {
        return None;
    }
    // SAFETY: non-null, non-sentinel pointers in CURRENT come from the registry's leaked rings.
    Some(unsafe { &*p })
}

/// The calling thread's ring, or `None` after counting the record (of kind `k`) as dropped (thread
/// exiting, or no buffer could be had).
#[inline(always)]
fn ring_or_count(k: u8) -> Option<&'static Ring> {
    let r = my_ring();
    if r.is_none() {
        count_orphan(k);
    }
    r
}

#[cold]
fn count_orphan(k: u8) {
    // Relaxed: counters read by the drain at stop; they pair with nothing.
    ORPHAN_DROPS_BY_KIND[(k & 7) as usize].fetch_add(1, Ordering::Relaxed);
}

/// Runs `f` on the producer-private range depth of `r` for generation `s` (reset when a new profile began).
/// `r` must be the calling thread's own ring.
#[inline(always)]
fn with_depth<R>(r: &Ring, s: u64, f: impl FnOnce(&mut u32) -> R) -> R {
    // SAFETY: `r` comes from CURRENT, so this thread is its single producer; the borrow ends with `f`,
    // before any other producer-side call on the ring.
    let (depth, gen) = unsafe { r.producer_local() };
    let g = s >> GEN_SHIFT;
    if *gen != g {
        *gen = g;
        *depth = 0;
    }
    f(depth)
}

/// True while a profile records. The whole cost of a record call when idle or disabled: one relaxed load.
#[inline(always)]
pub fn is_recording() -> bool {
    // Relaxed: the record calls need only the bit itself (and the generation in the same word); no other
    // data published by `session::start_locked`'s Release store is read on this path.
    STATE.load(Ordering::Relaxed) & REC != 0
}

/// The start of every record call (of kind `k`): `None` (and nothing else done) unless recording; otherwise
/// the STATE word, the timestamp and this thread's ring. Records that cannot get a ring (thread exiting) are
/// counted.
#[inline(always)]
fn recording(k: u8) -> Option<(u64, u64, &'static Ring)> {
    // Relaxed, as in `is_recording`: the generation travels in the same word.
    let s = STATE.load(Ordering::Relaxed);
    if s & REC == 0 {
        return None;
    }
    // The ring first, then the clock: fewer values live across the TLS lookup call, and the timestamp is
    // taken as close as possible to the store.
    let r = ring_or_count(k)?;
    Some((s, clock::now(), r))
}

/// Opens a named range on the calling thread.
#[inline(always)]
pub fn range_push(name_id: u32) {
    let Some((s, ts, r)) = recording(kind::BEGIN) else {
        return;
    };
    let d = with_depth(r, s, |depth| {
        let d = *depth;
        *depth = d.saturating_add(1);
        d
    });
    let rec = Record::new(ts, kind::BEGIN, ((d as u64) << 32) | name_id as u64);
    // SAFETY: `r` is this thread's own ring (from CURRENT), so we are its single producer.
    let pushed = unsafe { r.push(rec) };
    // Relaxed: set once by `session::config` before the first profile (made visible to this thread by the
    // fence in `register`). A stack only follows a BEGIN that was kept, else the exporter would attach it
    // to the enclosing range.
    if pushed && WITH_STACK.load(Ordering::Relaxed) {
        push_stack(r, ts);
    }
}

/// Closes the innermost range opened on this thread in this profile; counted and ignored if none is open.
#[inline(always)]
pub fn range_pop() {
    let Some((s, ts, r)) = recording(kind::END) else {
        return;
    };
    let Some(d) = with_depth(r, s, |depth| {
        *depth = depth.checked_sub(1)?;
        Some(*depth)
    }) else {
        r.count_unbalanced();
        return;
    };
    // SAFETY: `r` is this thread's own ring (from CURRENT), so we are its single producer.
    unsafe { r.push(Record::new(ts, kind::END, (d as u64) << 32)) };
}

/// An instant event on the calling thread.
#[inline(always)]
pub fn mark(name_id: u32) {
    if let Some((_, ts, r)) = recording(kind::MARK) {
        // SAFETY: `r` is this thread's own ring (from CURRENT), so we are its single producer.
        unsafe { r.push(Record::new(ts, kind::MARK, name_id as u64)) };
    }
}

/// A step boundary (called by `session`, which owns the step counter).
#[inline]
pub fn record_step(ts: u64, step: u64, tokens: u64) {
    let payload = (step.min((1 << 24) - 1) << 32) | tokens.min(u32::MAX as u64);
    if let Some(r) = ring_or_count(kind::STEP) {
        // SAFETY: `r` is this thread's own ring (from CURRENT), so we are its single producer.
        unsafe { r.push(Record::new(ts, kind::STEP, payload)) };
    }
}

extern "C" {
    // glibc <execinfo.h>.
    fn backtrace(buffer: *mut *mut libc::c_void, size: libc::c_int) -> libc::c_int;
}

/// `VLLM_TORCH_PROFILER_WITH_STACK`: up to 32 return addresses after the BEGIN record. Opt-in and slow
/// (~1-3 us: glibc's unwinder; its first call in a process loads libgcc_s).
#[cold]
#[inline(never)]
fn push_stack(r: &Ring, ts: u64) {
    let mut frames = [std::ptr::null_mut::<libc::c_void>(); 34];
    // SAFETY: the buffer holds `frames.len()` pointers.
    let n = unsafe { backtrace(frames.as_mut_ptr(), frames.len() as libc::c_int) }.max(0) as usize;
    // Skip push_stack and range_push themselves; stop at the first frame that does not fit (a partial
    // stack is the innermost frames, still useful).
    for &f in frames.iter().take(n).skip(2) {
        // SAFETY: this thread owns `r`.
        if !unsafe { r.push(Record::new(ts, kind::STACK, f as u64)) } {
            break;
        }
    }
}

/// The registry lock, held across `fork` (see `session`).
pub struct ForkLock(#[allow(dead_code)] std::sync::MutexGuard<'static, Registry>);

pub fn fork_lock() -> ForkLock {
    ForkLock(REGISTRY.lock().unwrap_or_else(|e| e.into_inner()))
}

/// In a forked child (the registry lock held across the fork): only the forking thread exists. Every other
/// ring's owner is gone, so mark it exited (the child's drain empties and reuses it), and release consumer
/// flags a parent drain may have held at the fork.
pub fn after_fork_child(lock: &ForkLock) {
    let mine = CURRENT.try_with(|c| c.get()).unwrap_or(std::ptr::null());
    for r in &lock.0.rings {
        r.release_consumer_after_fork();
        if !std::ptr::eq(*r as *const Ring, mine) && r.owner_state() == ring::OWNER_ALIVE {
            r.mark_exited();
        }
    }
}

/// Every ring ever registered, into `out` (cleared first; no allocation once `out` is large enough).
pub fn rings_into(out: &mut Vec<&'static Ring>) {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    out.clear();
    out.extend_from_slice(&reg.rings);
}

/// Number of rings allocated so far (bounded by the number of threads recording at the same time).
pub fn ring_count() -> usize {
    REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .rings
        .len()
}

/// Counter baselines at a profile's start: per ring id (dropped, unbalanced), plus the orphan drops.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    /// Per ring: drops by record kind (their sum is the ring's total).
    pub dropped_by_kind: Vec<[u64; 8]>,
    pub unbalanced: Vec<u64>,
    /// Drops after a thread exit, by record kind.
    pub orphans_by_kind: [u64; 8],
}

/// Takes the baseline (before the recording bit is set, so everything counted later belongs to the new
/// profile). Rings registered later are new allocations whose counters start at 0.
pub fn baseline() -> Baseline {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    Baseline {
        dropped_by_kind: reg.rings.iter().map(|r| r.dropped_by_kind()).collect(),
        unbalanced: reg.rings.iter().map(|r| r.unbalanced()).collect(),
        orphans_by_kind: std::array::from_fn(|i| ORPHAN_DROPS_BY_KIND[i].load(Ordering::Relaxed)),
    }
}

/// Returns the pages of every ring's buffer to the system (`npuprof_shutdown`, with no profile recording and
/// no drain thread). Rings stay registered, owned and usable: their buffers remain mapped and read as zeros
/// until written again. Returns the bytes released.
pub fn release_ring_memory() -> usize {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.rings.iter().map(|r| r.release_pages()).sum()
}

/// Frees rings whose owner exited and that are empty, so new threads can reuse them.
pub fn recycle_exited() {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    for r in &reg.rings {
        if r.owner_state() == ring::OWNER_EXITED && r.is_empty() {
            r.mark_free();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Set by `observe_allocation`: whether the registry lock was free while this thread allocated.
        static LOCK_FREE_DURING_ALLOC: Cell<Option<bool>> = const { Cell::new(None) };
    }

    /// Called where a new ring is allocated: is the registry lock free then? Another thread may hold it for
    /// a moment (it never holds it long), so "free" means a `try_lock` succeeds within many attempts; a lock
    /// this thread holds never does.
    pub(super) fn observe_allocation() {
        let free = (0..10_000).any(|_| {
            let got = REGISTRY.try_lock().is_ok();
            if !got {
                std::thread::yield_now();
            }
            got
        });
        LOCK_FREE_DURING_ALLOC.with(|c| c.set(Some(free)));
    }

    /// Issue 14 item 11: a thread's first record allocates (and fills) its ring without holding the registry
    /// lock, so other threads' first records never wait for a big allocation.
    #[test]
    fn a_new_ring_is_allocated_outside_the_registry_lock() {
        std::thread::spawn(|| {
            // A fresh thread allocates unless a FREE ring exists (none does in the unit tests: nothing
            // recycles there); the result says whether it allocated, so the test cannot pass vacuously.
            let before = ring_count();
            let r = register().expect("a ring");
            let allocated = ring_count() > before;
            if allocated {
                assert_eq!(
                    LOCK_FREE_DURING_ALLOC.with(|c| c.get()),
                    Some(true),
                    "the registry lock was held while the ring was allocated"
                );
            }
            assert_eq!(r.owner_state(), ring::OWNER_ALIVE);
            allocated
        })
        .join()
        .map(|allocated| assert!(allocated, "no allocation happened: the test proves nothing"))
        .unwrap();
    }
}
