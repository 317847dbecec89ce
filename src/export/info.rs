//! The two JSON documents of a result written by hand (no serializer dependency): `profiler_info_{rank}.json`
//! and `profiler_metadata.json` with npuprof's counts, the configuration and the device's status.

use super::*;

fn b(v: bool) -> &'static str {
    if v {
        "true"
    } else {
        "false"
    }
}

/// MindSpore's `profiler_level` spelling.
fn level_name(l: crate::config::Level) -> &'static str {
    match l {
        crate::config::Level::Level0 => "Level0",
        crate::config::Level::Level1 => "Level1",
        crate::config::Level::Level2 => "Level2",
    }
}

pub(super) fn profiler_info(
    p: &crate::profile::Profile,
    start_ns: u64,
    stop_ns: u64,
    s: &Summary,
) -> String {
    let c = p.config;
    // The backend's kind, not whether this profile's device data arrived: as torch_npu writes the activities
    // it was asked for.
    let device = p.backend.collects_device();
    format!(
        r#"{{
  "profiler_parameters": {{"profiler_level": "{}", "activities": {}, "with_stack": {}, "profile_memory": {}, "record_shapes": {}, "with_flops": {}, "is_set_schedule": false, "export_type": ["text"]}},
  "ms_profiler_info": {{"rank_id": {}, "device_id": {}}},
  "cann_profiler_info": {{}},
  "analysis_cost_time": {{"export_ms": {}}},
  "ms_version": "",
  "cann_version": "",
  "jit_level": "",
  "start_time_ns": {start_ns},
  "end_time_ns": {stop_ns},
  "npuprof_version": "{}",
  "backend": "{}"
}}
"#,
        if device {
            level_name(c.level)
        } else {
            "LevelNone"
        },
        if device {
            r#"["CPU", "NPU"]"#
        } else {
            r#"["CPU"]"#
        },
        b(c.with_stack),
        b(c.with_profile_memory),
        b(c.record_shapes),
        b(c.with_flops),
        p.rank,
        p.device_id,
        s.elapsed_ms,
        env!("CARGO_PKG_VERSION"),
        p.backend.name()
    )
}

/// Records made while recording that are not in the result, all reasons together (see `dropped_records`).
pub(super) fn not_in_result(c: &crate::profile::Counters, s: &Summary) -> u64 {
    c.ring_full
        + c.after_thread_exit
        + c.outside_window
        + c.over_disk_cap
        + s.trace_cut_records
        + s.unpaired_records
        + s.unknown_records
}

/// `"begin": n, "end": n, ...`: the drops of `ring_full`, `after_thread_exit`, `outside_profile_window` and
/// `over_disk_cap` by record kind (they sum to those four).
fn dropped_by_kind(c: &crate::profile::Counters) -> String {
    crate::profile::KIND_KEYS
        .iter()
        .map(|&(k, name)| format!("\"{name}\": {}", c.dropped_by_kind[k as usize]))
        .collect::<Vec<_>>()
        .join(", ")
}

