//! The two buffer callbacks MSPTI calls (on its threads, possibly several at once). They never block, never
//! unwind into MSPTI, and allocate only for a name seen for the first time.
//!
//! * Request: a free pool buffer, handed out; none free → the sink buffer, whose records are dropped unread
//!   (counted in bytes). A NULL buffer would make MSPTI request again for every record.
//! * Complete: only a pool buffer MSPTI holds is walked (see `pool`): a second completion, or a completion of
//!   a buffer never handed out, is counted as `buffers_completed_unmatched` and ignored. The walked buffer goes
//!   to the `npuprof-mspti` thread with a non-blocking send (full → its records are dropped and counted).
//! * In a forked child (see `Shared::forked_away`) neither touches the parent's pool, channels or counters:
//!   a request gets the sink, a completion is ignored. The child records host data only.

use super::counts::Count;
use super::vendor_str::Names;
use super::walk::walk;
use super::{SHARED, SINK_SIZE};
use crossbeam_channel::TrySendError;

pub extern "C" fn on_request(buffer: *mut *mut u8, size: *mut usize, max_records: *mut usize) {
    let _ = std::panic::catch_unwind(|| {
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
    });
}

pub extern "C" fn on_complete(buffer: *mut u8, size: usize, valid: usize) {
    let _ = std::panic::catch_unwind(|| {
        crate::fault::point("mspti.complete");
        let Some(sh) = SHARED.get() else { return };
        if sh.forked_away() {
            return;
        }
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
        match sh.data_tx.try_send((idx, n)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                sh.counts.add(Count::BuffersDropped, 1);
                sh.counts.add(Count::RecordsDropped, n as u64);
                sh.pool.release(idx);
            }
        }
    });
}
