//! The MSPTI backend: CANN's `libmspti.so` hands activity records (kernels, API calls, markers, memory,
//! communication) to this process, so device data is parsed in-process, seconds after stop, with no external
//! tool.
//!
//! * At the first start (never at load): open `libmspti.so` (search as for the ACL libraries),
//!   `msptiSubscribe` (one subscriber per process: if torch_npu's profiler holds it, say so and fall back),
//!   `msptiActivityRegisterCallbacks`, and a pool of buffers allocated up front. Each profile enables the
//!   kinds the configuration asks for; its stop flushes (`msptiActivityFlushAll`) and disables them. The
//!   subscription ends at shutdown.
//! * Buffers: the request callback hands out a free pool buffer (none free → MSPTI drops, counted). The
//!   completion callback (an MSPTI thread, possibly several at once) walks the buffer with
//!   `msptiActivityGetNextRecord` to its end (the cursor is per thread), rewrites each known record in place as
//!   a compact 48-byte record with its names interned, and passes the buffer to the `npuprof-mspti` thread
//!   with a non-blocking send (full → the buffer's records are dropped and counted). That thread appends the
//!   records to `FRAMEWORK/mspti.spool` and returns the buffer to the pool. The callbacks never block on it,
//!   allocate only for a name seen for the first time, and never unwind into MSPTI.
//! * Export: the spool becomes kernel rows, device lanes per stream, API slices on the launching thread, flows
//!   launch → kernel by correlation id, communication lanes, memory counters and markers.

pub mod records;

use super::{
    Backend, DeviceData, DeviceEvent, DeviceResult, Kernel, Kernels, LaneStats, Lanes, Sym,
};
use crate::config::Config;
use crate::error::{Error, Result, Status};
use crate::export::json;
use crate::export::trace_view::TraceWriter;
use crate::record::names;
use crate::session::Profile;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use records::*;
use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub const LIBRARY: &str = "libmspti.so";
/// Bytes of one compact record in `mspti.spool`.
pub const REC: usize = 48;

type SubscribeFn = unsafe extern "C" fn(*mut *mut c_void, *const c_void, *mut c_void) -> u32;
type UnsubscribeFn = unsafe extern "C" fn(*mut c_void) -> u32;
type RequestFn = extern "C" fn(*mut *mut u8, *mut usize, *mut usize);
type CompleteFn = extern "C" fn(*mut u8, usize, usize);
type RegisterFn = unsafe extern "C" fn(RequestFn, CompleteFn) -> u32;
type KindFn = unsafe extern "C" fn(u32) -> u32;
type NextFn = unsafe extern "C" fn(*mut u8, usize, *mut *mut u32) -> u32;
type FlushFn = unsafe extern "C" fn(u32) -> u32;

struct Api {
    subscribe: SubscribeFn,
    unsubscribe: UnsubscribeFn,
    register: RegisterFn,
    enable: KindFn,
    disable: KindFn,
    next: Option<NextFn>,
    flush_all: FlushFn,
    how: String,
}

/// Counts shared by the callbacks, reported per profile (deltas) in `profiler_metadata.json`.
#[derive(Default)]
struct Counts {
    buffers_requested: AtomicU64,
    buffers_denied: AtomicU64,
    buffers_completed: AtomicU64,
    buffers_dropped: AtomicU64,
    records: AtomicU64,
    records_dropped: AtomicU64,
    unknown_records: AtomicU64,
    foreign_buffers: AtomicU64,
    sink_bytes: AtomicU64,
}

