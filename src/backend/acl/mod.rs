//! The aclprof backend: drives CANN's profiling C API (`acl/acl_prof.h`) around each profile, as torch_npu
//! does, then (on the export thread) runs `msprof --export=on` on the `PROF_*` directory CANN wrote and turns
//! its CSV/JSON into the worker result ([`export`]).
//!
//! Per profile, on the caller's thread: `aclprofInit(worker dir)` → feature list → `aclprofSetConfig`* →
//! `aclprofCreateConfig(device, bits)` → `aclprofStart`; at stop `aclprofStop` (same config) →
//! `aclprofDestroyConfig` → `aclprofFinalize`, so the raw data is complete at once. Every failure undoes what
//! succeeded before it: CANN is never left initialised or running by npuprof.
//!
//! CANN generations disagree on misuse (ascend-api.md §2.8): npuprof only ever issues the documented order,
//! so both behave the same for it; where they differ on *accepted bits*, a start rejected with
//! `ACL_ERROR_PROF_MODULES_UNSUPPORTED` is retried once with the portable bit set.

pub mod export;
pub mod features;
mod host_records;
mod launches;
pub(crate) mod load;
mod msprof;
mod op_summary;
mod outputs;
pub(crate) mod plan;
pub(crate) mod sys;
mod time_base;
mod timeline;

use super::vendor::VendorCall;
use super::{Backend, StepHook};
use crate::config::Config;
use crate::device::DeviceData;
use crate::error::{Error, Result, Status};
use crate::format::json;
use crate::profile::{BackendId, Profile};
use crate::record::clock;
use load::Api;
use plan::{Features, Plan};
use std::ffi::{c_void, CString};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU32, Ordering};

/// The name of an aclprof return code (`ACL_ERROR_*`), from the generated bindings.
pub fn code_name(rc: i32) -> &'static str {
    match rc {
        sys::ACL_SUCCESS => "ACL_SUCCESS",
        sys::ACL_ERROR_INVALID_PARAM => "ACL_ERROR_INVALID_PARAM",
        sys::ACL_ERROR_UNINITIALIZE => "ACL_ERROR_UNINITIALIZE",
        sys::ACL_ERROR_REPEAT_INITIALIZE => "ACL_ERROR_REPEAT_INITIALIZE",
        sys::ACL_ERROR_INVALID_FILE => "ACL_ERROR_INVALID_FILE",
        sys::ACL_ERROR_INVALID_PROFILING_CONFIG => "ACL_ERROR_INVALID_PROFILING_CONFIG",
        sys::ACL_ERROR_REPEAT_FINALIZE => "ACL_ERROR_REPEAT_FINALIZE",
        sys::ACL_ERROR_PROF_ALREADY_RUN => "ACL_ERROR_PROF_ALREADY_RUN",
        sys::ACL_ERROR_PROF_NOT_RUN => "ACL_ERROR_PROF_NOT_RUN",
        sys::ACL_ERROR_PROF_REPEAT_SUBSCRIBE => "ACL_ERROR_PROF_REPEAT_SUBSCRIBE",
        sys::ACL_ERROR_PROF_API_CONFLICT => "ACL_ERROR_PROF_API_CONFLICT",
        sys::ACL_ERROR_API_NOT_SUPPORT => "ACL_ERROR_API_NOT_SUPPORT",
        sys::ACL_ERROR_INVALID_DEVICE => "ACL_ERROR_INVALID_DEVICE",
        sys::ACL_ERROR_FEATURE_UNSUPPORTED => "ACL_ERROR_FEATURE_UNSUPPORTED",
        sys::ACL_ERROR_PROF_MODULES_UNSUPPORTED => "ACL_ERROR_PROF_MODULES_UNSUPPORTED",
        sys::ACL_ERROR_STORAGE_OVER_LIMIT => "ACL_ERROR_STORAGE_OVER_LIMIT",
        sys::ACL_ERROR_INTERNAL_ERROR => "ACL_ERROR_INTERNAL_ERROR",
        sys::ACL_ERROR_FAILURE => "ACL_ERROR_FAILURE",
        sys::ACL_ERROR_PROFILING_FAILURE => "ACL_ERROR_PROFILING_FAILURE",
        507021 => "ACL_ERROR_RT_PROFILING_ERROR",
        107002 => "ACL_ERROR_RT_CONTEXT_NULL",
        -1 => "PROFILING_FAILED",
        _ => "unknown aclError",
    }
}

