//! npuprof's pid scheme for device lanes in `trace_view.json`: a base below 2^31 (as Perfetto needs), 16 pid
//! slots per device.

/// Host pid base of device lanes (below 2^31, as Perfetto needs); 16 pids per device.
pub const DEVICE_PID_BASE: u32 = 1 << 30;
/// Pid slots per device.
pub const SLOT_HARDWARE: u32 = 0;
pub const SLOT_CANN: u32 = 1;
pub const SLOT_OVERLAP: u32 = 2;
pub const FIRST_OTHER_SLOT: u32 = 3;

pub fn device_pid(device: u32, slot: u32) -> u32 {
    DEVICE_PID_BASE + (device % 64) * 16 + slot
}
