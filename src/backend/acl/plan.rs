//! The environment → aclprof data-type bits, AI Core metrics and `aclprofSetConfig` options, as torch_npu
//! maps its `experimental_config` (docs/msprof-export.md §6). A pure function: unit-tested for
//! every combination.

use super::sys;
use crate::config::{AicMetrics, Config, Level};

/// `ACL_PROF_AICORE_SHAPE`: newer than the W214 header, defined locally by torch_npu too.
pub(crate) const ACL_PROF_AICORE_SHAPE: u64 = 0x8_0000_0000;
/// The 12 bits every known libmsprofiler accepts (MP `PROF_SWITCH_SUPPORT`); others may be rejected with
/// `ACL_ERROR_PROF_MODULES_UNSUPPORTED` by older CANN (ascend-api.md §2.3).
pub(crate) const PORTABLE_BITS: u64 = 0x59FF;

pub(crate) const LEVEL0_BITS: u64 = (sys::ACL_PROF_TASK_TIME_L0 | sys::ACL_PROF_ACL_API) as u64;
pub(crate) const LEVEL1_BITS: u64 = (sys::ACL_PROF_TASK_TIME
    | sys::ACL_PROF_ACL_API
    | sys::ACL_PROF_HCCL_TRACE
    | sys::ACL_PROF_AICORE_METRICS) as u64;
pub(crate) const LEVEL2_BITS: u64 =
    LEVEL1_BITS | (sys::ACL_PROF_RUNTIME_API | sys::ACL_PROF_AICPU) as u64;

/// Names from `aclprofGetSupportedFeatures[V2]` (torch_npu knows `ATTR`, `MemoryAccess`, `AICORE_SHAPE`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub names: Vec<String>,
    /// False when the query is unavailable or failed (then optional features are off, as in torch_npu).
    pub queried: bool,
}

impl Features {
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}

/// What one profile asks CANN for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub bits: u64,
    pub metrics: AicMetrics,
    /// `aclprofSetConfig(type, value)` calls, made before `aclprofCreateConfig`.
    pub set_config: Vec<(u32, &'static str, String)>,
    /// Why the plan differs from what the environment literally asked for (logged once, in the metadata).
    pub notes: Vec<String>,
}

/// The torch_npu mapping (PTA `profiler_mgr.cpp` `PrepareProfilerConfig`, TNPU `experimental_config.py`).
pub(crate) fn plan(cfg: &Config, features: &Features) -> Plan {
    let mut notes = Vec::new();
    let mut bits = match cfg.level {
        Level::Level0 => LEVEL0_BITS,
        Level::Level1 => LEVEL1_BITS,
        Level::Level2 => LEVEL2_BITS,
    };
    // torch_npu: metrics default to PipeUtilization and are reset to None at Level0.
    let mut metrics = match (cfg.level, cfg.aic_metrics) {
        (Level::Level0, Some(m)) if m != AicMetrics::None => {
            notes.push(format!(
                "NPUPROF_AIC_METRICS={} is ignored at level0 (as torch_npu does); use NPUPROF_LEVEL=level1",
                m.name()
            ));
            AicMetrics::None
        }
        (Level::Level0, _) => AicMetrics::None,
        (_, Some(m)) => m,
        (_, None) => AicMetrics::PipeUtilization,
    };
    if metrics == AicMetrics::MemoryAccess && !features.has("MemoryAccess") {
        notes.push(
            "AI Core metrics MemoryAccess is not in this CANN's feature list: using PipeUtilization"
                .into(),
        );
        metrics = AicMetrics::PipeUtilization;
    }
    if metrics != AicMetrics::None {
        bits |= sys::ACL_PROF_AICORE_METRICS as u64;
    }
    if cfg.msproftx {
        bits |= sys::ACL_PROF_MSPROFTX as u64;
    }
    let mut set_config = Vec::new();
    if cfg.with_profile_memory {
        bits |= sys::ACL_PROF_TASK_MEMORY as u64;
        set_config.push((
            sys::ACL_PROF_SYS_HARDWARE_MEM_FREQ,
            "ACL_PROF_SYS_HARDWARE_MEM_FREQ",
            "50".to_string(),
        ));
    }
    if cfg.record_shapes && cfg.level == Level::Level0 {
        if features.has("AICORE_SHAPE") {
            bits |= ACL_PROF_AICORE_SHAPE;
        } else {
            notes.push(
                "record shapes at level0 needs the AICORE_SHAPE feature, which this CANN does not list; \
                 shapes need NPUPROF_LEVEL=level1"
                    .into(),
            );
        }
    }
    Plan {
        bits,
        metrics,
        set_config,
        notes,
    }
}

