//! Every variable npuprof reads, and the value each has in effect: the one list that the reader is tested
//! against (`Config::from_lookup` reads exactly these), that documents the configuration, that
//! `profiler_metadata.json`'s `"config"` block is written from, and that the spool's START frame records for
//! `npuprof recover` ([`Config::env_vars`]).

use super::{Config, Trigger};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A variable's value in effect, neutral of any format (the export writes it as JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Unset, or without effect (`PROFILER_STOP_STEP` with the manual trigger, a rank variable another one
    /// took precedence over).
    Null,
    Bool(bool),
    Uint(u64),
    /// Text as bytes (a path need not be UTF-8).
    Text(Vec<u8>),
}

/// One variable: its name and how to find its value in effect in a [`Config`].
pub struct Variable {
    pub name: &'static str,
    pub setting: fn(&Config) -> Setting,
}

fn text(s: &str) -> Setting {
    Setting::Text(s.as_bytes().to_vec())
}

fn path(p: Option<&Path>) -> Setting {
    p.map_or(Setting::Null, |p| {
        Setting::Text(p.as_os_str().as_bytes().to_vec())
    })
}

/// The rank or device, for the variable that gave it.
fn source(c: &Config, name: &str) -> Setting {
    if c.rank_source == name {
        Setting::Uint(c.rank.into())
    } else if c.device_source == name {
        Setting::Uint(c.device_id.into())
    } else {
        Setting::Null
    }
}

