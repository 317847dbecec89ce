//! A fixed-size single-producer / single-consumer ring of 16-byte records.
//!
//! One ring per recording thread. The producer is the thread that owns the ring (enforced by the registry in
//! `record/mod.rs`, which hands a ring to exactly one live thread at a time); the consumer is whoever holds the
//! ring's consumer flag (the drain thread, or a test).
//!
//! Layout: the producer's index and its private state share one cache line, the consumer's index is on
//! another, so a push writes only the producer's line and reads the consumer's line only when the ring looks
//! full (the cached tail, as in rtrb). Nothing on the push path is shared between two recording threads.
//!
//! Ordering (every atomic access names its pair):
//! * producer `head.store(Release)` after writing a slot ⟷ consumer `head.load(Acquire)` before reading it;
//! * consumer `tail.store(Release)` after reading slots ⟷ producer `tail.load(Acquire)` before reusing them.

use std::cell::UnsafeCell;
// Under `--cfg loom` the ring's atomics and slots are loom's, so the loom model at the end of this file
// explores every interleaving of the real push/drain code (see ./run-tests).
#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// One event: a raw clock tick and a kind-tagged payload (kind in the top 8 bits).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub ts: u64,
    pub meta: u64,
}

pub const RECORD_SIZE: usize = std::mem::size_of::<Record>();
const _: () = assert!(RECORD_SIZE == 16);

impl Record {
    #[inline(always)]
    pub fn new(ts: u64, kind: u8, payload: u64) -> Record {
        Record {
            ts,
            meta: ((kind as u64) << 56) | (payload & PAYLOAD_MASK),
        }
    }
    #[inline]
    pub fn kind(&self) -> u8 {
        (self.meta >> 56) as u8
    }
    #[inline]
    pub fn payload(&self) -> u64 {
        self.meta & PAYLOAD_MASK
    }
}

pub const PAYLOAD_MASK: u64 = (1 << 56) - 1;

/// Aligns its content to a cache line (128 bytes: two 64-byte lines, so the adjacent-line prefetcher of
/// x86 and the 128-byte lines of some aarch64 cores do not couple the two sides).
#[repr(C, align(128))]
pub struct CachePadded<T>(pub T);

/// State only the producer touches.
struct Local {
    /// Last tail value seen; `head - cached_tail < capacity` means there is room without reading `tail`.
    cached_tail: u64,
    /// Open ranges on this thread in the current profile (see `record::range_push`).
    depth: u32,
    /// The profile generation `depth` belongs to.
    gen: u64,
}

struct ProducerSide {
    head: AtomicU64,
    /// Copies of `Ring::buf` and `mask` on the producer's own line: a push touches this line and the
    /// slot, nothing else.
    #[cfg_attr(loom, allow(dead_code))]
    slots: *mut Record,
    mask: u64,
    local: UnsafeCell<Local>,
    /// Records dropped because the ring was full, by record kind (`Record::kind() & 7`): the one count of
    /// drops (their total is [`Ring::dropped`], so the two can never disagree). Written only by the
    /// producer (load + store, no RMW). After `local`: a push that has room touches only the line above.
    dropped_kind: [AtomicU64; 8],
    /// `range_pop` calls without an open range.
    unbalanced: AtomicU64,
}

struct ConsumerSide {
    tail: AtomicU64,
    busy: AtomicBool,
}

pub const OWNER_ALIVE: u8 = 0;
pub const OWNER_EXITED: u8 = 1;
pub const OWNER_FREE: u8 = 2;

pub struct Ring {
    prod: CachePadded<ProducerSide>,
    cons: CachePadded<ConsumerSide>,
    /// `mask + 1` records, from `Box::into_raw` (freed in `Drop`). Kept as a raw pointer, never as a Box or
    /// a reference to the whole buffer: the producer writes one slot while the consumer reads others, and
    /// a unique Box (or a `&mut [Record]`) over the buffer would assert exclusive access (Miri's Stacked
    /// Borrows check caught exactly that in an earlier version).
    #[cfg_attr(loom, allow(dead_code))]
    buf: *mut Record,
    /// Under loom the slots are loom cells, so that loom checks every slot access for data races.
    #[cfg(loom)]
    cells: Box<[loom::cell::UnsafeCell<Record>]>,
    mask: u64,
    /// Index in the registry; stable for the life of the process.
    pub id: u32,
    /// OS thread id of the current owner.
    tid: AtomicU32,
    /// OWNER_* state; written by the owner at exit (Release) and by the registry, read by the drain (Acquire).
    owner: AtomicU8,
    /// Bumped each time the ring changes owner, so the drain can tell owners apart.
    epoch: AtomicU32,
}