/// What a failing code means for the call that returned it (ascend-api.md §2.7/§2.8).
fn hint(call: &str, rc: i32) -> &'static str {
    match (call, rc) {
        ("aclprofInit", sys::ACL_ERROR_REPEAT_INITIALIZE) => {
            "aclprof is already initialised in this process: another profiler (torch_npu.profiler, \
             MindSpore's profiler) owns the CANN session; stop it or use NPUPROF_BACKEND=host"
        }
        (_, sys::ACL_ERROR_PROF_ALREADY_RUN) => {
            "the process is already profiled by the msprof command line, acl.json or a GE option \
             (or the device is profiled by another session)"
        }
        ("aclprofInit", sys::ACL_ERROR_PROF_API_CONFLICT) => {
            "the process uses aclprof model subscription (aclprofModelSubscribe), which excludes API profiling"
        }
        (_, sys::ACL_ERROR_FEATURE_UNSUPPORTED) => {
            "CANN refuses API profiling here (PROFILING_MODE=dynamic is set, or a helper-host platform)"
        }
        (_, sys::ACL_ERROR_INVALID_FILE) => "CANN cannot use the result directory",
        (_, sys::ACL_ERROR_PROF_MODULES_UNSUPPORTED) => {
            "this CANN does not support some requested data types"
        }
        (_, sys::ACL_ERROR_INVALID_DEVICE) => "the device is not online",
        (_, sys::ACL_ERROR_PROF_NOT_RUN) => "CANN says profiling is not initialised or not running",
        (_, sys::ACL_ERROR_INVALID_PROFILING_CONFIG) => {
            "CANN rejected the profiling configuration (a profile with other settings is running?)"
        }
        (_, sys::ACL_ERROR_INVALID_PARAM) => "CANN rejected an argument",
        (_, sys::ACL_ERROR_STORAGE_OVER_LIMIT) => "CANN's storage limit is reached",
        _ => "see the CANN log (ASCEND_GLOBAL_LOG_LEVEL=1)",
    }
}

fn fail(call: &str, rc: i32) -> String {
    format!(
        "{call} returned {rc} ({}): {}",
        code_name(rc),
        hint(call, rc)
    )
}

/// The step hook of a profile with `ACL_PROF_MSPROFTX` (see [`Backend::step_hook`]).
static MARK_STEP: StepHook = StepHook(mark_step);

/// The stamp API while a profile with `ACL_PROF_MSPROFTX` runs (null otherwise); see [`mark_step`].
static TX: AtomicPtr<Api> = AtomicPtr::new(std::ptr::null_mut());
/// `mark_step` calls between their check of TX and their last stamp call: the stop waits for them, so no
/// stamp call overlaps `aclprofStop`/`aclprofFinalize`.
static TX_INFLIGHT: AtomicU32 = AtomicU32::new(0);

/// With `NPUPROF_MSPROFTX=1`: marks step `k` in CANN's msproftx data too (`ProfilerStep#k`). Only steps are
/// forwarded: each aclprof stamp call takes CANN's global profiling mutex and allocates, which the
/// range/mark record path must never do; a step happens once per scheduler iteration. Reached through the
/// session's step hook ([`Backend::step_hook`]); TX, not the hook, is what [`stop_stamps`] synchronises with.
fn mark_step(k: u64) {
    if TX.load(Ordering::Relaxed).is_null() {
        return;
    }
    // SeqCst on both sides (here and in `stop_session`): either the stop sees this increment, or this load
    // sees the stop's null (the store → load order a Dekker handshake needs).
    TX_INFLIGHT.fetch_add(1, Ordering::SeqCst);
    let p = TX.load(Ordering::SeqCst);
    if !p.is_null() {
        // SAFETY: TX only ever holds a leaked `&'static Api`.
        stamp(unsafe { &*p }, k);
    }
    TX_INFLIGHT.fetch_sub(1, Ordering::SeqCst);
}