/// Every variable, in the order `Config::from_lookup` reads them.
pub const TABLE: &[Variable] = &[
    Variable {
        name: "VLLM_TORCH_PROFILER_DIR",
        // `""` rather than null when unset, as the metadata always wrote it.
        setting: |c| {
            Setting::Text(
                c.profiler_dir
                    .as_deref()
                    .map_or(Vec::new(), |d| d.as_os_str().as_bytes().to_vec()),
            )
        },
    },
    Variable {
        name: "PROFILER_TOKEN_THRESHOLD",
        setting: |c| match c.trigger {
            Trigger::Auto { threshold, .. } => Setting::Uint(threshold),
            Trigger::Manual => Setting::Null,
        },
    },
    Variable {
        name: "PROFILER_STOP_STEP",
        setting: |c| match c.trigger {
            Trigger::Auto { stop_step, .. } => Setting::Uint(stop_step),
            Trigger::Manual => Setting::Null,
        },
    },
    Variable {
        name: "VLLM_TORCH_PROFILER_RECORD_SHAPES",
        setting: |c| Setting::Bool(c.record_shapes),
    },
    Variable {
        name: "VLLM_TORCH_PROFILER_WITH_PROFILE_MEMORY",
        setting: |c| Setting::Bool(c.with_profile_memory),
    },
    Variable {
        name: "VLLM_TORCH_PROFILER_WITH_STACK",
        setting: |c| Setting::Bool(c.with_stack),
    },
    Variable {
        name: "VLLM_TORCH_PROFILER_WITH_FLOPS",
        setting: |c| Setting::Bool(c.with_flops),
    },
    Variable {
        name: "NPUPROF_BACKEND",
        setting: |c| text(c.backend.name()),
    },
    Variable {
        name: "NPUPROF_LOG",
        setting: |c| text(&c.log_level.as_str().to_ascii_lowercase()),
    },
    Variable {
        name: "NPUPROF_BUFFER_KB",
        setting: |c| Setting::Uint(c.buffer_kb),
    },
    Variable {
        name: "NPUPROF_MAX_DISK_MB",
        setting: |c| Setting::Uint(c.max_disk_mb),
    },
    Variable {
        name: "NPUPROF_MAX_DEVICE_RECORDS",
        setting: |c| Setting::Uint(c.max_device_records),
    },
    Variable {
        name: "NPUPROF_WORKER_NAME",
        setting: |c| c.worker_name.as_deref().map_or(Setting::Null, text),
    },
    Variable {
        name: "NPUPROF_RANK",
        setting: |c| source(c, "NPUPROF_RANK"),
    },
    Variable {
        name: "RANK",
        setting: |c| source(c, "RANK"),
    },
    Variable {
        name: "LOCAL_RANK",
        setting: |c| source(c, "LOCAL_RANK"),
    },
    Variable {
        name: "NPUPROF_DEVICE",
        setting: |c| source(c, "NPUPROF_DEVICE"),
    },
    Variable {
        name: "NPUPROF_KEEP_SPOOL",
        setting: |c| Setting::Bool(c.keep_spool),
    },
    Variable {
        name: "NPUPROF_FLUSH_TIMEOUT_S",
        setting: |c| Setting::Uint(c.flush_timeout_s),
    },
    Variable {
        name: "NPUPROF_LEVEL",
        setting: |c| text(c.level.name()),
    },
    Variable {
        name: "NPUPROF_AIC_METRICS",
        setting: |c| c.aic_metrics.map_or(Setting::Null, |m| text(m.name())),
    },
    Variable {
        name: "NPUPROF_MSPROFTX",
        setting: |c| Setting::Bool(c.msproftx),
    },
    Variable {
        name: "NPUPROF_MSPROF_TIMEOUT_S",
        setting: |c| Setting::Uint(c.msprof_timeout_s),
    },
    Variable {
        name: "NPUPROF_VENDOR_TIMEOUT_S",
        setting: |c| Setting::Uint(c.vendor_timeout_s),
    },
    Variable {
        name: "NPUPROF_MSPTI_BUFFER_KB",
        setting: |c| Setting::Uint(c.mspti_buffer_kb),
    },
    Variable {
        name: "NPUPROF_MSPTI_BUFFERS",
        setting: |c| Setting::Uint(c.mspti_buffers),
    },
    Variable {
        name: "NPUPROF_MSPTI_API",
        setting: |c| Setting::Bool(c.mspti_api),
    },
    Variable {
        name: "NPUPROF_DELAY_STEPS",
        setting: |c| Setting::Uint(c.window.delay_steps),
    },
    Variable {
        name: "NPUPROF_MAX_STEPS",
        setting: |c| Setting::Uint(c.window.max_steps),
    },
    Variable {
        name: "NPUPROF_MAX_SECONDS",
        setting: |c| Setting::Uint(c.window.max_seconds),
    },
    Variable {
        name: "NPUPROF_CONTROL",
        setting: |c| Setting::Bool(c.control),
    },
    Variable {
        name: "NPUPROF_EXPORT_TYPE",
        setting: |c| text(c.export_type.name()),
    },
    Variable {
        name: "NPUPROF_TRACE_FORMAT",
        setting: |c| text(c.trace_format.name()),
    },
    Variable {
        name: "NPUPROF_TRACE_GZIP",
        setting: |c| Setting::Bool(c.trace_gzip),
    },
    Variable {
        name: "ASCEND_HOME_PATH",
        setting: |c| path(c.ascend_home_path.as_deref()),
    },
    Variable {
        name: "ASCEND_TOOLKIT_HOME",
        setting: |c| path(c.ascend_toolkit_home.as_deref()),
    },
];

const N: usize = TABLE.len();

const NAMES: [&str; N] = {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = TABLE[i].name;
        i += 1;
    }
    out
};

/// The names of [`TABLE`].
pub const VARIABLES: &[&str] = &NAMES;

impl Config {
    /// Every variable with its value in effect, in [`TABLE`]'s order.
    pub fn settings(&self) -> impl Iterator<Item = (&'static str, Setting)> + '_ {
        TABLE.iter().map(move |v| (v.name, (v.setting)(self)))
    }

    /// The configuration as environment variables: each variable with a value in effect, spelled so that
    /// [`Config::from_lookup`] reads it back to the same setting (the spool's START frame records them and
    /// `npuprof recover` rebuilds the worker's configuration from them).
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        self.settings()
            .filter_map(|(name, s)| {
                let v = match s {
                    Setting::Null => return None,
                    Setting::Bool(b) => if b { "1" } else { "0" }.to_string(),
                    Setting::Uint(n) => n.to_string(),
                    // Empty is unset (the blank rule).
                    Setting::Text(t) if t.is_empty() => return None,
                    Setting::Text(t) => String::from_utf8_lossy(&t).into_owned(),
                };
                Some((name, v))
            })
            .collect()
    }
}