// SAFETY: the atomics are Sync by themselves. The slots of `buf` are written only by the single producer at indices in
// [tail, tail + capacity) not yet published, and read only by the single consumer at indices in [tail, head)
// after an Acquire load of `head`; the two never touch the same slot at the same time (see the module doc for
// the Release/Acquire pairs). `local` is touched only by the producer; `push` and `producer_local` are unsafe
// and require the caller to be the single producer.
unsafe impl Sync for Ring {}
// SAFETY: see above; a ring holds no thread-bound resources.
unsafe impl Send for Ring {}

impl Ring {
    /// A ring with room for `capacity` records (a power of two, at least 2). Returns `None` if the memory
    /// cannot be had (never aborts on allocation failure).
    pub fn try_new(id: u32, capacity: usize) -> Option<Ring> {
        assert!(capacity.is_power_of_two() && capacity >= 2);
        let mut v: Vec<Record> = Vec::new();
        v.try_reserve_exact(capacity).ok()?;
        v.resize(capacity, Record::default());
        let slots_ptr = Box::into_raw(v.into_boxed_slice()) as *mut Record;
        Some(Ring {
            prod: CachePadded(ProducerSide {
                head: AtomicU64::new(0),
                slots: slots_ptr,
                mask: capacity as u64 - 1,
                dropped_kind: std::array::from_fn(|_| AtomicU64::new(0)),
                unbalanced: AtomicU64::new(0),
                local: UnsafeCell::new(Local {
                    cached_tail: 0,
                    depth: 0,
                    gen: 0,
                }),
            }),
            cons: CachePadded(ConsumerSide {
                tail: AtomicU64::new(0),
                busy: AtomicBool::new(false),
            }),
            buf: slots_ptr,
            #[cfg(loom)]
            cells: (0..capacity)
                .map(|_| loom::cell::UnsafeCell::new(Record::default()))
                .collect(),
            mask: capacity as u64 - 1,
            id,
            tid: AtomicU32::new(0),
            owner: AtomicU8::new(OWNER_FREE),
            epoch: AtomicU32::new(0),
        })
    }

    pub fn capacity(&self) -> usize {
        self.mask as usize + 1
    }

