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
    l.profiler_level()
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
  "profiler_parameters": {{"profiler_level": "{}", "activities": {}, "with_stack": {}, "profile_memory": {}, "record_shapes": {}, "with_flops": {}, "is_set_schedule": false, "export_type": {}}},
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
            crate::config::Level::PROFILER_LEVEL_NONE
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
        match (c.export_type.text(), super::result::writes_db(p)) {
            (true, true) => r#"["text", "db"]"#,
            (false, true) => r#"["db"]"#,
            _ => r#"["text"]"#,
        },
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

/// The `"npuprof"` object's first lines: who wrote the profile, how it started and stopped, and when.
fn identity_lines(
    p: &crate::profile::Profile,
    start_ns: u64,
    stop_ns: u64,
    reason: crate::profile::StopReason,
) -> String {
    let trigger = match p.config.trigger {
        crate::config::Trigger::Manual => "manual",
        crate::config::Trigger::Auto { .. } => "token_threshold",
    };
    format!(
        r#"    "version": "{}",
    "backend": "{}",
    "clock": "{}",
    "pid": {},
    "worker": {},
    "rank": {},
    "device_id": {},
    "trigger": "{trigger}",
    "started_by": "{}",
    "stop_reason": "{}",
    "window": {{"delay_steps": {}, "max_steps": {}, "max_seconds": {}, "first_step": {}, "tag": {}}},
    "start_time_ns": {start_ns},
    "stop_time_ns": {stop_ns},
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
        p.window.delay_steps,
        p.window.max_steps,
        p.window.max_seconds,
        p.first_step,
        p.tag
            .as_deref()
            .map_or("null".to_string(), |t| json::string(t.as_bytes())),
    )
}

/// The `"npuprof"` object's counts: steps, threads, slices, records recorded and dropped, and sizes.
fn count_lines(c: &crate::profile::Counters, s: &Summary) -> String {
    format!(
        r#"    "steps": {},
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
    "trace_files": {{{}}},
    "pftrace_cut_events": {},
"#,
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
        s.trace_files
            .iter()
            .map(|(n, b)| format!("\"{n}\": {b}"))
            .collect::<Vec<_>>()
            .join(", "),
        s.pftrace_cut_events,
    )
}

/// The `"npuprof"` object's last lines: how complete the result is (truncation, spool errors, recovery, the
/// device data's stage, how current the counters are).
fn status_lines(
    s: &Summary,
    spool_error: &Option<String>,
    stage: DeviceStage,
    (recovered, counters_as_of_ns): (bool, Option<u64>),
) -> String {
    let opt = |o: &Option<String>| {
        o.as_deref()
            .map_or("null".to_string(), |m| json::string(m.as_bytes()))
    };
    format!(
        r#"    "truncated": {},
    "spool_error": {},
    "spool_damage": {},
    "export_ms": {},
    "database": {},
    "recovered": {},
    "device_data": "{}",
    "counters_as_of_ns": {},
    "counters_note": {}
"#,
        b(s.truncated),
        opt(spool_error),
        opt(&s.spool_damage),
        s.elapsed_ms,
        s.database.as_deref().unwrap_or("null"),
        b(recovered),
        stage.name(),
        counters_as_of_ns.map_or("null".to_string(), |n| n.to_string()),
        opt(&counters_as_of_ns.map(|_| {
            "the process ended without a stop: the drop counters are as of counters_as_of_ns, the last time it \
             wrote them (about every second); drops after that were never written"
                .to_string()
        })),
    )
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
    recovery: (bool, Option<u64>),
) -> String {
    format!(
        r#"{{
  "npuprof": {{
{}{}{}  }},
  "device": {{{}}},{}
  "config": {{{}}}
}}
"#,
        identity_lines(p, start_ns, stop_ns, reason),
        count_lines(c, s),
        status_lines(s, spool_error, stage, recovery),
        device_meta(p, dev),
        parallel_group_info(&crate::device::groups::snapshot()),
        config_block(p.config),
    )
}

/// `"parallel_group_info"` as torch_npu writes it (the communicator's name → `group_name`, `group_rank`,
/// `global_ranks`), from what the process told npuprof (`npuprof_set_group`); nothing when it told nothing.
fn parallel_group_info(groups: &[crate::device::GroupInfo]) -> String {
    if groups.is_empty() {
        return String::new();
    }
    format!(
        "\n  \"parallel_group_info\": {},",
        super::group_info::object(groups)
    )
}

/// The `"config"` object: every variable of `config::VARIABLES` with its value in effect.
fn config_block(c: &crate::config::Config) -> String {
    use crate::config::Setting;
    let parts: Vec<String> = c
        .settings()
        .map(|(name, v)| {
            let v = match v {
                Setting::Null => "null".to_string(),
                Setting::Bool(v) => b(v).to_string(),
                Setting::Uint(n) => n.to_string(),
                Setting::Text(t) => json::string(&t),
            };
            format!("\n    \"{name}\": {v}")
        })
        .collect();
    format!("{}\n  ", parts.join(","))
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