fn stamp(api: &Api, k: u64) {
    let (Some(create), Some(msg), Some(mark), Some(destroy)) = (
        api.create_stamp,
        api.set_stamp_message,
        api.mark,
        api.destroy_stamp,
    ) else {
        return;
    };
    let text = CString::new(format!("ProfilerStep#{k}")).unwrap_or_default();
    // SAFETY: the documented stamp protocol (create → set message → mark → destroy); the message is a
    // NUL-terminated buffer whose length is passed without the NUL; a NULL stamp is never used.
    unsafe {
        let s = create();
        if s.is_null() {
            return;
        }
        if msg(s, text.as_ptr(), text.as_bytes().len() as u32) == 0 {
            let _ = mark(s);
        }
        destroy(s);
    }
}

/// Stops stamp forwarding and waits (at most ~100 ms) for a `mark_step` already inside the stamp API.
fn stop_stamps() {
    TX.store(std::ptr::null_mut(), Ordering::SeqCst);
    let t0 = std::time::Instant::now();
    while TX_INFLIGHT.load(Ordering::SeqCst) != 0
        && t0.elapsed() < std::time::Duration::from_millis(100)
    {
        std::thread::yield_now();
    }
}

/// In a forked child: the parent's stamp API state is not this process's session.
pub fn after_fork_child() {
    TX.store(std::ptr::null_mut(), Ordering::Relaxed);
    TX_INFLIGHT.store(0, Ordering::Relaxed);
    // A child may set a device of its own: the parent's is not evidence of it.
    RUNTIME_DEVICE.store(-1, Ordering::Relaxed);
}

/// A created `aclprofConfig` (owned by CANN; only passed back to it).
struct ConfigPtr(*mut sys::aclprofConfig);
// SAFETY: an opaque handle CANN allows any thread to pass back (torch_npu stops from another thread);
// npuprof uses it only under the session mutex.
unsafe impl Send for ConfigPtr {}

/// `aclprofSetConfig` for each of the plan's settings; one that is missing or fails becomes a note.
fn set_config(api: &Api, plan: &Plan, notes: &mut Vec<String>) {
    for (ty, name, value) in &plan.set_config {
        let Some(set) = api.set_config else {
            notes.push(format!(
                "{name}={value} not set: aclprofSetConfig is missing (libmsprofiler.so not found)"
            ));
            continue;
        };
        let v = CString::new(value.as_str()).unwrap_or_default();
        // SAFETY: NUL-terminated value, length = strlen.
        let rc = unsafe { set(*ty, v.as_ptr(), v.as_bytes().len()) };
        if rc != 0 {
            notes.push(format!("{name}={value}: {}", fail("aclprofSetConfig", rc)));
        }
    }
}

/// Undoes a start's successful `aclprofInit` after a later step failed (a failure is logged).
fn finalize(api: &Api) {
    // SAFETY: undoes our successful aclprofInit.
    let rc = unsafe { (api.finalize)() };
    if rc != 0 {
        log::warn!("{}", fail("aclprofFinalize", rc));
    }
}

/// Destroys a config a start created and no longer uses (a failure is logged).
fn destroy(api: &Api, c: &ConfigPtr) {
    // SAFETY: a config we created and no longer use.
    let rc = unsafe { (api.destroy_config)(c.0) };
    if rc != 0 {
        log::warn!("{}", fail("aclprofDestroyConfig", rc));
    }
}

struct Running {
    config: ConfigPtr,
    plan: Plan,
    /// Bits passed to the CreateConfig that started (after a portable-set retry, if any).
    bits: u64,
    device: u32,
    device_source: &'static str,
    features: Features,
    /// (CLOCK_REALTIME ns, CLOCK_MONOTONIC_RAW ns) read together at start: maps CANN's clock onto ours.
    clocks: (u64, u64),
    notes: Vec<String>,
}

pub struct AclBackend {
    api: &'static Api,
    /// `NPUPROF_BACKEND=acl`: a failing start is an error. `auto`: the profile continues host-only.
    strict: bool,
    running: Option<Running>,
    device_source: &'static str,
    /// Set when an `auto` profile continues host-only; reported in its metadata.
    host_only_reason: Option<String>,
}