    /// Appends `rec`, or counts it as dropped if the ring is full. Never blocks, never allocates.
    ///
    /// # Safety
    /// Only the ring's single producer (its owning thread) may call this, and never concurrently with
    /// another producer-side call.
    #[inline(always)]
    pub unsafe fn push(&self, rec: Record) -> bool {
        let p = &self.prod.0;
        // SAFETY: the caller is the only producer, so nobody else accesses `local`.
        let local = unsafe { &mut *p.local.get() };
        // Relaxed: only this thread writes `head`.
        let head = p.head.load(Ordering::Relaxed);
        if head.wrapping_sub(local.cached_tail) > p.mask {
            // Acquire pairs with the consumer's Release store of `tail`: its reads of the slots we are about
            // to reuse happened before.
            local.cached_tail = self.cons.0.tail.load(Ordering::Acquire);
            if head.wrapping_sub(local.cached_tail) > p.mask {
                // Only the producer writes `dropped_kind`; the drain reads it (Relaxed: a counter, nothing
                // else is published through it).
                let k = &p.dropped_kind[(rec.kind() & 7) as usize];
                k.store(k.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                return false;
            }
        }
        // SAFETY: `p.slots` points to `mask + 1` records, so `head & mask` is in bounds. `head - tail <= mask`,
        // so this slot is outside [tail, head): the consumer does not read it until we publish it below, and
        // we are the only writer.
        #[cfg(not(loom))]
        unsafe {
            p.slots.add((head & p.mask) as usize).write(rec)
        };
        #[cfg(loom)]
        self.cells[(head & p.mask) as usize].with_mut(|ptr| unsafe { ptr.write(rec) });
        // Release pairs with the consumer's Acquire load of `head`: the slot write above is visible to it.
        p.head.store(head.wrapping_add(1), Ordering::Release);
        true
    }

    /// The producer's private depth/generation state.
    ///
    /// # Safety
    /// As for [`Ring::push`]: only the owning thread, and the reference must not outlive the call that uses
    /// it (no two live at once).
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn producer_local(&self) -> (&mut u32, &mut u64) {
        // SAFETY: the caller is the only producer.
        let l = unsafe { &mut *self.prod.0.local.get() };
        (&mut l.depth, &mut l.gen)
    }

    /// Counts an unbalanced pop. Producer only (same contract as `push`, but harmless if violated: a counter).
    #[inline]
    pub fn count_unbalanced(&self) {
        // Relaxed load + store: only the producer writes this counter; the drain reads it after stop.
        let u = self.prod.0.unbalanced.load(Ordering::Relaxed);
        self.prod.0.unbalanced.store(u + 1, Ordering::Relaxed);
    }

    /// Records dropped because the ring was full, since the ring was created.
    pub fn dropped(&self) -> u64 {
        self.dropped_by_kind().iter().sum()
    }

    /// [`Ring::dropped`] by record kind (index `kind & 7`).
    pub fn dropped_by_kind(&self) -> [u64; 8] {
        std::array::from_fn(|i| self.prod.0.dropped_kind[i].load(Ordering::Relaxed))
    }

    pub fn unbalanced(&self) -> u64 {
        self.prod.0.unbalanced.load(Ordering::Relaxed)
    }

    /// Records waiting to be drained.
    pub fn len(&self) -> usize {
        // Acquire on both: pairs with the producer's Release of `head` and the consumer's Release of `tail`
        // (a snapshot for `is_empty` in the registry; no slot is read here).
        let head = self.prod.0.head.load(Ordering::Acquire);
        let tail = self.cons.0.tail.load(Ordering::Acquire);
        head.wrapping_sub(tail) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands every published record to `f` (in at most two slices, oldest first) and frees their slots.
    /// Returns how many were consumed; 0 if another consumer holds the ring right now.
    pub fn drain(&self, mut f: impl FnMut(&[Record])) -> usize {
        if self
            .cons
            .0
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        // Releases `busy` even if `f` panics (Release pairs with the next consumer's Acquire).
        struct Unbusy<'a>(&'a AtomicBool);
        impl Drop for Unbusy<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _unbusy = Unbusy(&self.cons.0.busy);
        // Relaxed: only the consumer (us, holding `busy`) writes `tail`; `busy`'s Acquire orders us after
        // the previous consumer's Release of `busy`.
        let tail = self.cons.0.tail.load(Ordering::Relaxed);
        // Acquire pairs with the producer's Release store of `head` (slot contents are visible).
        let head = self.prod.0.head.load(Ordering::Acquire);
        let n = head.wrapping_sub(tail) as usize;
        if n > 0 {
            #[cfg(not(loom))]
            {
                let cap = self.capacity();
                let start = (tail & self.mask) as usize;
                let first = n.min(cap - start);
                let base = self.buf as *const Record;
                // SAFETY: slots [tail, head) were published by the Release/Acquire pair above and the
                // producer does not write them until we advance `tail`.
                unsafe {
                    f(std::slice::from_raw_parts(base.add(start), first));
                    if first < n {
                        f(std::slice::from_raw_parts(base, n - first));
                    }
                }
            }
            #[cfg(loom)]
            {
                let v: Vec<Record> = (tail..head)
                    .map(|k| {
                        // SAFETY: as above; loom checks that the producer's write happened before.
                        self.cells[(k & self.mask) as usize].with(|p| unsafe { *p })
                    })
                    .collect();
                f(&v);
            }
            // Release pairs with the producer's Acquire load of `tail`: our reads above happen before it
            // reuses these slots.
            self.cons.0.tail.store(head, Ordering::Release);
        }
        n
    }

    pub fn tid(&self) -> u32 {
        // Relaxed: published by the Release of `epoch` in `assign`, which the drain reads with Acquire first.
        self.tid.load(Ordering::Relaxed)
    }

    pub fn owner_state(&self) -> u8 {
        // Acquire pairs with the Release store in `mark_exited`: the exiting owner's last records (published
        // by its own Release of head) are visible.
        self.owner.load(Ordering::Acquire)
    }

    pub fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Gives the ring to a new owner thread.
    ///
    /// # Safety
    /// The ring must be new or FREE, and the caller must hold the registry lock. Then no producer exists:
    /// the previous owner's last access happened before its `mark_exited` (Release), which the drain saw
    /// (Acquire in `owner_state`) before `mark_free`, which happened before the registry lock we hold.
    pub(crate) unsafe fn assign(&self, tid: u32) {
        debug_assert_ne!(self.owner.load(Ordering::Relaxed), OWNER_ALIVE);
        // SAFETY: see the function's contract: nobody else touches the producer state now.
        let local = unsafe { &mut *self.prod.0.local.get() };
        local.depth = 0;
        local.gen = 0;
        // Relaxed: made visible by the Release increment of `epoch` just below.
        self.tid.store(tid, Ordering::Relaxed);
        // Release pairs with the drain's Acquire of `epoch`: it sees the new tid.
        self.epoch.fetch_add(1, Ordering::Release);
        // Release pairs with the Acquire in `owner_state` (registry and drain).
        self.owner.store(OWNER_ALIVE, Ordering::Release);
    }

    /// Returns the whole pages of the slot buffer to the system (`madvise(MADV_DONTNEED)`); they read as
    /// zeros afterwards and are faulted in again by the next writes. Returns the bytes released.
    ///
    /// Call it only when no profile records and no consumer drains (`npuprof_shutdown`, after the drain
    /// thread ended). Records still unread in the ring become zero records, which the next profile's window
    /// filter counts as outside the profile, like any stale record.
    #[cfg(not(any(loom, miri)))]
    pub(crate) fn release_pages(&self) -> usize {
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => return 0,
        };
        let start = self.buf as usize;
        let end = start + self.capacity() * RECORD_SIZE;
        let (lo, hi) = (start.next_multiple_of(page), end / page * page);
        if hi <= lo {
            return 0;
        }
        // SAFETY: [lo, hi) is whole pages inside this ring's own slot allocation, which stays allocated and
        // mapped (it is freed only by `Drop`, and registry rings are never dropped): MADV_DONTNEED on
        // private anonymous memory only replaces the pages' content with zeros, every address stays valid.
        // Nobody reads the slots now (no consumer runs at shutdown). A record call that saw the recording
        // bit before the stop may still write one slot concurrently: its write lands in the old page
        // (discarded) or in a fresh zero page, never outside the mapping; such a record is stale either way
        // (the next profile's window filter drops and counts it).
        let rc = unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED) };
        if rc == 0 {
            hi - lo
        } else {
            0
        }
    }

    /// Under loom and Miri there is no `madvise`: nothing is released.
    #[cfg(any(loom, miri))]
    pub(crate) fn release_pages(&self) -> usize {
        0
    }

    /// In a forked child: the parent's drain thread, which may have held the consumer flag, does not exist.
    pub(crate) fn release_consumer_after_fork(&self) {
        // Release: as any consumer's release of `busy`.
        self.cons.0.busy.store(false, Ordering::Release);
    }

    /// The owner thread is exiting and will never touch the ring again.
    pub(crate) fn mark_exited(&self) {
        // Release pairs with the Acquire in `owner_state`.
        self.owner.store(OWNER_EXITED, Ordering::Release);
    }

    /// The drain has emptied an exited ring; the registry may reuse it.
    pub(crate) fn mark_free(&self) {
        // Release pairs with the Acquire in `owner_state` of a registering thread (which also holds the
        // registry lock taken after this store).
        self.owner.store(OWNER_FREE, Ordering::Release);
    }
}

