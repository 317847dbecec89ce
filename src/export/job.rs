//! The export thread's work item: a stopped profile, its device data and its counters. It lives with its
//! consumer: the drain and `recover` make it (importing down), and it holds the device model's
//! [`DeviceData`], which itself reads profiles, so it cannot sit in `profile`.

use crate::device::DeviceData;
use crate::profile::{Counters, Profile, StopReason};
use crate::record::clock;
use std::sync::Arc;

/// What the drain hands to the export thread for one profile.
pub struct ExportJob {
    pub profile: Arc<Profile>,
    pub stop_tick: u64,
    pub reason: StopReason,
    pub device: Box<dyn DeviceData>,
    pub counters: Counters,
    pub conversion: clock::Conversion,
    pub truncated: bool,
    /// The spool could not be written completely (I/O error).
    pub spool_error: Option<String>,
    /// Finished by `npuprof recover`, not by the process that recorded it.
    pub recovered: bool,
    /// Recovered from the last COUNTERS frame of a spool without a STOP frame: the drop counters are those
    /// of this moment (CLOCK_REALTIME ns); drops after it were never written.
    pub counters_as_of_ns: Option<u64>,
}