impl AclBackend {
    pub fn open(strict: bool) -> Result<AclBackend> {
        let api = load::load().map_err(|m| Error::new(Status::Backend, m))?;
        log::info!(
            "aclprof backend: {}{}",
            api.ascendcl,
            api.msprofiler
                .as_deref()
                .map_or(String::new(), |m| format!(", {m}"))
        );
        Ok(AclBackend {
            api,
            strict,
            running: None,
            device_source: "",
            host_only_reason: None,
        })
    }

    /// The feature list (validated by [`features`]), and a note when it was ignored.
    fn features(&self) -> (Features, Option<String>) {
        let Some(f) = self.api.features_v2.or(self.api.features) else {
            return (Features::default(), None);
        };
        let mut size = 0usize;
        let mut data: *mut c_void = std::ptr::null_mut();
        // SAFETY: both out-parameters are valid; `*data` is NULL on entry as the API requires.
        let rc = unsafe { f(&mut size, &mut data) };
        if rc != 0 || data.is_null() {
            if rc != 0 {
                log::debug!("{}", fail("aclprofGetSupportedFeatures", rc));
            }
            return (Features::default(), None);
        }
        features::features(size, data)
    }

    fn create(&self, device: u32, metrics: u32, bits: u64) -> Option<ConfigPtr> {
        let mut dev = device;
        // SAFETY: a one-element device list that outlives the call; no AI Core events (must be NULL).
        let c = unsafe { (self.api.create_config)(&mut dev, 1, metrics, std::ptr::null(), bits) };
        (!c.is_null()).then_some(ConfigPtr(c))
    }

