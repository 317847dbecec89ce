//! The buffer pool MSPTI writes into: buffers allocated once at setup (kept for the life of the process), a free list, and the
//! owner of every buffer. A buffer is free (on the free list), handed out (MSPTI fills it), or taken (a
//! completion walks it, then the consumer spools it and frees it). A completion of a buffer that is not
//! handed out — completed twice, or never handed out at all — is refused, so two parties never share a buffer
//! and a buffer never enters the free list twice.
//!
//! What cannot be told apart: a late duplicate completion that arrives after the buffer was handed out again
//! is taken as that new hand-out's completion (MSPTI passes only the pointer). The free list is FIFO, so a
//! buffer is handed out again only after every other free one; the walk of such a buffer is bounded by the
//! buffer and reads names through the fault-safe reader.

use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::atomic::{AtomicU8, Ordering};

/// Who holds a pool buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Owner {
    Free = 0,
    HandedOut = 1,
    Taken = 2,
}

pub(super) struct Pool {
    /// The buffers (from `Box::into_raw`; freed on drop, which the process's pool in a static never is).
    mem: *mut [u64],
    base: *mut u8,
    pub buf_size: usize,
    pub buffers: usize,
    owner: Box<[AtomicU8]>,
    free_tx: Sender<u32>,
    free_rx: Receiver<u32>,
}

// SAFETY: `base` points at the pool's memory, valid while the pool lives; who may touch each buffer is decided by `owner`,
// changed only by compare-exchange.
unsafe impl Sync for Pool {}
// SAFETY: as above.
unsafe impl Send for Pool {}

impl Pool {
    /// `buffers` buffers of `buf_size` bytes (a multiple of 8), 8-byte aligned.
    pub(super) fn new(buf_size: usize, buffers: usize) -> Pool {
        let mem = Box::into_raw(vec![0u64; buf_size / 8 * buffers].into_boxed_slice());
        let (free_tx, free_rx) = bounded(buffers);
        for i in 0..buffers {
            let _ = free_tx.try_send(i as u32);
        }
        Pool {
            mem,
            base: mem as *mut u8,
            buf_size,
            buffers,
            owner: (0..buffers)
                .map(|_| AtomicU8::new(Owner::Free as u8))
                .collect(),
            free_tx,
            free_rx,
        }
    }

    /// The pool buffer starting at `p`, if it is one.
    pub(super) fn index(&self, p: *mut u8) -> Option<u32> {
        let off = (p as usize).checked_sub(self.base as usize)?;
        (off % self.buf_size == 0 && off / self.buf_size < self.buffers)
            .then_some((off / self.buf_size) as u32)
    }

    pub(super) fn buffer(&self, idx: u32) -> *mut u8 {
        // `idx < buffers` (from `index` or the free list): inside the pool.
        self.base.wrapping_add(idx as usize * self.buf_size)
    }

    fn swap(&self, idx: u32, from: Owner, to: Owner) -> bool {
        self.owner.get(idx as usize).is_some_and(|o| {
            o.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    /// A free buffer, now handed out to MSPTI; `None` when none is free.
    pub(super) fn hand_out(&self) -> Option<u32> {
        // An entry whose buffer is not free cannot be on the list (only `release` adds one, once); the loop
        // only guards against that.
        while let Ok(i) = self.free_rx.try_recv() {
            if self.swap(i, Owner::Free, Owner::HandedOut) {
                return Some(i);
            }
        }
        None
    }

    /// MSPTI completed buffer `idx`: true if it held it (the caller now owns it), false for a completion that
    /// does not match a hand-out (the buffer is left alone).
    pub(super) fn take_back(&self, idx: u32) -> bool {
        self.swap(idx, Owner::HandedOut, Owner::Taken)
    }

    /// The owner of a taken buffer is done with it: back on the free list.
    pub(super) fn release(&self, idx: u32) {
        if self.swap(idx, Owner::Taken, Owner::Free) {
            let _ = self.free_tx.try_send(idx);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: `mem` came from `Box::into_raw` in `new` and is freed once, here; nothing uses the pool after
        // its drop (the process's pool lives in a static and is never dropped, so MSPTI may complete late).
        drop(unsafe { Box::from_raw(self.mem) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_has_one_owner_and_enters_the_free_list_once() {
        let p = Pool::new(64, 2);
        let a = p.hand_out().unwrap();
        assert!(p.take_back(a));
        assert!(!p.take_back(a), "completed twice");
        let b = p.hand_out().unwrap();
        assert_ne!(a, b);
        assert!(p.hand_out().is_none());
        p.release(a);
        p.release(a);
        assert!(!p.take_back(a), "free: never handed out");
        assert_eq!(p.hand_out(), Some(a));
        assert!(p.hand_out().is_none(), "a is on the free list once");
        assert_eq!(p.index(p.buffer(b)), Some(b));
        assert_eq!(p.index(p.buffer(b).wrapping_add(8)), None);
        assert_eq!(p.index(p.buffer(2)), None);
        assert!(!p.take_back(7));
    }
}