#[cfg(not(loom))]
impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `buf` came from `Box::into_raw` of a boxed slice of `mask + 1` records and is freed once.
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.buf,
                self.capacity(),
            )))
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn collect(r: &Ring) -> Vec<Record> {
        let mut v = Vec::new();
        r.drain(|s| v.extend_from_slice(s));
        v
    }

    #[test]
    fn layout_is_cache_line_aware() {
        assert_eq!(std::mem::size_of::<Record>(), 16);
        assert_eq!(std::mem::align_of::<Record>(), 16);
        assert_eq!(std::mem::align_of::<CachePadded<ProducerSide>>(), 128);
        let r = Ring::try_new(0, 8).unwrap();
        let p = &r.prod as *const _ as usize;
        let c = &r.cons as *const _ as usize;
        assert_eq!(p % 128, 0);
        assert_eq!(c % 128, 0);
        assert!(
            p.abs_diff(c) >= 128,
            "producer and consumer indices share a line"
        );
    }

    #[test]
    fn fifo_wraparound_and_drop_when_full() {
        let r = Ring::try_new(0, 4).unwrap();
        for round in 0..10u64 {
            for i in 0..4 {
                // SAFETY: this thread is the ring's only producer.
                assert!(unsafe { r.push(Record::new(round * 10 + i, 1, i)) });
            }
            assert!(
                // SAFETY: this thread is the ring's only producer.
                !unsafe { r.push(Record::new(999, 1, 0)) },
                "5th push must drop"
            );
            let got: Vec<u64> = collect(&r).iter().map(|x| x.ts).collect();
            assert_eq!(got, (0..4).map(|i| round * 10 + i).collect::<Vec<_>>());
        }
        assert_eq!(r.dropped(), 10);
        assert!(r.is_empty());
    }

    #[test]
    fn kind_and_payload_round_trip() {
        let rec = Record::new(5, 0xAB, u64::MAX);
        assert_eq!(rec.kind(), 0xAB);
        assert_eq!(rec.payload(), PAYLOAD_MASK);
    }

    #[test]
    fn concurrent_producer_consumer_sees_every_record_in_order() {
        let r = Arc::new(Ring::try_new(0, 64).unwrap());
        // Miri explores interleavings (and weak-memory outcomes) of a much shorter run.
        const N: u64 = if cfg!(miri) { 300 } else { 200_000 };
        let p = {
            let r = r.clone();
            std::thread::spawn(move || {
                let mut sent = 0u64;
                let mut i = 0;
                while i < N {
                    // SAFETY: this thread is the ring's only producer.
                    if unsafe { r.push(Record::new(i, 1, i)) } {
                        sent += 1;
                    }
                    i += 1;
                }
                sent
            })
        };
        let mut got = Vec::new();
        loop {
            r.drain(|s| got.extend(s.iter().map(|x| x.ts)));
            if p.is_finished() && r.is_empty() {
                break;
            }
        }
        let sent = p.join().unwrap();
        r.drain(|s| got.extend(s.iter().map(|x| x.ts)));
        assert_eq!(got.len() as u64, sent);
        assert_eq!(sent + r.dropped(), N, "recorded + dropped = issued");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "FIFO order");
    }
}

