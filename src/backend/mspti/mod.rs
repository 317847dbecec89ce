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

//! * Misbehaving libraries (issue 15): every pool buffer has one owner (`pool`), so a buffer completed twice
//!   or never handed out is ignored and counted; names are read fault-safely with a cap (`vendor_str`); an
//!   unknown kind mid-buffer loses only that record (`walk`); times outside the profile are left out and
//!   counted (`export`); a failed callback registration releases the subscription, and the next start tries
//!   again; kinds MSPTI refuses are listed in the metadata (`mspti_kinds_unavailable`); records MSPTI completes
//!   late are attributed by time and the ones of a closed profile counted (`consumer`); a forked child's
//!   callbacks leave the parent's state alone, and never wait for the name table during a fork (`callbacks`,
//!   `vendor_str`).

mod callbacks;
mod collectives;
mod consumer;
mod corr;
mod counts;
mod device_info;
mod export;
mod host_records;
mod lanes;
pub(crate) mod names_file;
mod op_type;
mod pool;
pub mod records;
mod replay;
mod vendor_str;
pub(crate) mod walk;
mod window;

pub use export::{MsptiData, SPOOL};
pub use walk::{compact, DevRec};

use super::vendor::VendorCall;
use super::Backend;
use crate::config::Config;
use crate::device::DeviceData;
use crate::error::{Error, Result, Status};
use crate::format::json;
use crate::profile::{BackendId, Profile};
use counts::{Count, Counts};
use crossbeam_channel::{bounded, Sender};
use pool::Pool;
use records::*;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
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
pub type NextFn = unsafe extern "C" fn(*mut u8, usize, *mut *mut u32) -> u32;
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

/// Bytes of the sink buffer handed out when the pool is empty.
const SINK_SIZE: usize = 256 * 1024;

/// What the callbacks need (they get no user data from MSPTI).
struct Shared {
    api: Api,
    pool: Pool,
    sink: *mut u8,
    data_tx: Sender<(u32, u32)>,
    ctl_tx: Sender<Control>,
    counts: Counts,
    /// `msptiActivityRegisterCallbacks` succeeded; until then each backend open tries again.
    registered: AtomicBool,
    /// The process this state belongs to: its fork generation and pid (see [`Shared::forked_away`]).
    fork_gen: u64,
    pid: libc::pid_t,
}

impl Shared {
    /// This is a forked child of the process that set MSPTI up: the pool, channels and `npuprof-mspti` thread
    /// are the parent's (a parent thread may have held a channel lock at the fork), so the callbacks must not
    /// touch them. The fork generation changes in our child handler; until it has run (a vendor child
    /// handler runs first), a fork is in progress and the pid tells.
    fn forked_away(&self) -> bool {
        crate::process::fork_gen() != self.fork_gen
            || (crate::process::forking() && getpid() != self.pid)
    }
}

fn getpid() -> libc::pid_t {
    // SAFETY: no preconditions.
    unsafe { libc::getpid() }
}
// SAFETY: `sink` points at a leaked buffer MSPTI may write at any time and npuprof never reads; the pool
// decides who may touch each of its buffers.
unsafe impl Sync for Shared {}
// SAFETY: as above.
unsafe impl Send for Shared {}

static SHARED: OnceLock<Shared> = OnceLock::new();
/// The subscriber handle, for `msptiUnsubscribe` at shutdown.
static HANDLE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

enum Control {
    /// A profile's `mspti.spool`, its `mspti.names` when it could be created, what they may hold, and the
    /// profile's start (CLOCK_REALTIME ns).
    Open(std::fs::File, Option<std::fs::File>, SpoolCap, u64),
    Close(Sender<consumer::Closed>),
}

/// What the `npuprof-mspti` thread wrote into a profile's spool and names file.
#[derive(Clone, Copy, Debug, Default)]
struct Spooled {
    records: u64,
    /// Records left out at the spool's cap ([`spool_cap`]).
    over_cap: u64,
    /// Bytes written (or tried) to `mspti.names`.
    names_bytes: u64,
    /// Names not written to `mspti.names` for want of room under the cap (only `npuprof recover` misses them).
    names_over_cap: u64,
}

impl Spooled {
    /// Bytes of the profile's MSPTI files.
    fn bytes(&self) -> u64 {
        self.records * REC as u64 + self.names_bytes
    }
}

/// The most a profile's MSPTI files (`mspti.spool` and `mspti.names`) hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolCap {
    /// Records in `mspti.spool`: no more than `NPUPROF_MAX_DEVICE_RECORDS` (the export keeps no more).
    pub records: u64,
    /// Bytes of both files together: a quarter of `NPUPROF_MAX_DISK_MB` (the host spool has an eighth, the
    /// trace and the CSVs the rest; see `export::budget`).
    pub bytes: u64,
}