/// `ACL_PROF_*` names of the bits in `mask`, for logs and the metadata.
pub(crate) fn bit_names(mask: u64) -> Vec<&'static str> {
    const NAMES: [(u64, &str); 17] = [
        (sys::ACL_PROF_ACL_API as u64, "ACL_PROF_ACL_API"),
        (sys::ACL_PROF_TASK_TIME as u64, "ACL_PROF_TASK_TIME"),
        (
            sys::ACL_PROF_AICORE_METRICS as u64,
            "ACL_PROF_AICORE_METRICS",
        ),
        (sys::ACL_PROF_AICPU as u64, "ACL_PROF_AICPU"),
        (sys::ACL_PROF_L2CACHE as u64, "ACL_PROF_L2CACHE"),
        (sys::ACL_PROF_HCCL_TRACE as u64, "ACL_PROF_HCCL_TRACE"),
        (
            sys::ACL_PROF_TRAINING_TRACE as u64,
            "ACL_PROF_TRAINING_TRACE",
        ),
        (sys::ACL_PROF_MSPROFTX as u64, "ACL_PROF_MSPROFTX"),
        (sys::ACL_PROF_RUNTIME_API as u64, "ACL_PROF_RUNTIME_API"),
        (sys::ACL_PROF_GE_API_L0 as u64, "ACL_PROF_GE_API_L0"),
        (sys::ACL_PROF_TASK_TIME_L0 as u64, "ACL_PROF_TASK_TIME_L0"),
        (sys::ACL_PROF_TASK_MEMORY as u64, "ACL_PROF_TASK_MEMORY"),
        (sys::ACL_PROF_TASK_TIME_L2 as u64, "ACL_PROF_TASK_TIME_L2"),
        (sys::ACL_PROF_OP_ATTR as u64, "ACL_PROF_OP_ATTR"),
        (sys::ACL_PROF_TASK_TIME_L3 as u64, "ACL_PROF_TASK_TIME_L3"),
        (sys::ACL_PROF_GE_API_L1 as u64, "ACL_PROF_GE_API_L1"),
        (ACL_PROF_AICORE_SHAPE, "ACL_PROF_AICORE_SHAPE"),
    ];
    NAMES
        .iter()
        .filter(|(b, _)| mask & b != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn cfg(vars: &[(&str, &str)]) -> Config {
        let map: std::collections::HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Config::from_lookup(&|k| map.get(k).cloned())
    }

    fn feats(names: &[&str]) -> Features {
        Features {
            names: names.iter().map(|s| s.to_string()).collect(),
            queried: true,
        }
    }

    #[test]
    fn levels_match_torch_npu() {
        assert_eq!(LEVEL0_BITS, 0x801);
        assert_eq!(LEVEL1_BITS, 0x27);
        assert_eq!(LEVEL2_BITS, 0x12F);
        let p = plan(&cfg(&[]), &Features::default());
        assert_eq!((p.bits, p.metrics), (0x801, AicMetrics::None));
        let p = plan(&cfg(&[("NPUPROF_LEVEL", "level1")]), &Features::default());
        assert_eq!((p.bits, p.metrics), (0x27, AicMetrics::PipeUtilization));
        let p = plan(&cfg(&[("NPUPROF_LEVEL", "Level2")]), &Features::default());
        assert_eq!((p.bits, p.metrics), (0x12F, AicMetrics::PipeUtilization));
    }

    /// Every combination of level, metrics, the four seed booleans, msproftx and the feature list: the bits
    /// are the level's, plus exactly the bits each option implies.
    #[test]
    fn every_env_combination_maps_like_torch_npu() {
        let levels = ["level0", "level1", "level2"];
        let metrics: Vec<&str> = AicMetrics::TABLE.iter().map(|r| r.1).collect();
        let feature_sets: [&[&str]; 3] = [&[], &["AICORE_SHAPE"], &["MemoryAccess", "ATTR"]];
        let mut n = 0;
        for level in levels {
            for m in metrics.iter().copied().chain(["unset"]) {
                for mask in 0..32u32 {
                    for fs in feature_sets {
                        let b = |i: u32| if mask & (1 << i) != 0 { "1" } else { "0" };
                        let mut vars = vec![
                            ("NPUPROF_LEVEL", level),
                            ("VLLM_TORCH_PROFILER_RECORD_SHAPES", b(0)),
                            ("VLLM_TORCH_PROFILER_WITH_PROFILE_MEMORY", b(1)),
                            ("VLLM_TORCH_PROFILER_WITH_STACK", b(2)),
                            ("VLLM_TORCH_PROFILER_WITH_FLOPS", b(3)),
                            ("NPUPROF_MSPROFTX", b(4)),
                        ];
                        if m != "unset" {
                            vars.push(("NPUPROF_AIC_METRICS", m));
                        }
                        let c = cfg(&vars);
                        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
                        let p = plan(&c, &feats(fs));
                        let base = match level {
                            "level0" => 0x801,
                            "level1" => 0x27,
                            _ => 0x12F,
                        };
                        let want_metrics = if level == "level0" {
                            AicMetrics::None
                        } else if m == "unset"
                            || (m == "MemoryAccess" && !fs.contains(&"MemoryAccess"))
                        {
                            AicMetrics::PipeUtilization
                        } else {
                            AicMetrics::parse(m).unwrap()
                        };
                        let mut want = base;
                        if want_metrics != AicMetrics::None {
                            want |= 0x4;
                        }
                        if mask & 16 != 0 {
                            want |= 0x80;
                        }
                        if mask & 2 != 0 {
                            want |= 0x1000;
                        }
                        if mask & 1 != 0 && level == "level0" && fs.contains(&"AICORE_SHAPE") {
                            want |= ACL_PROF_AICORE_SHAPE;
                        }
                        assert_eq!(p.bits, want, "{vars:?} {fs:?}");
                        assert_eq!(p.metrics, want_metrics, "{vars:?} {fs:?}");
                        let want_set: Vec<(u32, &str, String)> = if mask & 2 != 0 {
                            vec![(3, "ACL_PROF_SYS_HARDWARE_MEM_FREQ", "50".into())]
                        } else {
                            vec![]
                        };
                        assert_eq!(p.set_config, want_set);
                        // Stack and flops never change what CANN collects.
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 3 * 10 * 32 * 3);
    }

    #[test]
    fn bits_have_names() {
        assert_eq!(
            bit_names(0x801),
            ["ACL_PROF_ACL_API", "ACL_PROF_TASK_TIME_L0"]
        );
        assert!(bit_names(ACL_PROF_AICORE_SHAPE).contains(&"ACL_PROF_AICORE_SHAPE"));
    }
}