    /// `aclprofInit` on the worker directory: through its handle's path, else through its current real path.
    fn init(&self, profile: &Profile) -> std::result::Result<(), String> {
        let api = self.api;
        // CANN takes a path: `/proc/self/fd/N` of the worker directory we hold open names that very
        // directory (CANN resolves it with realpath to where the directory is now), never whatever someone put
        // under its old name in the root. Should a CANN refuse it as a path (it may reject symlinked paths),
        // the directory's current real path (the kernel's, not the configured name) is the fallback.
        let init = |path: &std::path::Path| {
            let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
                return -1;
            };
            // SAFETY: a NUL-terminated path and its exact strlen (what both CANN generations require).
            unsafe { (api.init)(c.as_ptr(), c.as_bytes().len()) }
        };
        let handle_path = profile.dirs.top.dir.proc_path();
        let mut rc = init(&handle_path);
        // ACL_ERROR_INVALID_FILE: the path itself was refused (any other code is not about the path).
        if rc == sys::ACL_ERROR_INVALID_FILE {
            if let Ok(real) = std::fs::read_link(&handle_path) {
                log::debug!(
                    "aclprofInit refused {}: {rc}; trying {}",
                    handle_path.display(),
                    real.display()
                );
                rc = init(&real);
            }
        }
        if rc != 0 {
            return Err(fail("aclprofInit", rc));
        }
        Ok(())
    }

    /// `aclprofCreateConfig` → `aclprofStart`, retried once with the portable bits when CANN rejects some
    /// (`ACL_ERROR_PROF_MODULES_UNSUPPORTED`); returns the started config and its bits. On failure the config
    /// (if any) is destroyed and the init undone.
    fn create_and_start(
        &self,
        device: u32,
        plan: &Plan,
        notes: &mut Vec<String>,
    ) -> std::result::Result<(ConfigPtr, u64), String> {
        let api = self.api;
        let metrics = plan.metrics.value();
        let mut bits = plan.bits;
        let Some(mut config) = self.create(device, metrics, bits) else {
            finalize(api);
            return Err(format!(
                "aclprofCreateConfig returned NULL for device {device} (bits {bits:#x}, metrics {}): the device \
                 id is not present (check NPUPROF_DEVICE / LOCAL_RANK) or the driver is unavailable",
                plan.metrics.acl_name()
            ));
        };
        // SAFETY: a live config from aclprofCreateConfig.
        let mut rc = unsafe { (api.start)(config.0) };
        if rc == sys::ACL_ERROR_PROF_MODULES_UNSUPPORTED && bits & !plan::PORTABLE_BITS != 0 {
            let dropped = plan::bit_names(bits & !plan::PORTABLE_BITS).join("|");
            destroy(api, &config);
            bits &= plan::PORTABLE_BITS;
            match self.create(device, metrics, bits) {
                Some(c) => {
                    config = c;
                    notes.push(format!(
                        "this CANN rejected {dropped} (ACL_ERROR_PROF_MODULES_UNSUPPORTED): started without it"
                    ));
                    // SAFETY: as above.
                    rc = unsafe { (api.start)(config.0) };
                }
                None => {
                    finalize(api);
                    return Err("aclprofCreateConfig returned NULL on retry".into());
                }
            }
        }
        if rc != 0 {
            destroy(api, &config);
            finalize(api);
            return Err(fail("aclprofStart", rc));
        }
        Ok((config, bits))
    }

    /// The documented sequence; on any failure everything done so far is undone.
    fn start_session(&mut self, profile: &Profile) -> std::result::Result<Running, String> {
        let clocks = clock_pair();
        self.init(profile)?;
        let (features, ignored) = self.features();
        let plan = plan::plan(profile.config, &features);
        // The ignored-list note goes to the metadata of every profile but is logged once (by `features`).
        let logged = usize::from(ignored.is_some());
        let mut notes: Vec<String> = ignored.into_iter().collect();
        notes.extend(plan.notes.iter().cloned());
        set_config(self.api, &plan, &mut notes);
        let device = profile.device_id;
        let (config, bits) = self.create_and_start(device, &plan, &mut notes)?;
        for n in notes.iter().skip(logged) {
            log::warn!("{n}");
        }
        Ok(Running {
            config,
            plan,
            bits,
            device,
            device_source: self.device_source,
            features,
            clocks,
            notes,
        })
    }

    /// Stop → DestroyConfig → Finalize; each runs even if the one before failed. Returns the failures.
    /// Runs on the `npuprof-vendor` thread (any of the three may block: see `backend::vendor`), each call
    /// announced to `call` so an abandoned stop is named in the metadata.
    fn stop_session(&mut self, r: &Running, call: &VendorCall) -> Vec<String> {
        let api = self.api;
        let mut errors = Vec::new();
        stop_stamps();
        call.enter("aclprofStop");
        // SAFETY: the config that started the session, not yet destroyed.
        let rc = unsafe { (api.stop)(r.config.0) };
        if rc != 0 {
            errors.push(fail("aclprofStop", rc));
        }
        call.enter("aclprofDestroyConfig");
        // SAFETY: destroyed exactly once, after the stop.
        let rc = unsafe { (api.destroy_config)(r.config.0) };
        if rc != 0 {
            errors.push(fail("aclprofDestroyConfig", rc));
        }
        call.enter("aclprofFinalize");
        // SAFETY: undoes the session's aclprofInit.
        let rc = unsafe { (api.finalize)() };
        if rc != 0 {
            errors.push(fail("aclprofFinalize", rc));
        }
        for e in &errors {
            log::warn!("{e}");
        }
        errors
    }
}

/// The device the last successful `aclrtGetDevice` reported (on a thread of the runtime's that started a
/// profile), for a start on a thread without a CANN context; -1: none yet.
static RUNTIME_DEVICE: AtomicI64 = AtomicI64::new(-1);

/// (CLOCK_REALTIME, CLOCK_MONOTONIC_RAW) in ns at one instant: the realtime read bracketed by two raw reads,
/// the tightest of 15 tries. A thread preempted between two reads (a loaded machine, qemu-user) would
/// otherwise shift every device time of the profile by the delay: under qemu one such pair moved each step's
/// kernels into the step before.
fn clock_pair() -> (u64, u64) {
    let (raw, rt) = clock::tightest_pair(15, clock::monotonic_raw_ns, clock::realtime_ns);
    (rt, raw)
}

impl Backend for AclBackend {
    fn id(&self) -> BackendId {
        BackendId::Acl
    }

