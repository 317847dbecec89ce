//! The host-only backend: works anywhere, collects no device data. Host annotations are recorded by the
//! core for every backend.

use super::Backend;
use crate::device::{DeviceData, NoDeviceData};
use crate::error::Result;
use crate::profile::{BackendId, Profile};

pub(crate) struct HostBackend;

impl Backend for HostBackend {
    fn id(&self) -> BackendId {
        BackendId::Host
    }
    fn start(&mut self, _: &Profile) -> Result<()> {
        Ok(())
    }
    fn stop(&mut self, _: &Profile, _: &super::vendor::VendorCall) -> Result<Box<dyn DeviceData>> {
        Ok(Box::new(NoDeviceData))
    }
    fn calls_vendor(&self) -> bool {
        false
    }
}
