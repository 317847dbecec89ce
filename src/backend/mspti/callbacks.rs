//! The two buffer callbacks MSPTI calls (on its threads, possibly several at once). They never block, never
//! unwind into MSPTI, and allocate only for a name seen for the first time.
//!
//! * Request: a free pool buffer, handed out; none free → the sink buffer, whose records are dropped unread
//!   (counted in bytes). A NULL buffer would make MSPTI request again for every record.
//! * Complete: only a pool buffer MSPTI holds is walked (see `pool`): a second completion, or a completion of
//!   a buffer never handed out, is counted as `buffers_completed_unmatched` and ignored. The walked buffer goes
//!   to the `npuprof-mspti` thread with a non-blocking send (full → its records are dropped and counted).
//! * A panic in either (a bug of ours) is caught on MSPTI's thread: counted as `callback_panics`, logged the
//!   first time, and a completed buffer goes back to the pool if MSPTI still held it (see `caught`).
//! * In a forked child (see `Shared::forked_away`) neither touches the parent's pool, channels or counters:
//!   a request gets the sink, a completion is ignored. The child records host data only.

use super::counts::Count;
use super::vendor_str::Names;
use super::walk::walk;
use super::{SHARED, SINK_SIZE};
use crossbeam_channel::TrySendError;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

/// Which callback a caught panic came from (for its log line).
#[derive(Clone, Copy)]
enum Callback {
    Request,
    Complete,
}

pub(super) extern "C" fn on_request(
    buffer: *mut *mut u8,
    size: *mut usize,
    max_records: *mut usize,
) {
    if let Err(p) = catch_unwind(|| request(buffer, size, max_records)) {
        caught(Callback::Request, p, std::ptr::null_mut());
        if buffer.is_null() || size.is_null() {
            return;
        }
        // SAFETY: valid out-parameters from MSPTI, checked non-NULL; the sink is always safe to fill, and
        // without a pool (never set up) NULL says "no buffer".
        unsafe {
            match SHARED.get() {
                Some(sh) => {
                    *buffer = sh.sink;
                    *size = SINK_SIZE;
                }
                None => *buffer = std::ptr::null_mut(),
            }
        }
    }
}

fn request(buffer: *mut *mut u8, size: *mut usize, max_records: *mut usize) {
    if buffer.is_null() || size.is_null() {
        return;
    }
    let Some(sh) = SHARED.get() else {
        // SAFETY: MSPTI passes valid out-parameters.
        unsafe { *buffer = std::ptr::null_mut() };
        return;
    };
    if sh.forked_away() {
        // SAFETY: valid out-parameters from MSPTI (`max_records` may be NULL).
        unsafe {
            *buffer = sh.sink;
            *size = SINK_SIZE;
            if !max_records.is_null() {
                *max_records = 0;
            }
        }
        return;
    }
    sh.counts.add(Count::BuffersRequested, 1);
    let (p, n) = match sh.pool.hand_out() {
        Some(i) => (sh.pool.buffer(i), sh.pool.buf_size),
        None => {
            sh.counts.add(Count::BuffersDenied, 1);
            (sh.sink, SINK_SIZE)
        }
    };
    // SAFETY: valid out-parameters from MSPTI (`max_records` may be NULL).
    unsafe {
        *buffer = p;
        *size = n;
        if !max_records.is_null() {
            *max_records = 0;
        }
    }
}

pub(super) extern "C" fn on_complete(buffer: *mut u8, size: usize, valid: usize) {
    if let Err(p) = catch_unwind(|| complete(buffer, size, valid)) {
        caught(Callback::Complete, p, buffer);
    }
}

fn complete(buffer: *mut u8, size: usize, valid: usize) {
    let Some(sh) = SHARED.get() else { return };
    if sh.forked_away() {
        return;
    }
    crate::fault::point("mspti.complete");
    sh.counts.add(Count::BuffersCompleted, 1);
    if buffer == sh.sink {
        // Not read: MSPTI may already be filling it again. Counted in bytes (records vary in size).
        sh.counts.add(Count::SinkBytes, valid as u64);
        return;
    }
    let Some(idx) = sh.pool.index(buffer) else {
        if !buffer.is_null() {
            sh.counts.add(Count::ForeignBuffers, 1);
        }
        return;
    };
    if !sh.pool.take_back(idx) {
        sh.counts.add(Count::CompletionsUnmatched, 1);
        return;
    }
    // From here this callback owns the buffer: it goes back to the pool unless it is handed on, also when
    // the walk below panics (else the pool would shrink by a buffer per panic).
    let owned = Owned {
        pool: &sh.pool,
        idx,
    };
    let valid = valid.min(size).min(sh.pool.buf_size);
    // SAFETY: a pool buffer MSPTI held and returned (`take_back` made this callback its only owner until
    // it is handed on).
    let buf = unsafe { std::slice::from_raw_parts_mut(buffer, sh.pool.buf_size) };
    let n = walk(
        sh.api.next,
        &sh.counts,
        buf,
        valid,
        &mut Names::new(&sh.counts),
    );
    crate::fault::point("mspti.walked");
    match sh.data_tx.try_send((idx, n)) {
        Ok(()) => std::mem::forget(owned),
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            sh.counts.add(Count::BuffersDropped, 1);
            sh.counts.add(Count::RecordsDropped, n as u64);
        }
    }
}

/// A taken pool buffer this callback still owns: released (back on the free list) when dropped, also while
/// unwinding. Forgotten once the buffer is handed to the consumer thread.
struct Owned<'a> {
    pool: &'a super::pool::Pool,
    idx: u32,
}

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        self.pool.release(self.idx);
    }
}

/// A panic caught at a callback's boundary, on MSPTI's thread: counted, logged once per process (a bug hit
/// per buffer would otherwise log per buffer), its payload dropped by `error::panic_message` (which leaks
/// only a payload whose own drop panics). A completed pool buffer goes back to the pool whether MSPTI still
/// held it (the panic came before the callback took it back: here) or the callback did (`Owned`, while
/// unwinding), so the pool does not shrink by a buffer per panic; its records are lost (the panic count says
/// so). Never unwinds itself.
#[cold]
#[inline(never)]
fn caught(what: Callback, p: Box<dyn Any + Send>, buffer: *mut u8) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    let msg = crate::error::panic_message(p);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let Some(sh) = SHARED.get() else { return };
        if sh.forked_away() {
            return;
        }
        sh.counts.add(Count::CallbackPanics, 1);
        if !LOGGED.swap(true, Ordering::Relaxed) {
            let name = match what {
                Callback::Request => "buffer-request",
                Callback::Complete => "buffer-completed",
            };
            log::error!(
                "internal error in the MSPTI {name} callback (caught on MSPTI's thread, the host is \
                 unaffected; later ones are only counted as mspti_callback_panics): {msg}"
            );
        }
        if let Some(idx) = sh.pool.index(buffer) {
            if sh.pool.take_back(idx) {
                sh.pool.release(idx);
            }
        }
    }));
}