    fn device_id(&mut self, cfg: &Config) -> u32 {
        if let Some(get) = self.api.get_device {
            let mut d: i32 = -1;
            // SAFETY: valid out-parameter.
            let rc = unsafe { get(&mut d) };
            if rc == 0 && d >= 0 {
                RUNTIME_DEVICE.store(d as i64, Ordering::Relaxed);
                self.device_source = "aclrtGetDevice";
                return d as u32;
            }
            log::debug!("aclrtGetDevice returned {rc} ({})", code_name(rc));
            // CANN answers from the calling thread's context: a thread that never set a device (npuprof's own
            // background thread running an on-demand start, or any other) gets 107002. The device a runtime
            // thread reported at an earlier start is the runtime's.
            let seen = RUNTIME_DEVICE.load(Ordering::Relaxed);
            if seen >= 0 {
                log::info!(
                    "no CANN device on the starting thread ({rc}): profiling device {seen}, which a runtime \
                     thread reported at an earlier start"
                );
                self.device_source = "aclrtGetDevice on a runtime thread, at an earlier start";
                return seen as u32;
            }
        }
        self.device_source = cfg.device_source;
        cfg.device_id
    }

    fn start(&mut self, profile: &Profile) -> Result<()> {
        self.host_only_reason = None;
        if self.running.is_some() {
            return Err(Error::new(
                Status::Internal,
                "aclprof session still open from the previous profile",
            ));
        }
        match self.start_session(profile) {
            Ok(r) => {
                log::info!(
                    "aclprof started on device {} ({}): {:#x} [{}], AI Core metrics {}",
                    r.device,
                    r.device_source,
                    r.bits,
                    plan::bit_names(r.bits).join("|"),
                    r.plan.metrics.name()
                );
                if r.bits & sys::ACL_PROF_MSPROFTX as u64 != 0 {
                    TX.store(self.api as *const Api as *mut Api, Ordering::SeqCst);
                }
                self.running = Some(r);
                Ok(())
            }
            Err(msg) if self.strict => Err(Error::new(Status::Backend, msg)),
            Err(msg) => {
                log::warn!(
                    "NPUPROF_BACKEND=auto: no device data for this profile, host data only: {msg}"
                );
                self.host_only_reason = Some(msg);
                Ok(())
            }
        }
    }

    fn step_hook(&self) -> Option<&'static StepHook> {
        self.running
            .as_ref()
            .filter(|r| r.bits & sys::ACL_PROF_MSPROFTX as u64 != 0)
            .map(|_| &MARK_STEP)
    }

    fn stop(&mut self, profile: &Profile, call: &VendorCall) -> Result<Box<dyn DeviceData>> {
        let Some(r) = self.running.take() else {
            return Ok(Box::new(export::HostOnly(self.host_only_reason.take())));
        };
        let errors = self.stop_session(&r, call);
        Ok(Box::new(export::AclData {
            dir: profile.dir.clone(),
            device: r.device,
            level: profile.config.level,
            clocks: r.clocks,
            timeout_s: profile.config.msprof_timeout_s,
            meta: vec![
                ("status".into(), json::string(b"collected")),
                (
                    "device_source".into(),
                    json::string(r.device_source.as_bytes()),
                ),
                (
                    "libascendcl".into(),
                    json::string(self.api.ascendcl.as_bytes()),
                ),
                (
                    "libmsprofiler".into(),
                    self.api
                        .msprofiler
                        .as_deref()
                        .map_or("null".into(), |m| json::string(m.as_bytes())),
                ),
                ("data_type_config".into(), format!("\"{:#x}\"", r.bits)),
                (
                    "data_types".into(),
                    json_list(plan::bit_names(r.bits).iter().map(|s| s.to_string())),
                ),
                (
                    "requested_data_type_config".into(),
                    format!("\"{:#x}\"", r.plan.bits),
                ),
                (
                    "aic_metrics".into(),
                    json::string(r.plan.metrics.acl_name().as_bytes()),
                ),
                (
                    "set_config".into(),
                    json_list(r.plan.set_config.iter().map(|(_, n, v)| format!("{n}={v}"))),
                ),
                (
                    "features".into(),
                    json_list(r.features.names.iter().cloned()),
                ),
                ("notes".into(), json_list(r.notes.iter().cloned())),
                ("stop_errors".into(), json_list(errors.into_iter())),
            ],
        }))
    }
}

fn json_list(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.map(|s| json::string(s.as_bytes())).collect();
    format!("[{}]", v.join(", "))
}
