//! How far a result's device data got (`npuprof.device_data` in `profiler_metadata.json`).

use crate::device::DeviceResult;

/// Where a result's device data stands (`npuprof.device_data` in `profiler_metadata.json`). The host result is
/// written first, with `Pending` when device data is still to come; the export then adds the device data and
/// rewrites the result (each file replaced atomically). `npuprof recover` finishes a result whose device data is
/// `Pending` or `Abandoned` and refuses one that is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStage {
    /// Host data written; the device step (vendor stop, msprof, parse) has not finished: the process ended, or
    /// is still working on it.
    Pending,
    /// The device data is in the result.
    Parsed,
    /// The device step was given up (a vendor stop or msprof that did not return in time, or cut at exit):
    /// whatever raw device data exists stays for `npuprof recover`.
    Abandoned,
    /// The device step ended without device data in the result (no device backend, host-only, msprof missing
    /// or failing, ...): `device.status` says why.
    None,
}

impl DeviceStage {
    pub fn name(self) -> &'static str {
        match self {
            DeviceStage::Pending => "pending",
            DeviceStage::Parsed => "parsed",
            DeviceStage::Abandoned => "abandoned",
            DeviceStage::None => "none",
        }
    }

    pub fn from_name(n: &str) -> Option<DeviceStage> {
        [
            DeviceStage::Pending,
            DeviceStage::Parsed,
            DeviceStage::Abandoned,
            DeviceStage::None,
        ]
        .into_iter()
        .find(|s| s.name() == n)
    }

    /// Whether `npuprof recover` still has something to add.
    pub fn unfinished(self) -> bool {
        matches!(self, DeviceStage::Pending | DeviceStage::Abandoned)
    }

    /// The stage a collected device result stands at (from its `device.status`).
    pub(super) fn of(dev: &DeviceResult) -> DeviceStage {
        let status = dev
            .meta
            .iter()
            .rev()
            .find(|(k, _)| k == "status")
            .map(|(_, v)| v.trim_matches('"').to_string());
        match status.as_deref() {
            Some("parsed") => DeviceStage::Parsed,
            Some("abandoned") | Some("pending") => DeviceStage::Abandoned,
            _ => DeviceStage::None,
        }
    }
}