/// The caps of a profile's MSPTI files under `cfg`.
pub fn spool_cap(cfg: &crate::config::Config) -> SpoolCap {
    let bytes = cfg.max_disk_bytes() / 4;
    SpoolCap {
        records: (bytes / REC as u64).min(cfg.max_device_records),
        bytes,
    }
}

pub struct MsptiBackend {
    strict: bool,
    ctl: Sender<Control>,
    enabled: Vec<u32>,
    /// Kinds MSPTI refused to enable in this profile, with its answer.
    unavailable: Vec<(u32, u32)>,
    before: [u64; counts::N],
    host_only_reason: Option<String>,
    warned_preload: bool,
    /// CLOCK_REALTIME ns at this profile's start.
    started_ns: u64,
}

fn sym<T: Copy>(l: &libloading::Library, name: &[u8]) -> std::result::Result<T, String> {
    // SAFETY: the symbol is used with the signature of ascend-api.md §3.3.
    unsafe { l.get::<T>(name) }
        .map(|s| *s)
        .map_err(|e| format!("{LIBRARY}: {e}"))
}

/// `msptiSubscribe` unless subscribed already.
fn subscribe(api: &Api) -> std::result::Result<(), String> {
    if !HANDLE.load(Ordering::Acquire).is_null() {
        return Ok(());
    }
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: valid out-pointer; no callback function (activity API only).
    let r = unsafe { (api.subscribe)(&mut handle, std::ptr::null(), std::ptr::null_mut()) };
    if r == MSPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED {
        return Err(format!(
            "msptiSubscribe returned {r} ({}): another MSPTI subscriber owns this process (torch_npu's \
             profiler, or another tool); MSPTI allows one",
            result_name(r)
        ));
    }
    if r != MSPTI_SUCCESS {
        return Err(format!("msptiSubscribe returned {r} ({})", result_name(r)));
    }
    HANDLE.store(handle, Ordering::Release);
    Ok(())
}

