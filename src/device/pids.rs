//! npuprof's pid scheme for device lanes in `trace_view.json`: a base below 2^31 (as Perfetto needs), 16 pid
//! slots per device.

/// Host pid base of device lanes (below 2^31, as Perfetto needs); 16 pids per device.
pub(crate) const DEVICE_PID_BASE: u32 = 1 << 30;
/// Pid slots per device.
pub(crate) const SLOT_HARDWARE: u32 = 0;
pub(crate) const SLOT_CANN: u32 = 1;
pub(crate) const SLOT_OVERLAP: u32 = 2;
pub(crate) const FIRST_OTHER_SLOT: u32 = 3;

pub(crate) fn device_pid(device: u32, slot: u32) -> u32 {
    DEVICE_PID_BASE + (device % 64) * 16 + slot
}
