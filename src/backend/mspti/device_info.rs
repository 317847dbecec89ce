//! The device's AI Core count and frequency for msprof-analyze's advisor (`info.json.<device>`), read where
//! CANN's profiler reads them: the driver's `halGetDeviceInfo` (`libascend_hal.so`).
//!
//! Neither MSPTI's records nor ACL's `aclrtGetDeviceInfo` (whose `aclrtDevAttr` has core counts, memory and
//! ids, but no frequency) give the AI Core frequency. CANN's profiler writes `info.json` `DeviceInfo` from
//! the driver: `ai_core_num` = `halGetDeviceInfo(dev, MODULE_TYPE_AICORE, INFO_TYPE_CORE_NUM)`, `aiv_num`
//! from `MODULE_TYPE_VECTOR_CORE`, and `aic_frequency` = `aiv_frequency` = `halGetDeviceInfo(dev,
//! MODULE_TYPE_AICORE, INFO_TYPE_FREQUE)` in MHz ("aic and aiv with the same frequency"; hicann/runtime
//! `src/dfx/msprof/collector/dvvp/task_handle/src/info_json.cpp` `AddDeviceInfo`, `ai_drv_dsmi_api.cpp`
//! `DrvGeAicFrq`). The enum values are the driver header's (`ascend_hal.h`: `DEV_MODULE_TYPE` SYSTEM=0, AICPU,
//! CCPU, DCPU, AICORE=4, TSCPU, PCIE, VECTOR_CORE=7; `INFO_TYPE_CORE_NUM`=3, `INFO_TYPE_FREQUE`=4).
//!
//! Only the driver copy the process already loaded is used (`RTLD_NOLOAD`: a process running MSPTI has the
//! CANN runtime, which links it); nothing is loaded for this. Without it (e.g. `npuprof recover`, in another
//! process), or when the driver answers no frequency, no file is written and the advisor says it found no AI
//! Core frequency: no number is made up.

use std::ffi::c_int;

const LIBRARY: &str = "libascend_hal.so";
const MODULE_TYPE_AICORE: c_int = 4;
const MODULE_TYPE_VECTOR_CORE: c_int = 7;
const INFO_TYPE_CORE_NUM: c_int = 3;
const INFO_TYPE_FREQUE: c_int = 4;
/// Above any Ascend AI Core clock (today's run at 1-2 GHz): a larger answer is not a frequency.
const MAX_MHZ: i64 = 10_000;
/// Above any Ascend chip's core count.
const MAX_CORES: i64 = 4096;

/// `drvError_t halGetDeviceInfo(uint32_t devId, int32_t moduleType, int32_t infoType, int64_t *value)`.
type GetDeviceInfo = unsafe extern "C" fn(u32, c_int, c_int, *mut i64) -> c_int;

/// What the driver says about one device.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct DeviceInfo {
    pub(super) device: u32,
    pub(super) ai_core_num: i64,
    /// `None` when the driver gives none (then `aiv_num` is left out, as the advisor allows).
    pub(super) aiv_num: Option<i64>,
    /// MHz.
    pub(super) aic_frequency: i64,
}

impl DeviceInfo {
    /// The file's name, `info.json.<device>` (the advisor reads every `info.json.*` but `*.done`).
    pub(super) fn file_name(&self) -> String {
        format!("info.json.{}", self.device)
    }

    /// The file's content, in CANN's shape (`DeviceInfo` list; frequencies as strings, as CANN writes them).
    pub(super) fn json(&self) -> String {
        let aiv = self
            .aiv_num
            .map_or(String::new(), |n| format!(", \"aiv_num\": {n}"));
        let f = self.aic_frequency;
        format!(
            "{{\"DeviceInfo\": [{{\"id\": {}, \"ai_core_num\": {}{aiv}, \"aic_frequency\": \"{f}\", \
             \"aiv_frequency\": \"{f}\"}}]}}\n",
            self.device, self.ai_core_num
        )
    }
}

/// Asks the process's driver about `device`; `Err` says why there is nothing to write.
pub(super) fn query(device: u32) -> Result<DeviceInfo, String> {
    use libloading::os::unix::Library;
    // SAFETY: RTLD_NOLOAD only returns a handle to a library the process already loaded (its constructors
    // ran long ago); nothing new is loaded or run.
    let lib = unsafe { Library::open(Some(LIBRARY), libc::RTLD_LAZY | libc::RTLD_NOLOAD) }
        .map_err(|_| format!("{LIBRARY} is not loaded by the process"))?;
    // SAFETY: the symbol's C signature is the driver header's (`GetDeviceInfo` above).
    let get: GetDeviceInfo = *unsafe { lib.get::<GetDeviceInfo>(b"halGetDeviceInfo\0") }
        .map_err(|e| format!("{LIBRARY}: {e}"))?;
    let ask = |module: c_int, info: c_int| -> Option<i64> {
        let mut v = 0i64;
        // SAFETY: `get` is `halGetDeviceInfo` of the loaded driver (kept loaded by the process: we hold `lib`
        // for the call); `v` is a valid `int64_t` out-parameter.
        let rc = unsafe { get(device, module, info, &mut v) };
        (rc == 0 && v > 0).then_some(v)
    };
    // A driver of another version may answer anything: only plausible values are written.
    let aic_frequency = ask(MODULE_TYPE_AICORE, INFO_TYPE_FREQUE)
        .filter(|f| *f <= MAX_MHZ)
        .ok_or_else(|| {
            "the driver gave no AI Core frequency (or an implausible one)".to_string()
        })?;
    let ai_core_num = ask(MODULE_TYPE_AICORE, INFO_TYPE_CORE_NUM)
        .filter(|n| *n <= MAX_CORES)
        .ok_or_else(|| "the driver gave no AI Core count (or an implausible one)".to_string())?;
    Ok(DeviceInfo {
        device,
        ai_core_num,
        aiv_num: ask(MODULE_TYPE_VECTOR_CORE, INFO_TYPE_CORE_NUM).filter(|n| *n <= MAX_CORES),
        aic_frequency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_has_cann_s_shape() {
        let d = DeviceInfo {
            device: 3,
            ai_core_num: 20,
            aiv_num: Some(40),
            aic_frequency: 1650,
        };
        assert_eq!(d.file_name(), "info.json.3");
        let v: serde_json::Value = serde_json::from_str(&d.json()).unwrap();
        let i = &v["DeviceInfo"][0];
        assert_eq!(
            (&i["id"], &i["ai_core_num"], &i["aiv_num"]),
            (&3.into(), &20.into(), &40.into())
        );
        assert_eq!(
            (&i["aic_frequency"], &i["aiv_frequency"]),
            (&"1650".into(), &"1650".into())
        );
        let no_aiv = DeviceInfo { aiv_num: None, ..d };
        let v: serde_json::Value = serde_json::from_str(&no_aiv.json()).unwrap();
        assert!(v["DeviceInfo"][0].get("aiv_num").is_none());
    }

    #[test]
    #[cfg_attr(miri, ignore)] // dlopen: a foreign call Miri cannot make
    fn without_the_driver_there_is_nothing() {
        // The test process never loads a driver.
        assert!(query(0).unwrap_err().contains("not loaded"));
    }
}
