//! Backends: where device data comes from.
//!
//! Host annotations (ranges, marks, steps) are always recorded by the core, whatever the backend. A backend
//! adds device-side collection around a profile: `start` runs on the caller's thread inside `npuprof_start`,
//! under the control lock; `stop` runs on an `npuprof-vendor` thread of its own, outside that lock, and may
//! block as long as the vendor library does (`vendor`: `npuprof_stop` returns at once, the export waits for
//! the stop with a bound and abandons it after, saying so in the metadata). The [`DeviceData`] that `stop`
//! returns is turned into rows on the export thread, after the host spool is complete.
//!
//! * `host`: collects nothing; works anywhere.
//! * [`mspti`]: subscribes to CANN's MSPTI (`libmspti.so`): MSPTI completes activity buffers on its own
//!   threads, the `npuprof-mspti` thread appends their records to `FRAMEWORK/mspti.spool`, and the export
//!   replays that spool into rows, with no external tool.
//! * [`acl`]: drives CANN's aclprof C API (`libascendcl.so` / `libmsprofiler.so`) and parses what CANN wrote
//!   with `msprof --export=on`.
//!
//! [`select`] picks one for `NPUPROF_BACKEND`; `auto` tries MSPTI first, then aclprof, then host-only (with
//! one warning). The vendor facts both device backends rely on are in `docs/ascend-api.md` and
//! `docs/msprof-export.md`; `docs/backends.md` describes them for users.

pub mod acl;
mod cann_lib;
pub(crate) mod host;
pub mod mspti;
pub(crate) mod safe_copy;
pub(crate) mod vendor;

use crate::config::{BackendKind, Config};
use crate::device::DeviceData;
use crate::error::Result;
use crate::profile::{BackendId, Profile};

/// What the step path calls with each recorded step's number while a profile runs (see
/// [`Backend::step_hook`]). A `static` the backend owns, so the session can keep a pointer to it in an atomic
/// and the step path reads it without the control lock.
pub struct StepHook(pub fn(u64));

pub trait Backend: Send {
    fn id(&self) -> BackendId;
    /// The device the calling thread drives (asked before the profile's directory is made).
    fn device_id(&mut self, cfg: &Config) -> u32 {
        cfg.device_id
    }
    /// Begins device collection for `profile` (its directories exist).
    fn start(&mut self, profile: &Profile) -> Result<()>;
    /// Ends device collection; what was collected is parsed later on the export thread. Runs on the
    /// `npuprof-vendor` thread (see `vendor`); report each vendor call to `call` first.
    fn stop(&mut self, profile: &Profile, call: &vendor::VendorCall)
        -> Result<Box<dyn DeviceData>>;
    /// `stop` calls a vendor library (it may block): run it on the `npuprof-vendor` thread. `false` (the
    /// host backend): it is run inline.
    fn calls_vendor(&self) -> bool {
        true
    }
    /// Asked after a successful `start`: the hook `npuprof_step` calls with each recorded step's number until
    /// the profile stops (`None`: nothing to do per step, the step path then costs one null check). It runs
    /// on the caller's thread, outside the control lock, and may still be running (or be entered) while
    /// `stop` begins: the backend makes its own stop wait for it (see `acl::mark_step`).
    fn step_hook(&self) -> Option<&'static StepHook> {
        None
    }
}

/// In a forked child: every backend forgets the parent's process-wide state (aclprof's step stamping, the
/// runtime device it saw). Async-signal-safe: atomic stores only.
pub fn after_fork_child() {
    acl::after_fork_child();
}

/// `npuprof_shutdown`, with no device stop in flight: backends let go of what they hold for the process
/// (MSPTI's subscription, so other tools may subscribe). Idempotent.
pub fn shutdown() {
    mspti::unsubscribe();
}

/// The backend for a configuration. `acl` / `mspti` fail with `NPUPROF_ERR_BACKEND` when CANN cannot be opened.
/// `auto` prefers MSPTI (records arrive in-process and are parsed seconds after stop, no external tool), then
/// aclprof (needs CANN's msprof to parse), then host-only with one warning.
pub fn select(kind: BackendKind, cfg: &Config) -> Result<Box<dyn Backend>> {
    match kind {
        BackendKind::Host => Ok(Box::new(host::HostBackend)),
        BackendKind::Acl => acl::AclBackend::open(true).map(|b| Box::new(b) as Box<dyn Backend>),
        BackendKind::Mspti => {
            mspti::MsptiBackend::open(true, cfg).map(|b| Box::new(b) as Box<dyn Backend>)
        }
        BackendKind::Auto => {
            let m = match mspti::MsptiBackend::open(false, cfg) {
                Ok(b) => return Ok(Box::new(b)),
                Err(e) => e.msg,
            };
            match acl::AclBackend::open(false) {
                Ok(b) => {
                    log::info!("NPUPROF_BACKEND=auto: using aclprof ({m})");
                    Ok(Box::new(b))
                }
                Err(e) => {
                    log::warn!(
                        "NPUPROF_BACKEND=auto: CANN profiling is unavailable, recording host data only ({m}; {})",
                        e.msg
                    );
                    Ok(Box::new(host::HostBackend))
                }
            }
        }
    }
}
