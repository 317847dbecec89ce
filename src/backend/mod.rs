//! Backends: where device data comes from.
//!
//! Host annotations (ranges, marks, steps) are always recorded by the core, whatever the backend. A backend
//! adds device-side collection around a profile: `start` and `stop` run on the caller's thread inside
//! `npuprof_start` / `npuprof_stop` (they must be quick), and the [`DeviceData`] that `stop` returns is
//! turned into rows on the export thread, after the host spool is complete. The host backend collects
//! nothing; the aclprof and MSPTI backends plug in here.

pub mod host;

use crate::error::Result;
use crate::session::Profile;

/// One device task, the unit of `kernel_details.csv`, `op_statistic.csv` and the `Ascend Hardware` lanes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kernel {
    pub name: Vec<u8>,
    pub op_type: String,
    /// `Accelerator Core` (`AI_CORE`, `AI_VECTOR_CORE`, `MIX_AIC`, `AI_CPU`, `HCCL`, ...).
    pub core: String,
    /// CLOCK_REALTIME ns.
    pub start_ns: u64,
    pub dur_ns: u64,
    pub wait_ns: u64,
    pub stream_id: u32,
    pub task_id: u32,
    pub model_id: u32,
    pub block_dim: u32,
}

pub trait Backend: Send {
    fn name(&self) -> &'static str;
    /// Begins device collection for `profile` (its directories exist).
    fn start(&mut self, profile: &Profile) -> Result<()>;
    /// Ends device collection; what was collected is parsed later on the export thread.
    fn stop(&mut self, profile: &Profile) -> Result<Box<dyn DeviceData>>;
}

pub trait DeviceData: Send {
    /// The device tasks of the profile, in any order. Runs on the export thread.
    fn kernels(self: Box<Self>, profile: &Profile) -> Result<Vec<Kernel>>;
}

/// No device data.
pub struct NoDeviceData;

impl DeviceData for NoDeviceData {
    fn kernels(self: Box<Self>, _: &Profile) -> Result<Vec<Kernel>> {
        Ok(Vec::new())
    }
}

/// The backend for a configuration. `auto` picks the best available; today that is the host backend.
pub fn select(kind: crate::config::BackendKind) -> Box<dyn Backend> {
    match kind {
        crate::config::BackendKind::Auto | crate::config::BackendKind::Host => {
            Box::new(host::HostBackend)
        }
    }
}