/// The SPSC protocol under loom: every interleaving of a producer pushing into a 2-slot ring (so it wraps and
/// hits "full") against a consumer draining concurrently. Loom's cells flag any slot read that is not
/// ordered after its write, i.e. a missing or misplaced Release/Acquire pair.
#[cfg(loom)]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    #[test]
    fn loom_spsc_push_drain_is_race_free_fifo_and_counts_drops() {
        loom::model(|| {
            let r = Arc::new(Ring::try_new(0, 2).unwrap());
            let done = Arc::new(AtomicBool::new(false));
            let producer = {
                let (r, done) = (r.clone(), done.clone());
                loom::thread::spawn(move || {
                    for i in 1..=3u64 {
                        // SAFETY: this thread is the ring's only producer.
                        unsafe { r.push(Record::new(i, 1, i)) };
                    }
                    done.store(true, Ordering::Release);
                })
            };
            // The consumer polls while the producer runs, as the drain thread does.
            let mut got = Vec::new();
            loop {
                let finished = done.load(Ordering::Acquire);
                r.drain(|s| got.extend(s.iter().map(|x| (x.ts, x.payload()))));
                if finished {
                    break;
                }
                loom::thread::yield_now();
            }
            producer.join().unwrap();
            assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "FIFO: {got:?}");
            assert!(got.iter().all(|(ts, p)| ts == p), "torn record: {got:?}");
            assert_eq!(
                got.len() as u64 + r.dropped(),
                3,
                "recorded + dropped = issued"
            );
        });
    }
}