/// CLOCK_REALTIME in ns (MSPTI's time scale, ascend-api.md §3.7).
fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl MsptiBackend {
    /// Opens MSPTI, subscribes and registers the buffer callbacks (once per process; an earlier open whose
    /// registration failed is retried).
    pub fn open(strict: bool, cfg: &Config) -> Result<MsptiBackend> {
        let err = |m: String| Error::new(Status::Backend, m);
        let sh = match SHARED.get() {
            Some(sh) if sh.registered.load(Ordering::Acquire) => {
                return Err(err(
                    "MSPTI is already set up by an earlier backend instance".into(),
                ));
            }
            Some(sh) => {
                subscribe(&sh.api).map_err(err)?;
                sh
            }
            None => Self::set_up(cfg)?,
        };
        // SAFETY: two `extern "C"` callbacks that never unwind.
        let r = unsafe { (sh.api.register)(callbacks::on_request, callbacks::on_complete) };
        if r != MSPTI_SUCCESS {
            // Release the subscription at once (torch_npu's profiler may want it); the next start tries again.
            unsubscribe();
            return Err(err(format!(
                "msptiActivityRegisterCallbacks returned {r} ({}); the MSPTI subscription was released",
                result_name(r)
            )));
        }
        sh.registered.store(true, Ordering::Release);
        log::info!(
            "MSPTI backend: {}, {} buffers of {} KiB",
            sh.api.how,
            sh.pool.buffers,
            sh.pool.buf_size / 1024
        );
        Ok(MsptiBackend {
            strict,
            ctl: sh.ctl_tx.clone(),
            enabled: Vec::new(),
            unavailable: Vec::new(),
            before: [0; counts::N],
            host_only_reason: None,
            warned_preload: false,
            started_ns: 0,
        })
    }

    /// The first open: the library, the subscription, the pool and the `npuprof-mspti` thread.
    fn set_up(cfg: &Config) -> Result<&'static Shared> {
        let err = |m: String| Error::new(Status::Backend, m);
        let (lib, how) = super::cann_lib::open_library(LIBRARY).map_err(err)?;
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
        subscribe(&api).map_err(err)?;
        vendor_str::init();
        // The pool, allocated once, 8-byte aligned.
        let buf_size = (cfg.mspti_buffer_kb as usize * 1024).max(64 * 1024) & !7;
        let buffers = cfg.mspti_buffers.max(2) as usize;
        let (data_tx, data_rx) = bounded(buffers);
        let (ctl_tx, ctl_rx) = bounded(4);
        let sink: &'static mut [u64] = Box::leak(vec![0u64; SINK_SIZE / 8].into_boxed_slice());
        let shared = Shared {
            api,
            pool: Pool::new(buf_size, buffers),
            sink: sink.as_mut_ptr() as *mut u8,
            data_tx,
            ctl_tx,
            counts: Counts::default(),
            registered: AtomicBool::new(false),
            fork_gen: crate::process::fork_gen(),
            pid: getpid(),
        };
        if SHARED.set(shared).is_err() {
            return Err(err("MSPTI set up twice".into()));
        }
        let sh = SHARED.get().expect("set above");
        std::thread::Builder::new()
            .name("npuprof-mspti".into())
            .spawn(move || consumer::consumer(data_rx, ctl_rx))
            .map_err(|e| {
                unsubscribe();
                Error::new(Status::Internal, format!("cannot start npuprof-mspti: {e}"))
            })?;
        Ok(sh)
    }

    /// `{"HCCL":"MSPTI_ERROR_WITHOUT_LD_PRELOAD",...}`: the kinds MSPTI refused in this profile.
    fn unavailable_json(&self) -> String {
        let mut o = String::from("{");
        for (i, (k, r)) in self.unavailable.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str(&json::string(kind_name(*k).as_bytes()));
            o.push(':');
            o.push_str(&json::string(result_name(*r).as_bytes()));
        }
        o.push('}');
        o
    }

    fn kinds(cfg: &Config) -> Vec<(u32, bool)> {
        // (kind, required): kernels always; API calls unless NPUPROF_MSPTI_API=0; the rest when present or
        // asked for.
        let mut k = vec![(KIND_KERNEL, true)];
        if cfg.mspti_api {
            k.extend([
                (KIND_API, false),
                (KIND_ACL_API, false),
                // The node launches: a collective's communication record names its node launch's
                // correlation id (MSPTI's CommunicationCalculator), the database's CANN_API row for it.
                (KIND_NODE_API, false),
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
    /// Disables the kinds we enabled and flushes every buffer (including the partial one: synchronous, all
    /// are completed before it returns).
    fn disable_and_flush(&mut self, sh: &Shared, call: &VendorCall) {
        call.enter("msptiActivityDisable");
        for k in self.enabled.drain(..) {
            // SAFETY: a kind we enabled.
            unsafe { (sh.api.disable)(k) };
        }
        call.enter("msptiActivityFlushAll");
        // SAFETY: no arguments beyond the ignored flag.
        let r = unsafe { (sh.api.flush_all)(1) };
        call.enter("");
        if r != MSPTI_SUCCESS {
            log::warn!("msptiActivityFlushAll returned {r} ({})", result_name(r));
        }
    }

    /// Asks the `npuprof-mspti` thread to close the profile's spool. Bounded: a consumer stuck on a blocked
    /// disk finishes later, and the export reads the whole records written so far (`None`: no answer).
    fn close_spool(&self) -> Option<consumer::Closed> {
        let (ack_tx, ack_rx) = bounded(1);
        match self
            .ctl
            .send_timeout(Control::Close(ack_tx), Duration::from_secs(2))
        {
            Ok(()) => ack_rx.recv_timeout(Duration::from_secs(5)).ok(),
            Err(_) => None,
        }
    }

    /// The device metadata's first entries: the library, the host-only reason, MSPTI's counts during the
    /// profile and the kinds it could not enable.
    fn counts_meta(&self, sh: &Shared) -> Vec<(String, String)> {
        let after = sh.counts.snapshot();
        let mut meta = vec![("libmspti".into(), json::string(sh.api.how.as_bytes()))];
        if let Some(r) = &self.host_only_reason {
            meta.push(("reason".into(), json::string(r.as_bytes())));
        }
        for (i, c) in Count::ALL.iter().enumerate() {
            meta.push((
                format!("mspti_{}", c.name()),
                after[i].wrapping_sub(self.before[i]).to_string(),
            ));
        }
        meta.push(("mspti_kinds_unavailable".into(), self.unavailable_json()));
        meta
    }
}

/// Records MSPTI completed late (timestamped before this profile, or arrived between profiles): counted and
/// left out.
fn note_late_records(meta: &mut Vec<(String, String)>, c: &consumer::Closed) {
    meta.push((
        "mspti_records_from_before_profile".into(),
        c.before_profile.to_string(),
    ));
    meta.push((
        "mspti_records_completed_between_profiles".into(),
        c.between_profiles.to_string(),
    ));
    if c.before_profile + c.between_profiles > 0 {
        log::warn!(
            "MSPTI completed {} records late (timestamped before this profile: {}, arrived between \
             profiles: {}); they belong to a profile already closed and are left out",
            c.before_profile + c.between_profiles,
            c.before_profile,
            c.between_profiles
        );
    }
}

/// What the spool holds (and what its cap left out), or why it is incomplete (`None`: the consumer did not
/// answer).
fn note_spooled(
    meta: &mut Vec<(String, String)>,
    spooled: Option<&std::io::Result<Spooled>>,
    profile: &Profile,
) {
    match spooled {
        Some(Ok(n)) => {
            meta.push(("mspti_records_spooled".into(), n.records.to_string()));
            meta.push(("mspti_records_over_cap".into(), n.over_cap.to_string()));
            meta.push(("mspti_names_over_cap".into(), n.names_over_cap.to_string()));
            let cap = spool_cap(profile.config);
            if n.over_cap > 0 {
                log::warn!(
                    "MSPTI: {} records beyond the spool's cap ({} records, {} bytes with mspti.names: a quarter \
                     of NPUPROF_MAX_DISK_MB, at most NPUPROF_MAX_DEVICE_RECORDS records) left out",
                    n.over_cap,
                    cap.records,
                    cap.bytes
                );
            }
            if n.names_over_cap > 0 {
                log::warn!(
                    "MSPTI: {} names not written to mspti.names (over its share of NPUPROF_MAX_DISK_MB): a \
                     recovered profile shows those kernels without names",
                    n.names_over_cap
                );
            }
        }
        Some(Err(e)) => meta.push(("spool_error".into(), json::string(e.to_string().as_bytes()))),
        None => meta.push((
            "spool_error".into(),
            json::string(b"the npuprof-mspti thread did not finish the spool within 5 s"),
        )),
    }
}

impl Backend for MsptiBackend {
    fn id(&self) -> BackendId {
        BackendId::Mspti
    }

    fn start(&mut self, profile: &Profile) -> Result<()> {
        let sh = SHARED
            .get()
            .ok_or_else(|| Error::new(Status::Internal, "MSPTI not set up"))?;
        self.host_only_reason = None;
        // Unsubscribed by an earlier npuprof_shutdown: subscribe again (callbacks stay registered).
        if let Err(msg) = subscribe(&sh.api) {
            if self.strict {
                return Err(Error::new(Status::Backend, msg));
            }
            log::warn!("NPUPROF_BACKEND=auto: no device data for this profile: {msg}");
            self.host_only_reason = Some(msg);
            return Ok(());
        }
        self.started_ns = profile.anchor.1;
        let fw = &profile.dirs.framework;
        let f = fw
            .dir
            .create_new(SPOOL, crate::layout::FILE_MODE)
            .map_err(|e| Error::io("cannot create the MSPTI spool", &fw.shown(SPOOL), &e))?;
        // The names the records use, for `npuprof recover` (without it a recovered spool has no names).
        let names = fw
            .dir
            .create_new(names_file::NAMES, crate::layout::FILE_MODE)
            .map_err(|e| log::debug!("{}: {e}", fw.shown(names_file::NAMES).display()))
            .ok();
        self.ctl
            .send_timeout(
                Control::Open(f, names, spool_cap(profile.config), self.started_ns),
                Duration::from_secs(5),
            )
            .map_err(|_| {
                Error::new(
                    Status::Internal,
                    "the npuprof-mspti thread is not answering",
                )
            })?;
        self.before = sh.counts.snapshot();
        self.enabled.clear();
        self.unavailable.clear();
        let mut no_preload = Vec::new();
        for (kind, required) in Self::kinds(profile.config) {
            // SAFETY: a kind value of §3.2.
            let r = unsafe { (sh.api.enable)(kind) };
            match r {
                MSPTI_SUCCESS => self.enabled.push(kind),
                MSPTI_ERROR_WITHOUT_LD_PRELOAD => {
                    no_preload.push(kind);
                    self.unavailable.push((kind, r));
                }
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
                _ => {
                    log::debug!("MSPTI kind {kind} not available here ({})", result_name(r));
                    self.unavailable.push((kind, r));
                }
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
    fn stop(&mut self, profile: &Profile, call: &VendorCall) -> Result<Box<dyn DeviceData>> {
        let sh = SHARED
            .get()
            .ok_or_else(|| Error::new(Status::Internal, "MSPTI not set up"))?;
        self.disable_and_flush(sh, call);
        let written = self.close_spool();
        let mut meta = self.counts_meta(sh);
        if let Some(c) = &written {
            note_late_records(&mut meta, c);
        }
        note_spooled(&mut meta, written.as_ref().map(|c| &c.spooled), profile);
        Ok(Box::new(MsptiData {
            device: profile.device_id,
            host_only: self.host_only_reason.is_some(),
            meta,
            window: (self.started_ns, realtime_ns()),
            names: names_file::NameSource::Process,
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