impl Counts {
    fn snapshot(&self) -> [u64; 9] {
        [
            &self.buffers_requested,
            &self.buffers_denied,
            &self.buffers_completed,
            &self.buffers_dropped,
            &self.records,
            &self.records_dropped,
            &self.unknown_records,
            &self.foreign_buffers,
            &self.sink_bytes,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

const COUNT_NAMES: [&str; 9] = [
    "buffers_requested",
    "buffers_denied_pool_empty",
    "buffers_completed",
    "buffers_dropped_consumer_busy",
    "records",
    "records_dropped",
    "unknown_or_malformed_records",
    "foreign_buffers",
    "bytes_dropped_pool_empty",
];

/// What the callbacks need (they get no user data from MSPTI).
/// Bytes of the sink buffer handed out when the pool is empty.
const SINK_SIZE: usize = 256 * 1024;

struct Shared {
    api: Api,
    base: *mut u8,
    sink: *mut u8,
    buf_size: usize,
    buffers: usize,
    free_tx: Sender<u32>,
    free_rx: Receiver<u32>,
    data_tx: Sender<(u32, u32)>,
    counts: Counts,
}
// SAFETY: `base` points at the leaked pool (never freed); each buffer is owned by exactly one party at a time
// (the free list, MSPTI, a completion callback, or the consumer), handed over through the channels.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

static SHARED: OnceLock<Shared> = OnceLock::new();
/// The subscriber handle, for `msptiUnsubscribe` at shutdown.
static HANDLE: std::sync::atomic::AtomicPtr<c_void> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

enum Control {
    Open(std::fs::File),
    Close(Sender<std::io::Result<u64>>),
}

fn buffer_index(sh: &Shared, p: *mut u8) -> Option<u32> {
    let off = (p as usize).checked_sub(sh.base as usize)?;
    (off % sh.buf_size == 0 && off / sh.buf_size < sh.buffers).then_some((off / sh.buf_size) as u32)
}

extern "C" fn on_request(buffer: *mut *mut u8, size: *mut usize, max_records: *mut usize) {
    let _ = std::panic::catch_unwind(|| {
        if buffer.is_null() || size.is_null() {
            return;
        }
        let Some(sh) = SHARED.get() else {
            // SAFETY: MSPTI passes valid out-parameters.
            unsafe { *buffer = std::ptr::null_mut() };
            return;
        };
        sh.counts.buffers_requested.fetch_add(1, Ordering::Relaxed);
        // SAFETY (the writes below): valid out-parameters from MSPTI; a buffer taken from the free list is
        // owned by MSPTI until it comes back through `on_complete`.
        match sh.free_rx.try_recv() {
            Ok(i) => unsafe {
                *buffer = sh.base.add(i as usize * sh.buf_size);
                *size = sh.buf_size;
                if !max_records.is_null() {
                    *max_records = 0;
                }
            },
            Err(_) => unsafe {
                // Pool empty (the consumer is behind): hand out the sink buffer, whose records are dropped
                // unread when it completes. A NULL buffer would make MSPTI request again for every record and
                // complete each empty one on a thread of its own.
                sh.counts.buffers_denied.fetch_add(1, Ordering::Relaxed);
                *buffer = sh.sink;
                *size = SINK_SIZE;
                if !max_records.is_null() {
                    *max_records = 0;
                }
            },
        }
    });
}

fn name_id(p: *const std::ffi::c_char) -> u32 {
    if p.is_null() {
        return 0;
    }
    // SAFETY: MSPTI's record strings are NUL-terminated and valid while the completion callback runs.
    names::intern(unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// One compact record (little endian): kind u32, a u32, start u64, end u64, corr u64, b u64, c u64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevRec {
    pub kind: u32,
    pub a: u32,
    pub start: u64,
    pub end: u64,
    pub corr: u64,
    pub b: u64,
    pub c: u64,
}

impl DevRec {
    pub fn to_bytes(self) -> [u8; REC] {
        let mut o = [0u8; REC];
        o[0..4].copy_from_slice(&self.kind.to_le_bytes());
        o[4..8].copy_from_slice(&self.a.to_le_bytes());
        for (i, v) in [self.start, self.end, self.corr, self.b, self.c]
            .iter()
            .enumerate()
        {
            o[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        o
    }
    pub fn from_bytes(b: &[u8]) -> DevRec {
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
        DevRec {
            kind: u32_at(0),
            a: u32_at(4),
            start: u64_at(8),
            end: u64_at(16),
            corr: u64_at(24),
            b: u64_at(32),
            c: u64_at(40),
        }
    }
}

/// One MSPTI record at `off` of `buf` → its compact form (names interned); `None` for kinds npuprof does not
/// keep or records that do not fit.
pub fn compact(buf: &[u8], off: usize) -> Option<DevRec> {
    let kind: u32 = read(buf, off)?;
    let pair = |hi: u32, lo: u32| ((hi as u64) << 32) | lo as u64;
    Some(match kind {
        KIND_KERNEL => {
            let k: records::Kernel = read(buf, off)?;
            DevRec {
                kind,
                a: k.stream_id,
                start: k.start,
                end: k.end,
                corr: k.correlation_id,
                b: k.device_id as u64,
                c: pair(name_id(k.name), name_id(k.type_)),
            }
        }
        KIND_API | KIND_ACL_API | KIND_NODE_API | KIND_RUNTIME_API => {
            let a: records::Api = read(buf, off)?;
            DevRec {
                kind,
                a: a.thread_id,
                start: a.start,
                end: a.end,
                corr: a.correlation_id,
                b: a.process_id as u64,
                c: name_id(a.name) as u64,
            }
        }
        KIND_HCCL => {
            let h: Hccl = read(buf, off)?;
            DevRec {
                kind,
                a: h.stream_id,
                start: h.start,
                end: h.end,
                corr: h.band_width.to_bits(),
                b: h.device_id as u64,
                c: pair(name_id(h.name), name_id(h.comm_name)),
            }
        }
        KIND_COMMUNICATION => {
            let h: Communication = read(buf, off)?;
            DevRec {
                kind,
                a: h.stream_id,
                start: h.start,
                end: h.end,
                corr: h.correlation_id,
                b: pair(h.data_type, h.device_id),
                c: pair(name_id(h.name), name_id(h.comm_name)),
            }
        }
        KIND_MEMORY => {
            let m: Memory = read(buf, off)?;
            DevRec {
                kind,
                a: m.memory_operation_type,
                start: m.start,
                end: m.end,
                corr: m.correlation_id,
                b: m.bytes,
                c: pair(m.device_id, m.stream_id),
            }
        }
        KIND_MEMSET | KIND_MEMCPY => {
            let m: MemOp = read(buf, off)?;
            DevRec {
                kind,
                a: m.value_or_copy_kind,
                start: m.start,
                end: m.end,
                corr: m.correlation_id,
                b: m.bytes,
                c: pair(m.device_id, m.stream_id),
            }
        }
        KIND_MARKER => {
            let m: Marker = read(buf, off)?;
            DevRec {
                kind,
                a: m.flag,
                start: m.timestamp,
                end: m.timestamp,
                corr: m.id,
                b: pair(m.object_id[0], m.object_id[1]),
                c: pair(name_id(m.name), name_id(m.domain)),
            }
        }
        _ => return None,
    })
}

extern "C" fn on_complete(buffer: *mut u8, size: usize, valid: usize) {
    let _ = std::panic::catch_unwind(|| {
        crate::fault::point("mspti.complete");
        let Some(sh) = SHARED.get() else { return };
        sh.counts.buffers_completed.fetch_add(1, Ordering::Relaxed);
        if buffer == sh.sink {
            // Not read: MSPTI may already be filling it again. Counted in bytes (records vary in size).
            sh.counts
                .sink_bytes
                .fetch_add(valid as u64, Ordering::Relaxed);
            return;
        }
        let Some(idx) = buffer_index(sh, buffer) else {
            if !buffer.is_null() {
                sh.counts.foreign_buffers.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        let valid = valid.min(size).min(sh.buf_size);
        // SAFETY: one of our pool buffers, returned by MSPTI: this callback owns it until it is handed on.
        let buf = unsafe { std::slice::from_raw_parts_mut(buffer, sh.buf_size) };
        let n = walk(sh.api.next, &sh.counts, buf, valid);
        match sh.data_tx.try_send((idx, n)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                sh.counts.buffers_dropped.fetch_add(1, Ordering::Relaxed);
                sh.counts
                    .records_dropped
                    .fetch_add(n as u64, Ordering::Relaxed);
                let _ = sh.free_tx.try_send(idx);
            }
        }
    });
}

/// Walks a completed buffer to its end and compacts the records in place (each kept record is at least 48
/// bytes, so the write position never passes the read position). Returns the number of compact records.
fn walk(next: Option<NextFn>, counts: &Counts, buf: &mut [u8], valid: usize) -> u32 {
    let mut w = 0usize;
    let mut keep = |buf: &mut [u8], off: usize| match compact(buf, off) {
        Some(r) => {
            buf[w..w + REC].copy_from_slice(&r.to_bytes());
            w += REC;
            counts.records.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            counts.unknown_records.fetch_add(1, Ordering::Relaxed);
        }
    };
    match next {
        Some(next) => {
            // MSPTI's cursor is thread-local and only resets when it reaches the end: always run to the end.
            let mut off = 0usize;
            for _ in 0..=valid / 8 {
                let mut rec: *mut u32 = std::ptr::null_mut();
                // SAFETY: a valid buffer of at least `valid` bytes and a valid out-pointer.
                let r = unsafe { next(buf.as_mut_ptr(), valid, &mut rec) };
                if r == MSPTI_ERROR_MAX_LIMIT_REACHED {
                    break;
                }
                let at = (rec as usize).wrapping_sub(buf.as_ptr() as usize);
                let size = read::<u32>(buf, at).and_then(record_size);
                if r != MSPTI_SUCCESS || rec.is_null() || size.map_or(true, |s| at + s > valid) {
                    // Unknown kind or impossible size: count it, and reset this thread's cursor by asking for
                    // the next record of a buffer that ends exactly where it stands.
                    counts.unknown_records.fetch_add(1, Ordering::Relaxed);
                    let mut dummy: *mut u32 = std::ptr::null_mut();
                    // SAFETY: as above; `off <= valid`.
                    unsafe { next(buf.as_mut_ptr(), off, &mut dummy) };
                    break;
                }
                let s = size.unwrap_or(0);
                if s < REC {
                    // External correlation (24 bytes): not kept (it would not fit in place).
                    off = at + s;
                    continue;
                }
                keep(buf, at);
                off = at + s;
            }
        }
        None => {
            let mut off = 0usize;
            while off < valid {
                let Some(s) = read::<u32>(buf, off).and_then(record_size) else {
                    counts.unknown_records.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                if off + s > valid {
                    counts.unknown_records.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                if s >= REC {
                    keep(buf, off);
                }
                off += s;
            }
        }
    }
    (w / REC) as u32
}

/// The `npuprof-mspti` thread: compact records → the open profile's spool; buffers → back to the pool.
fn consumer(data_rx: Receiver<(u32, u32)>, ctl_rx: Receiver<Control>) {
    let mut file: Option<std::io::BufWriter<std::fs::File>> = None;
    let mut written = 0u64;
    let mut err: Option<std::io::Error> = None;
    let handle = |file: &mut Option<std::io::BufWriter<std::fs::File>>,
                  written: &mut u64,
                  err: &mut Option<std::io::Error>,
                  (idx, n): (u32, u32)| {
        let Some(sh) = SHARED.get() else { return };
        crate::fault::stall("mspti.consumer");
        if let Some(f) = file.as_mut() {
            // SAFETY: the buffer was handed over by `on_complete`; it is ours until returned below.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    sh.base.add(idx as usize * sh.buf_size),
                    n as usize * REC,
                )
            };
            match f.write_all(bytes) {
                Ok(()) => *written += n as u64,
                Err(e) => {
                    sh.counts
                        .records_dropped
                        .fetch_add(n as u64, Ordering::Relaxed);
                    err.get_or_insert(e);
                }
            }
        } else {
            sh.counts
                .records_dropped
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        let _ = sh.free_tx.try_send(idx);
    };
    loop {
        crossbeam_channel::select! {
            recv(data_rx) -> m => match m {
                Ok(m) => handle(&mut file, &mut written, &mut err, m),
                Err(_) => return,
            },
            recv(ctl_rx) -> m => match m {
                Ok(Control::Open(f)) => {
                    file = Some(std::io::BufWriter::with_capacity(1 << 20, f));
                    written = 0;
                    err = None;
                }
                Ok(Control::Close(ack)) => {
                    // Everything completed before the close is in the data channel: take it first.
                    while let Ok(m) = data_rx.try_recv() {
                        handle(&mut file, &mut written, &mut err, m);
                    }
                    let r = match (file.take().map(|mut f| f.flush()), err.take()) {
                        (_, Some(e)) | (Some(Err(e)), None) => Err(e),
                        _ => Ok(written),
                    };
                    let _ = ack.send(r);
                }
                Err(_) => return,
            },
        }
    }
}

pub struct MsptiBackend {
    strict: bool,
    ctl: Sender<Control>,
    enabled: Vec<u32>,
    before: [u64; 9],
    host_only_reason: Option<String>,
    warned_preload: bool,
}

fn sym<T: Copy>(l: &libloading::Library, name: &[u8]) -> std::result::Result<T, String> {
    // SAFETY: the symbol is used with the signature of ascend-api.md §3.3.
    unsafe { l.get::<T>(name) }
        .map(|s| *s)
        .map_err(|e| format!("{LIBRARY}: {e}"))
}

impl MsptiBackend {
    /// Opens MSPTI, subscribes and registers the buffer callbacks (once per process).
    pub fn open(strict: bool, cfg: &Config) -> Result<MsptiBackend> {
        let err = |m: String| Error::new(Status::Backend, m);
        if SHARED.get().is_some() {
            return Err(err(
                "MSPTI is already set up by an earlier backend instance".into(),
            ));
        }
        let (lib, how) = super::acl::load::open_library(LIBRARY).map_err(err)?;
        let lib: &'static libloading::Library = Box::leak(Box::new(lib.into()));
        let api = Api {
            subscribe: sym(lib, b"msptiSubscribe\0").map_err(err)?,
            unsubscribe: sym(lib, b"msptiUnsubscribe\0").map_err(err)?,
            register: sym(lib, b"msptiActivityRegisterCallbacks\0").map_err(err)?,
            enable: sym(lib, b"msptiActivityEnable\0").map_err(err)?,
            disable: sym(lib, b"msptiActivityDisable\0").map_err(err)?,
            next: sym(lib, b"msptiActivityGetNextRecord\0").ok(),
            flush_all: sym(lib, b"msptiActivityFlushAll\0").map_err(err)?,
            how,
        };
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: valid out-pointer; no callback function (activity API only).
        let r = unsafe { (api.subscribe)(&mut handle, std::ptr::null(), std::ptr::null_mut()) };
        if r == MSPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED {
            return Err(err(format!(
                "msptiSubscribe returned {r} ({}): another MSPTI subscriber owns this process (torch_npu's \
                 profiler, or another tool); MSPTI allows one",
                result_name(r)
            )));
        }
        if r != MSPTI_SUCCESS {
            return Err(err(format!(
                "msptiSubscribe returned {r} ({})",
                result_name(r)
            )));
        }
        HANDLE.store(handle, Ordering::Release);
        // The pool, allocated once, 8-byte aligned.
        let buf_size = (cfg.mspti_buffer_kb as usize * 1024).max(64 * 1024) & !7;
        let buffers = cfg.mspti_buffers.max(2) as usize;
        let words = buf_size / 8 * buffers;
        let pool: &'static mut [u64] = Box::leak(vec![0u64; words].into_boxed_slice());
        let (free_tx, free_rx) = bounded(buffers);
        for i in 0..buffers {
            let _ = free_tx.try_send(i as u32);
        }
        let (data_tx, data_rx) = bounded(buffers);
        let (ctl_tx, ctl_rx) = bounded(4);
        let sink: &'static mut [u64] = Box::leak(vec![0u64; SINK_SIZE / 8].into_boxed_slice());
        let shared = Shared {
            api,
            base: pool.as_mut_ptr() as *mut u8,
            sink: sink.as_mut_ptr() as *mut u8,
            buf_size,
            buffers,
            free_tx,
            free_rx,
            data_tx,
            counts: Counts::default(),
        };
        let how = shared.api.how.clone();
        if SHARED.set(shared).is_err() {
            return Err(err("MSPTI set up twice".into()));
        }
        let sh = SHARED.get().expect("set above");
        std::thread::Builder::new()
            .name("npuprof-mspti".into())
            .spawn(move || consumer(data_rx, ctl_rx))
            .map_err(|e| {
                Error::new(Status::Internal, format!("cannot start npuprof-mspti: {e}"))
            })?;
        // SAFETY: two `extern "C"` callbacks that never unwind.
        let r = unsafe { (sh.api.register)(on_request, on_complete) };
        if r != MSPTI_SUCCESS {
            return Err(err(format!(
                "msptiActivityRegisterCallbacks returned {r} ({})",
                result_name(r)
            )));
        }
        log::info!(
            "MSPTI backend: {how}, {buffers} buffers of {} KiB",
            buf_size / 1024
        );
        Ok(MsptiBackend {
            strict,
            ctl: ctl_tx,
            enabled: Vec::new(),
            before: [0; 9],
            host_only_reason: None,
            warned_preload: false,
        })
    }

    fn kinds(cfg: &Config) -> Vec<(u32, bool)> {
        // (kind, required): kernels always; API calls unless NPUPROF_MSPTI_API=0; the rest when present or
        // asked for.
        let mut k = vec![(KIND_KERNEL, true)];
        if cfg.mspti_api {
            k.extend([
                (KIND_API, false),
                (KIND_ACL_API, false),
                (KIND_RUNTIME_API, false),
            ]);
        }
        k.extend([
            (KIND_MARKER, false),
            (KIND_HCCL, false),
            (KIND_COMMUNICATION, false),
        ]);
        if cfg.with_profile_memory {
            k.extend([
                (KIND_MEMORY, false),
                (KIND_MEMCPY, false),
                (KIND_MEMSET, false),
            ]);
        }
        k
    }
}

impl Backend for MsptiBackend {
    fn name(&self) -> &'static str {
        "mspti"
    }

    fn start(&mut self, profile: &Profile) -> Result<()> {
        let sh = SHARED
            .get()
            .ok_or_else(|| Error::new(Status::Internal, "MSPTI not set up"))?;
        self.host_only_reason = None;
        if HANDLE.load(Ordering::Acquire).is_null() {
            // Unsubscribed by an earlier npuprof_shutdown: subscribe again (callbacks stay registered).
            let mut h: *mut c_void = std::ptr::null_mut();
            // SAFETY: valid out-pointer, no callback function.
            let r = unsafe { (sh.api.subscribe)(&mut h, std::ptr::null(), std::ptr::null_mut()) };
            if r != MSPTI_SUCCESS {
                let msg = format!("msptiSubscribe returned {r} ({})", result_name(r));
                if self.strict {
                    return Err(Error::new(Status::Backend, msg));
                }
                log::warn!("NPUPROF_BACKEND=auto: no device data for this profile: {msg}");
                self.host_only_reason = Some(msg);
                return Ok(());
            }
            HANDLE.store(h, Ordering::Release);
        }
        let fw = &profile.dirs.framework;
        let f = fw
            .dir
            .create_new(SPOOL, crate::export::layout::FILE_MODE)
            .map_err(|e| Error::io("cannot create the MSPTI spool", &fw.shown(SPOOL), &e))?;
        self.ctl
            .send_timeout(Control::Open(f), Duration::from_secs(5))
            .map_err(|_| {
                Error::new(
                    Status::Internal,
                    "the npuprof-mspti thread is not answering",
                )
            })?;
        self.before = sh.counts.snapshot();
        self.enabled.clear();
        let mut no_preload = Vec::new();
        for (kind, required) in Self::kinds(profile.config) {
            // SAFETY: a kind value of §3.2.
            let r = unsafe { (sh.api.enable)(kind) };
            match r {
                MSPTI_SUCCESS => self.enabled.push(kind),
                MSPTI_ERROR_WITHOUT_LD_PRELOAD => no_preload.push(kind),
                _ if required => {
                    for k in self.enabled.drain(..) {
                        // SAFETY: as above.
                        unsafe { (sh.api.disable)(k) };
                    }
                    let msg = format!(
                        "msptiActivityEnable(KERNEL) returned {r} ({})",
                        result_name(r)
                    );
                    if self.strict {
                        return Err(Error::new(Status::Backend, msg));
                    }
                    log::warn!("NPUPROF_BACKEND=auto: no device data for this profile: {msg}");
                    self.host_only_reason = Some(msg);
                    return Ok(());
                }
                _ => log::debug!("MSPTI kind {kind} not available here ({})", result_name(r)),
            }
        }
        if !no_preload.is_empty() && !self.warned_preload {
            self.warned_preload = true;
            log::warn!(
                "MSPTI records kinds {no_preload:?} (communication/memory) only when libmspti.so is preloaded: \
                 run with LD_PRELOAD=$ASCEND_HOME_PATH/lib64/libmspti.so (plus libnpuprof.so); the other kinds \
                 are recorded"
            );
        }
        log::info!("MSPTI enabled kinds {:?}", self.enabled);
        Ok(())
    }

    /// Runs on the `npuprof-vendor` thread (the vendor calls may block: see `backend::vendor`).
    fn stop(&mut self, profile: &Profile) -> Result<Box<dyn DeviceData>> {
        use super::vendor::calling;
        let sh = SHARED
            .get()
            .ok_or_else(|| Error::new(Status::Internal, "MSPTI not set up"))?;
        calling("msptiActivityDisable");
        for k in self.enabled.drain(..) {
            // SAFETY: a kind we enabled.
            unsafe { (sh.api.disable)(k) };
        }
        calling("msptiActivityFlushAll");
        // Synchronous: every buffer (including the partial one) is completed before it returns.
        // SAFETY: no arguments beyond the ignored flag.
        let r = unsafe { (sh.api.flush_all)(1) };
        calling("");
        if r != MSPTI_SUCCESS {
            log::warn!("msptiActivityFlushAll returned {r} ({})", result_name(r));
        }
        let (ack_tx, ack_rx) = bounded(1);
        // Bounded: a consumer stuck on a blocked disk finishes later, and the export reads the whole records
        // written so far.
        let written = match self
            .ctl
            .send_timeout(Control::Close(ack_tx), Duration::from_secs(2))
        {
            Ok(()) => ack_rx.recv_timeout(Duration::from_secs(5)).ok(),
            Err(_) => None,
        };
        let after = sh.counts.snapshot();
        let mut meta = vec![("libmspti".into(), json::string(sh.api.how.as_bytes()))];
        if let Some(r) = &self.host_only_reason {
            meta.push(("reason".into(), json::string(r.as_bytes())));
        }
        for (i, n) in COUNT_NAMES.iter().enumerate() {
            meta.push((
                format!("mspti_{n}"),
                (after[i] - self.before[i]).to_string(),
            ));
        }
        match &written {
            Some(Ok(n)) => meta.push(("mspti_records_spooled".into(), n.to_string())),
            Some(Err(e)) => {
                meta.push(("spool_error".into(), json::string(e.to_string().as_bytes())))
            }
            None => meta.push((
                "spool_error".into(),
                json::string(b"the npuprof-mspti thread did not finish the spool within 5 s"),
            )),
        }
        Ok(Box::new(MsptiData {
            device: profile.device_id,
            host_only: self.host_only_reason.is_some(),
            meta,
        }))
    }
}

/// Ends the subscription (`npuprof_shutdown`): other tools may subscribe afterwards. Idempotent.
pub fn unsubscribe() {
    let h = HANDLE.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if let (Some(sh), false) = (SHARED.get(), h.is_null()) {
        // SAFETY: the handle msptiSubscribe returned, unsubscribed once (swapped out above).
        let r = unsafe { (sh.api.unsubscribe)(h) };
        if r != MSPTI_SUCCESS {
            log::warn!("msptiUnsubscribe returned {r} ({})", result_name(r));
        }
    }
}

/// The device records' spool in `FRAMEWORK/`, created and read through the profile's directory handle.
const SPOOL: &str = "mspti.spool";

pub struct MsptiData {
    device: u32,
    /// The profile continued without device data (`auto` after a failed MSPTI start).
    host_only: bool,
    meta: Vec<(String, String)>,
}

fn name(id: u32) -> &'static [u8] {
    names::get(id).unwrap_or(b"")
}

/// The compact records of a spool, read in blocks (the file is never in memory twice); a cut record at the
/// end (a spool still being written when the stop gave up waiting) is left out.
fn read_spool(framework: &crate::export::layout::Place) -> Vec<DevRec> {
    use std::io::Read;
    let Ok((mut f, _)) = framework.dir.open_file(SPOOL) else {
        return Vec::new();
    };
    let len = f.metadata().map_or(0, |m| m.len()) as usize;
    let mut recs = Vec::with_capacity(len / REC);
    let mut block = vec![0u8; REC * 16384];
    let mut have = 0;
    loop {
        match f.read(&mut block[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!(
                    "{}: {e}; the records before it are used",
                    framework.shown(SPOOL).display()
                );
                break;
            }
        }
        let whole = have / REC * REC;
        recs.extend(block[..whole].chunks_exact(REC).map(DevRec::from_bytes));
        block.copy_within(whole..have, 0);
        have -= whole;
    }
    recs
}

impl DeviceData for MsptiData {
    fn collect(self: Box<Self>, profile: &Profile) -> Result<DeviceResult> {
        let t0 = std::time::Instant::now();
        let recs = read_spool(&profile.dirs.framework);
        let t_decode = t0.elapsed();
        // Names repeat: each name id is interned once (a global id → symbol table; ids are small and dense).
        let n_ids = names::count() as usize + 1;
        let mut kernels = Kernels::default();
        let mut sym: Vec<Option<Sym>> = vec![None; n_ids];
        let mut intern = |ks: &mut Kernels, id: u64| -> Sym {
            let i = (id as usize).min(n_ids - 1);
            *sym[i].get_or_insert_with(|| ks.strings.intern(name(i as u32)))
        };
        let hccl = kernels.strings.intern(b"HCCL");
        let n_kernels = recs
            .iter()
            .filter(|r| matches!(r.kind, KIND_KERNEL | KIND_HCCL))
            .count();
        kernels.list.reserve_exact(n_kernels);
        for r in &recs {
            if !matches!(r.kind, KIND_KERNEL | KIND_HCCL) {
                continue;
            }
            let name = intern(&mut kernels, r.c >> 32);
            let core = if r.kind == KIND_HCCL {
                // HCCL operations are the communication rows; COMMUNICATION records (their tasks) are lanes
                // only.
                hccl
            } else {
                intern(&mut kernels, r.c & 0xffff_ffff)
            };
            kernels.list.push(Kernel {
                name,
                op_type: name,
                core,
                start_ns: r.start,
                dur_ns: r.end.saturating_sub(r.start),
                wait_ns: 0,
                stream_id: r.a,
                task_id: 0,
                model_id: u32::MAX,
                block_dim: 0,
                cells: String::new(),
            });
        }
        let t_kernels = t0.elapsed();
        if kernels
            .list
            .windows(2)
            .any(|w| w[1].start_ns < w[0].start_ns)
        {
            kernels.list.sort_unstable_by_key(|k| k.start_ns);
        }
        log::debug!(
            "MSPTI spool: read + decode {} ms, kernels {} ms, sort {} ms",
            t_decode.as_millis(),
            (t_kernels - t_decode).as_millis(),
            (t0.elapsed() - t_kernels).as_millis()
        );
        let mut prev_end = 0u64;
        for k in &mut kernels.list {
            // The gap since the previous task ended on the device (0 for the first), as CANN computes it.
            if prev_end != 0 {
                k.wait_ns = k.start_ns.saturating_sub(prev_end);
            }
            prev_end = prev_end.max(k.start_ns + k.dur_ns);
        }
        let mut r = DeviceResult {
            kernels,
            kernel_header: None,
            timeline: Some(Box::new(MsptiLanes {
                recs,
                device: self.device,
            })),
            files: Vec::new(),
            meta: self.meta,
        };
        r.set_status(
            if self.host_only {
                "host-only"
            } else {
                "parsed"
            },
            None,
        );
        Ok(r)
    }
}

struct MsptiLanes {
    recs: Vec<DevRec>,
    device: u32,
}

impl Lanes for MsptiLanes {
    fn write(self: Box<Self>, tw: &mut TraceWriter) -> (LaneStats, Option<String>) {
        let mut st = LaneStats::default();
        let r = write_lanes(&self.recs, self.device, tw, &mut st);
        match r {
            Ok(()) => (st, None),
            Err(e) => (st, Some(e.msg)),
        }
    }
}

/// The device a record belongs to (`None`: host records, or MSPTI's invalid device id).
fn device_of(r: &DevRec) -> Option<u32> {
    let d = match r.kind {
        KIND_KERNEL | KIND_HCCL | KIND_COMMUNICATION => r.b as u32,
        KIND_MEMORY | KIND_MEMCPY | KIND_MEMSET => (r.c >> 32) as u32,
        _ => return None,
    };
    (d != u32::MAX).then_some(d)
}

/// The stream of a device record.
fn stream_of(r: &DevRec) -> u32 {
    match r.kind {
        KIND_MEMCPY | KIND_MEMSET => r.c as u32,
        _ => r.a,
    }
}

const SLOT_COMM: u32 = 3;
const SLOT_MEM: u32 = 4;

fn write_lanes(
    recs: &[DevRec],
    device: u32,
    tw: &mut TraceWriter,
    st: &mut LaneStats,
) -> Result<()> {
    use super::acl::export::{device_pid, SLOT_CANN, SLOT_HARDWARE};
    use std::collections::{BTreeMap, BTreeSet};
    let cann = device_pid(device, SLOT_CANN);
    // Lanes: (device, slot) → streams; host threads of the API calls and markers.
    let mut lanes: BTreeMap<(u32, u32), BTreeSet<u32>> = BTreeMap::new();
    let mut threads = BTreeSet::new();
    for r in recs {
        match r.kind {
            KIND_KERNEL | KIND_MEMCPY | KIND_MEMSET => {
                let d = device_of(r).unwrap_or(device);
                lanes
                    .entry((d, SLOT_HARDWARE))
                    .or_default()
                    .insert(stream_of(r));
            }
            KIND_HCCL | KIND_COMMUNICATION => {
                let d = device_of(r).unwrap_or(device);
                lanes.entry((d, SLOT_COMM)).or_default().insert(r.a);
            }
            KIND_MEMORY => {
                let d = device_of(r).unwrap_or(device);
                lanes.entry((d, SLOT_MEM)).or_default();
            }
            k if is_api(k) => {
                threads.insert(r.a);
            }
            KIND_MARKER => {
                threads.insert(r.b as u32);
            }
            _ => {}
        }
    }
    lanes.entry((device, SLOT_HARDWARE)).or_default();
    for ((d, slot), streams) in &lanes {
        let pid = device_pid(*d, *slot);
        let (name, sort) = match *slot {
            SLOT_HARDWARE => ("Ascend Hardware", 8),
            SLOT_COMM => ("Communication", 9),
            _ => ("NPU MEM", 17),
        };
        tw.process(pid, name, &format!("NPU {d}"), sort)?;
        for s in streams {
            tw.thread(pid, *s, format!("Stream {s}").as_bytes(), *s)?;
        }
    }
    tw.process(cann, "CANN", "CPU", 2)?;
    for t in &threads {
        tw.thread(cann, *t, format!("Thread {t}").as_bytes(), *t)?;
    }
    let mut args = String::new();
    let mut id = String::new();
    let mut fname = String::new();
    // JSON literal of each name id (ids are small and dense), made once for every name in the table.
    let lit: Vec<String> = (0..=names::count())
        .map(|n| json::string(name(n)))
        .collect();
    let empty = String::from("\"\"");
    let name_lit = |n: u32| -> &String { lit.get(n as usize).unwrap_or(&empty) };
    // Correlation ids that have an API (flow start) and a kernel (flow end), sorted for binary search; none
    // without API records.
    let sorted = |kind: fn(u32) -> bool| {
        let mut v: Vec<u64> = recs
            .iter()
            .filter(|r| kind(r.kind) && r.corr != 0)
            .map(|r| r.corr)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let api_corr = sorted(is_api);
    let kernel_corr = if api_corr.is_empty() {
        Vec::new()
    } else {
        sorted(|k| k == KIND_KERNEL)
    };
    // Allocated bytes per device (the NPU MEM counter).
    let mut allocated: HashMap<u32, i128> = HashMap::new();
    // One flow start per correlation id (several API kinds may report the same launch): a flag per entry of
    // `kernel_corr`.
    let mut started = vec![false; kernel_corr.len()];
    // Open marker ranges: id → (thread, start, name id).
    let mut open_markers: HashMap<u64, (u32, u64, u32)> = HashMap::new();
    // A HostToDevice flow end point (`s` on the API slice, `f` on the kernel), paired by correlation id.
    let mut flow = |tw: &mut TraceWriter,
                    st: &mut LaneStats,
                    ph: u8,
                    e: DeviceEvent<'_>,
                    corr: u64|
     -> Result<()> {
        id.clear();
        id.push('"');
        json::push_u64(&mut id, corr);
        id.push('"');
        fname.clear();
        fname.push_str("\"HostToDevice");
        json::push_u64(&mut fname, corr);
        fname.push('"');
        st.events += 1;
        tw.device_event(&DeviceEvent {
            ph,
            name: &fname,
            cat: "\"HostToDevice\"",
            args: "",
            id: &id,
            ..e
        })
    };
    for r in recs {
        let dur = r.end.saturating_sub(r.start);
        let d = device_of(r).unwrap_or(device);
        args.clear();
        let mut e = DeviceEvent {
            ph: b'X',
            pid: device_pid(d, SLOT_HARDWARE),
            tid: stream_of(r),
            ts_ns: r.start,
            dur_ns: dur,
            name: "",
            cat: "",
            args: "",
            id: "",
        };
        match r.kind {
            KIND_KERNEL => {
                let nm = name_lit((r.c >> 32) as u32);
                let ty = name_lit(r.c as u32);
                // The stream is the thread and the device the process: only what the lanes do not say.
                args.push_str("{\"Task Type\":");
                args.push_str(ty);
                args.push_str(",\"correlation_id\":");
                json::push_u64(&mut args, r.corr);
                args.push('}');
                tw.device_event(&DeviceEvent {
                    name: nm,
                    cat: "\"kernel\"",
                    args: &args,
                    ..e
                })?;
                st.events += 1;
                if api_corr.binary_search(&r.corr).is_ok() {
                    flow(tw, st, b'f', e, r.corr)?;
                }
            }
            k if is_api(k) => {
                let nm = name_lit(r.c as u32);
                args.push_str(match k {
                    KIND_ACL_API => "{\"level\":\"acl\"",
                    KIND_NODE_API => "{\"level\":\"node\"",
                    KIND_RUNTIME_API => "{\"level\":\"runtime\"",
                    _ => "{\"level\":\"api\"",
                });
                args.push_str(",\"correlation_id\":");
                json::push_u64(&mut args, r.corr);
                args.push('}');
                e.pid = cann;
                e.tid = r.a;
                tw.device_event(&DeviceEvent {
                    name: nm,
                    cat: "\"api\"",
                    args: &args,
                    ..e
                })?;
                st.events += 1;
                if let Ok(i) = kernel_corr.binary_search(&r.corr) {
                    if !std::mem::replace(&mut started[i], true) {
                        flow(tw, st, b's', e, r.corr)?;
                    }
                }
            }
            KIND_HCCL | KIND_COMMUNICATION => {
                let nm = name_lit((r.c >> 32) as u32);
                args.push_str("{\"group\":");
                args.push_str(name_lit(r.c as u32));
                if r.kind == KIND_HCCL {
                    args.push_str(&format!(",\"bandwidth(GB/s)\":{}", f64::from_bits(r.corr)));
                }
                args.push('}');
                e.pid = device_pid(d, SLOT_COMM);
                tw.device_event(&DeviceEvent {
                    name: nm,
                    cat: "\"communication\"",
                    args: &args,
                    ..e
                })?;
                st.events += 1;
            }
            KIND_MEMCPY | KIND_MEMSET => {
                args.push_str("{\"size(B)\":");
                json::push_u64(&mut args, r.b);
                args.push_str(",\"correlation_id\":");
                json::push_u64(&mut args, r.corr);
                args.push('}');
                let nm = if r.kind == KIND_MEMCPY {
                    "\"MEMCPY\""
                } else {
                    "\"MEMSET\""
                };
                tw.device_event(&DeviceEvent {
                    name: nm,
                    cat: "\"memory\"",
                    args: &args,
                    ..e
                })?;
                st.events += 1;
            }
            KIND_MEMORY => {
                let a = allocated.entry(d).or_default();
                *a += if r.a == 1 {
                    -(r.b as i128)
                } else {
                    r.b as i128
                };
                args.push_str("{\"KB\":");
                json::push_u64(&mut args, ((*a).max(0) / 1024) as u64);
                args.push('}');
                e.ph = b'C';
                e.pid = device_pid(d, SLOT_MEM);
                e.tid = 0;
                tw.device_event(&DeviceEvent {
                    name: "\"NPU MEM allocated\"",
                    args: &args,
                    ..e
                })?;
                st.events += 1;
            }
            KIND_MARKER => {
                // mstx ranges: START opens, END (same id) closes → one slice; instants stay instants.
                let tid = r.b as u32;
                const START: u32 = 1 << 1 | 1 << 4;
                const END: u32 = 1 << 2 | 1 << 5;
                if r.a & START != 0 {
                    open_markers.insert(r.corr, (tid, r.start, (r.c >> 32) as u32));
                    continue;
                }
                let (tid, ts, dur, n) = match (r.a & END != 0, open_markers.remove(&r.corr)) {
                    (true, Some((t, s0, n))) => (t, s0, r.start.saturating_sub(s0), n),
                    (true, None) => {
                        st.skipped += 1;
                        continue;
                    }
                    _ => (tid, r.start, 0, (r.c >> 32) as u32),
                };
                args.push_str("{\"domain\":");
                args.push_str(name_lit(r.c as u32));
                args.push_str(",\"id\":");
                json::push_u64(&mut args, r.corr);
                args.push('}');
                e.ph = if r.a & END != 0 { b'X' } else { b'i' };
                e.pid = cann;
                e.tid = tid;
                e.ts_ns = ts;
                e.dur_ns = dur;
                tw.device_event(&DeviceEvent {
                    name: name_lit(n),
                    cat: "\"marker\"",
                    args: &args,
                    ..e
                })?;
                st.events += 1;
            }
            _ => st.skipped += 1,
        }
    }
    st.skipped += open_markers.len() as u64;
    Ok(())
}

fn is_api(kind: u32) -> bool {
    matches!(
        kind,
        KIND_API | KIND_ACL_API | KIND_NODE_API | KIND_RUNTIME_API
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put<T: Copy>(buf: &mut Vec<u8>, rec: T) {
        let n = std::mem::size_of::<T>();
        let at = buf.len();
        buf.resize(at + n, 0);
        // SAFETY: `rec` is a packed plain-data record of `n` bytes, written into the `n` bytes just added.
        unsafe { std::ptr::write_unaligned(buf[at..].as_mut_ptr() as *mut T, rec) };
    }

    /// The walker (the path without msptiActivityGetNextRecord) compacts kept records in place, skips external
    /// correlations, and stops at an unknown kind or a record that runs past the valid bytes, counting it.
    #[test]
    fn walk_compacts_in_place_and_counts_what_it_cannot_read() {
        let name = c"MatMul_1";
        let kernel = |corr: u64| records::Kernel {
            kind: KIND_KERNEL,
            start: 100 * corr,
            end: 100 * corr + 40,
            device_id: 1,
            stream_id: 7,
            correlation_id: corr,
            type_: c"AI_CORE".as_ptr(),
            name: name.as_ptr(),
            _pad: [0; 4],
        };
        let mut buf = Vec::new();
        put(&mut buf, kernel(1));
        put(
            &mut buf,
            ExternalCorrelation {
                kind: KIND_EXTERNAL_CORRELATION,
                external_kind: 2,
                external_id: 9,
                correlation_id: 1,
            },
        );
        put(
            &mut buf,
            records::Api {
                kind: KIND_ACL_API,
                start: 90,
                end: 95,
                process_id: 1,
                thread_id: 2,
                correlation_id: 2,
                name: c"aclnnMatmul".as_ptr(),
                _pad: [0; 4],
            },
        );
        put(&mut buf, kernel(3));
        let valid = buf.len();
        put(&mut buf, 77u32); // unknown kind after the valid bytes: never read
        let counts = Counts::default();
        let n = walk(None, &counts, &mut buf, valid);
        assert_eq!(n, 3);
        let recs: Vec<DevRec> = buf[..3 * REC]
            .chunks_exact(REC)
            .map(DevRec::from_bytes)
            .collect();
        assert_eq!(recs[0].kind, KIND_KERNEL);
        assert_eq!(
            (recs[0].a, recs[0].b, recs[0].corr, recs[0].start),
            (7, 1, 1, 100)
        );
        assert_eq!(names::get((recs[0].c >> 32) as u32), Some(&b"MatMul_1"[..]));
        assert_eq!(names::get(recs[0].c as u32), Some(&b"AI_CORE"[..]));
        assert_eq!(
            (recs[1].kind, recs[1].a, recs[1].corr),
            (KIND_ACL_API, 2, 2)
        );
        assert_eq!((recs[2].kind, recs[2].corr), (KIND_KERNEL, 3));
        assert_eq!(counts.unknown_records.load(Ordering::Relaxed), 0);

        // An unknown kind stops the walk (its size is unknown) and is counted; a record cut by the valid end
        // too.
        let mut bad = Vec::new();
        put(&mut bad, kernel(1));
        put(&mut bad, 77u32);
        put(&mut bad, [0u8; 60]);
        let counts = Counts::default();
        assert_eq!(walk(None, &counts, &mut bad, 56 + 64), 1);
        assert_eq!(counts.unknown_records.load(Ordering::Relaxed), 1);
        let mut cut = Vec::new();
        put(&mut cut, kernel(1));
        let counts = Counts::default();
        assert_eq!(walk(None, &counts, &mut cut, 50), 0);
        assert_eq!(counts.unknown_records.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn compact_records_round_trip() {
        let r = DevRec {
            kind: 2,
            a: 7,
            start: 1,
            end: u64::MAX,
            corr: 42,
            b: 3,
            c: 0xdead_beef_0000_0001,
        };
        assert_eq!(DevRec::from_bytes(&r.to_bytes()), r);
    }
}
