//! The facts of one profile, shared by every stage: what the session started ([`Profile`]), why it ended
//! ([`StopReason`]) and what the drain counted ([`Counters`]); the export thread's work item that bundles
//! them with the device data is `export::ExportJob`. Below the session, the drain, the backends, the device
//! model and the exporters; above only the leaves.

use crate::config::Config;
use crate::layout;
use std::path::PathBuf;

mod counters;

pub use counters::{counter_keys, Counters, KIND_KEYS};

/// The backend that collected a profile (what `NPUPROF_BACKEND` resolved to, `auto` included): the decisions
/// exporters and `npuprof recover` make on it are matches on this, never on its spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendId {
    /// Host annotations only.
    Host,
    /// CANN's aclprof, exported with msprof.
    Acl,
    /// CANN's MSPTI activity records.
    Mspti,
}

impl BackendId {
    /// The spelling in the START frame, `profiler_info_{rank}.json` and `profiler_metadata.json`.
    pub fn name(self) -> &'static str {
        match self {
            BackendId::Host => "host",
            BackendId::Acl => "acl",
            BackendId::Mspti => "mspti",
        }
    }

    /// It collects NPU data (`"activities": ["CPU", "NPU"]` and the level in `profiler_info_{rank}.json`).
    pub fn collects_device(self) -> bool {
        match self {
            BackendId::Host => false,
            BackendId::Acl | BackendId::Mspti => true,
        }
    }

    /// The backend a START frame names; `None` for anything else.
    pub fn from_name(s: &str) -> Option<BackendId> {
        [BackendId::Host, BackendId::Acl, BackendId::Mspti]
            .into_iter()
            .find(|b| b.name() == s)
    }
}

/// Why a profile ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Manual,
    /// The old logic's `PROFILER_STOP_STEP`.
    StepLimit,
    /// The step bound of the new logic: `NPUPROF_MAX_STEPS`, or a start's `num_steps`.
    MaxSteps,
    /// The time bound: `NPUPROF_MAX_SECONDS`, or a start's `max_seconds` (enforced by the drain thread).
    MaxSeconds,
    DiskLimit,
    IoError,
    Shutdown,
    Exit,
    /// Finished later by `npuprof recover` (the process died without a stop).
    Recovered,
}

impl StopReason {
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Manual => "npuprof_stop",
            StopReason::StepLimit => "PROFILER_STOP_STEP reached",
            StopReason::MaxSteps => "max steps reached (NPUPROF_MAX_STEPS or num_steps)",
            StopReason::MaxSeconds => "max seconds reached (NPUPROF_MAX_SECONDS or max_seconds)",
            StopReason::DiskLimit => "NPUPROF_MAX_DISK_MB reached",
            StopReason::IoError => "spool write error",
            StopReason::Shutdown => "npuprof_shutdown",
            StopReason::Exit => "process exit without npuprof_stop",
            StopReason::Recovered => {
                "recovered by `npuprof recover`: the process ended without npuprof_stop"
            }
        }
    }
}

/// One profile's facts, shared by the session, the drain and the exporters.
#[derive(Debug)]
pub struct Profile {
    pub gen: u64,
    /// The worker directory's path when it was created, for messages (someone may rename it since).
    pub dir: PathBuf,
    /// `FRAMEWORK/npuprof.spool` under `dir`, for messages.
    pub spool_path: PathBuf,
    /// The worker directory and its subdirectories, opened at start and held until the export ends: every
    /// file of the profile is created and read through them.
    pub dirs: layout::WorkerDirs,
    /// (tick, CLOCK_REALTIME ns) taken at start; the start tick is `anchor.0`.
    pub anchor: (u64, u64),
    pub pid: u32,
    pub worker: String,
    pub rank: u32,
    pub device_id: u32,
    /// Started by the old logic's threshold.
    pub auto: bool,
    /// This profile's capture window (the environment's, or its start's options).
    pub window: crate::config::Window,
    /// The process's step count at the profile's first recorded step (`npuprof trigger --at-step`, a delayed
    /// start); 0 when this process does not count its steps.
    pub first_step: u64,
    /// The start's tag, the first part of the directory name (`npuprof_start_with`).
    pub tag: Option<String>,
    pub backend: BackendId,
    pub config: &'static Config,
    /// The process's exit, as the exit hook announces it to this profile's export (see `process::Exit`).
    pub(crate) exit: &'static crate::process::Exit,
}