#[allow(clippy::too_many_arguments)]
pub(super) fn metadata(
    p: &crate::profile::Profile,
    start_ns: u64,
    stop_ns: u64,
    reason: crate::profile::StopReason,
    c: &crate::profile::Counters,
    s: &Summary,
    spool_error: &Option<String>,
    (dev, stage): (&DeviceResult, DeviceStage),
    (recovered, counters_as_of_ns): (bool, Option<u64>),
) -> String {
    let cfg = p.config;
    let (trigger, threshold, stop_step) = match cfg.trigger {
        crate::config::Trigger::Manual => ("manual", "null".to_string(), "null".to_string()),
        crate::config::Trigger::Auto {
            threshold,
            stop_step,
        } => (
            "token_threshold",
            threshold.to_string(),
            stop_step.to_string(),
        ),
    };
    let opt = |o: &Option<String>| {
        o.as_deref()
            .map_or("null".to_string(), |m| json::string(m.as_bytes()))
    };
    format!(
        r#"{{
  "npuprof": {{
    "version": "{}",
    "backend": "{}",
    "clock": "{}",
    "pid": {},
    "worker": {},
    "rank": {},
    "device_id": {},
    "trigger": "{trigger}",
    "started_by": "{}",
    "stop_reason": "{}",
    "start_time_ns": {start_ns},
    "stop_time_ns": {stop_ns},
    "steps": {},
    "threads": {},
    "slices": {},
    "recorded_records": {},
    "dropped_records": {{"ring_full": {}, "after_thread_exit": {}, "outside_profile_window": {}, "over_disk_cap": {}, "trace_cut": {}, "unpaired": {}, "unknown_kind": {}}},
    "dropped_by_kind": {{{}}},
    "trace_events_cut": {},
    "unbalanced_pops": {},
    "lost_range_ends": {},
    "lost_range_begins": {},
    "ranges_closed_at_stop": {},
    "unknown_records": {},
    "spool_bytes": {},
    "drain_cpu_ms": {:.3},
    "trace_view_bytes": {},
    "truncated": {},
    "spool_error": {},
    "spool_damage": {},
    "export_ms": {},
    "recovered": {},
    "device_data": "{}",
    "counters_as_of_ns": {},
    "counters_note": {}
  }},
  "device": {{{}}},
  "config": {{
    "VLLM_TORCH_PROFILER_DIR": {},
    "PROFILER_TOKEN_THRESHOLD": {threshold},
    "PROFILER_STOP_STEP": {stop_step},
    "VLLM_TORCH_PROFILER_RECORD_SHAPES": {},
    "VLLM_TORCH_PROFILER_WITH_PROFILE_MEMORY": {},
    "VLLM_TORCH_PROFILER_WITH_STACK": {},
    "VLLM_TORCH_PROFILER_WITH_FLOPS": {},
    "NPUPROF_BACKEND": "{}",
    "NPUPROF_BUFFER_KB": {},
    "NPUPROF_MAX_DISK_MB": {},
    "NPUPROF_MAX_DEVICE_RECORDS": {},
    "NPUPROF_KEEP_SPOOL": {},
    "NPUPROF_LEVEL": "{}",
    "NPUPROF_AIC_METRICS": {},
    "NPUPROF_MSPROFTX": {},
    "NPUPROF_MSPROF_TIMEOUT_S": {}
  }}
}}
"#,
        env!("CARGO_PKG_VERSION"),
        p.backend.name(),
        crate::record::clock::source_name(),
        p.pid,
        json::string(p.worker.as_bytes()),
        p.rank,
        p.device_id,
        if p.auto {
            "PROFILER_TOKEN_THRESHOLD"
        } else {
            "npuprof_start"
        },
        reason.name(),
        s.steps,
        s.threads,
        s.slices,
        c.recorded,
        c.ring_full,
        c.after_thread_exit,
        c.outside_window,
        c.over_disk_cap,
        s.trace_cut_records,
        s.unpaired_records,
        s.unknown_records,
        dropped_by_kind(c),
        s.trace_cut_events,
        c.unbalanced_pops,
        s.lost_range_ends,
        s.lost_range_begins,
        s.closed_at_stop,
        s.unknown_records,
        c.spool_bytes,
        c.drain_cpu_ns as f64 / 1e6,
        s.trace_bytes,
        b(s.truncated),
        opt(spool_error),
        opt(&s.spool_damage),
        s.elapsed_ms,
        b(recovered),
        stage.name(),
        counters_as_of_ns.map_or("null".to_string(), |n| n.to_string()),
        opt(&counters_as_of_ns.map(|_| {
            "the process ended without a stop: the drop counters are as of counters_as_of_ns, the last time it \
             wrote them (about every second); drops after that were never written"
                .to_string()
        })),
        device_meta(p, dev),
        json::string(
            cfg.profiler_dir
                .as_deref()
                .map(|d| d.as_os_str().as_encoded_bytes())
                .unwrap_or(b"")
        ),
        b(cfg.record_shapes),
        b(cfg.with_profile_memory),
        b(cfg.with_stack),
        b(cfg.with_flops),
        cfg.backend.name(),
        cfg.buffer_kb,
        cfg.max_disk_mb,
        cfg.max_device_records,
        b(cfg.keep_spool),
        cfg.level.name(),
        cfg.aic_metrics
            .map_or("null".to_string(), |m| json::string(m.name().as_bytes())),
        b(cfg.msproftx),
        cfg.msprof_timeout_s,
    )
}

/// The `"device"` object: the backend, the device, what the backend reported, the device task count.
fn device_meta(p: &crate::profile::Profile, dev: &DeviceResult) -> String {
    let mut parts = vec![
        format!("\n    \"backend\": \"{}\"", p.backend.name()),
        format!("\n    \"device_id\": {}", p.device_id),
        format!("\n    \"device_tasks\": {}", dev.kernels.len()),
    ];
    for (k, v) in &dev.meta {
        parts.push(format!("\n    {}: {v}", json::string(k.as_bytes())));
    }
    format!("{}\n  ", parts.join(","))
}
