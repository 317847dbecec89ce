//! Finding and opening the CANN libraries, at the first `npuprof_start` (never at load time).
//!
//! Order, per library: the copy the runtime already loaded (`RTLD_NOLOAD`), then
//! `$ASCEND_HOME_PATH/lib64`, `$ASCEND_TOOLKIT_HOME/lib64`, then the loader's search path. Always
//! `RTLD_LAZY | RTLD_LOCAL` (our lookups never leak symbols into the process namespace), and never closed: the
//! handles are leaked, so CANN is never unmapped under its own threads.

use super::sys::{
    self, aclError, aclprofAicoreEvents, aclprofAicoreMetrics, aclprofConfig, aclprofConfigType,
};
use crate::backend::cann_lib::open_library;
use std::ffi::{c_char, c_void};

pub(crate) const ASCENDCL: &str = "libascendcl.so";
pub(crate) const MSPROFILER: &str = "libmsprofiler.so";

pub(crate) type InitFn = unsafe extern "C" fn(*const c_char, usize) -> aclError;
pub(crate) type FinalizeFn = unsafe extern "C" fn() -> aclError;
pub(crate) type CreateConfigFn = unsafe extern "C" fn(
    *mut u32,
    u32,
    aclprofAicoreMetrics,
    *const aclprofAicoreEvents,
    u64,
) -> *mut aclprofConfig;
pub(crate) type ConfigFn = unsafe extern "C" fn(*const aclprofConfig) -> aclError;
pub(crate) type SetConfigFn =
    unsafe extern "C" fn(aclprofConfigType, *const c_char, usize) -> aclError;
pub(crate) type FeaturesFn = unsafe extern "C" fn(*mut usize, *mut *mut c_void) -> i32;
pub(crate) type CreateStampFn = unsafe extern "C" fn() -> *mut c_void;
pub(crate) type StampFn = unsafe extern "C" fn(*mut c_void) -> aclError;
pub(crate) type DestroyStampFn = unsafe extern "C" fn(*mut c_void);
pub(crate) type StampMsgFn = unsafe extern "C" fn(*mut c_void, *const c_char, u32) -> aclError;
pub(crate) type GetDeviceFn = unsafe extern "C" fn(*mut i32) -> aclError;

/// The entry points npuprof uses, resolved once. Required ones are plain fn pointers; optional ones `None`.
#[derive(Debug)]
pub(crate) struct Api {
    pub init: InitFn,
    pub finalize: FinalizeFn,
    pub create_config: CreateConfigFn,
    pub destroy_config: ConfigFn,
    pub start: ConfigFn,
    pub stop: ConfigFn,
    pub set_config: Option<SetConfigFn>,
    pub features_v2: Option<FeaturesFn>,
    pub features: Option<FeaturesFn>,
    pub create_stamp: Option<CreateStampFn>,
    pub destroy_stamp: Option<DestroyStampFn>,
    pub set_stamp_message: Option<StampMsgFn>,
    pub mark: Option<StampFn>,
    pub get_device: Option<GetDeviceFn>,
    /// How each library was found (for the log and the metadata).
    pub ascendcl: String,
    pub msprofiler: Option<String>,
}

/// Resolves the bindings' symbols from an opened library.
fn bind(l: libloading::os::unix::Library, how: String) -> Result<(sys::AclProf, String), String> {
    // SAFETY: `from_library` only looks symbols up (missing ones become `Err` fields).
    unsafe { sys::AclProf::from_library(l) }
        .map(|api| (api, how))
        .map_err(|e| e.to_string())
}

fn open(name: &str) -> Result<(sys::AclProf, String), String> {
    let (l, how) = open_library(name)?;
    bind(l, how)
}

/// Copies a resolved symbol out of a bindgen field (fn pointers are `Copy`; the library is leaked, so they
/// stay valid for the life of the process).
fn sym<T: Copy>(f: &Result<T, libloading::Error>) -> Option<T> {
    f.as_ref().ok().copied()
}

/// Opens libascendcl.so (required) and libmsprofiler.so (optional: SetConfig, features, stamps), as torch_npu
/// splits them. A core symbol missing from libascendcl is taken from libmsprofiler, where CANN defines it.
pub(crate) fn load() -> Result<&'static Api, String> {
    let (cl, cl_how) = open(ASCENDCL)?;
    let (mp, mp_how) = match open(MSPROFILER) {
        Ok((m, how)) => (Some(Box::leak(Box::new(m))), Some(how)),
        Err(e) => {
            log::warn!("{e}; aclprofSetConfig, the feature list and stamps are unavailable");
            (None, None)
        }
    };
    let cl: &'static sys::AclProf = Box::leak(Box::new(cl));
    let mp: Option<&'static sys::AclProf> = mp.map(|m| &*m);
    macro_rules! core {
        ($f:ident) => {
            sym(&cl.$f)
                .or_else(|| mp.and_then(|m| sym(&m.$f)))
                .ok_or_else(|| {
                    format!(
                        "symbol {} not found in {ASCENDCL}{}",
                        stringify!($f),
                        if mp.is_some() {
                            format!(" nor in {MSPROFILER}")
                        } else {
                            String::new()
                        }
                    )
                })?
        };
    }
    macro_rules! ext {
        ($f:ident) => {
            mp.and_then(|m| sym(&m.$f))
        };
    }
    let api = Api {
        init: core!(aclprofInit),
        finalize: core!(aclprofFinalize),
        create_config: core!(aclprofCreateConfig),
        destroy_config: core!(aclprofDestroyConfig),
        start: core!(aclprofStart),
        stop: core!(aclprofStop),
        set_config: ext!(aclprofSetConfig),
        features_v2: ext!(aclprofGetSupportedFeaturesV2),
        features: ext!(aclprofGetSupportedFeatures),
        create_stamp: ext!(aclprofCreateStamp),
        destroy_stamp: ext!(aclprofDestroyStamp),
        set_stamp_message: ext!(aclprofSetStampTraceMessage),
        mark: ext!(aclprofMark),
        get_device: sym(&cl.aclrtGetDevice),
        ascendcl: cl_how,
        msprofiler: mp_how,
    };
    Ok(Box::leak(Box::new(api)))
}
