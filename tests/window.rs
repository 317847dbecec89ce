//! Capture windows through the C ABI (tests/c/window.c): NPUPROF_DELAY_STEPS / NPUPROF_MAX_STEPS /
//! NPUPROF_MAX_SECONDS, `npuprof_start_with` and its struct's size rule, a start at a step, and the stop
//! reason that names the bound.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the scripted client with `calls` under VLLM_TORCH_PROFILER_DIR=`root` and `env`.
fn script(root: &Path, calls: &[&str], env: &[(&str, &str)]) -> ClientRun {
    let lib = lib();
    let mut cmd = Command::new(window_client());
    clean_env(cmd.arg(&lib).args(calls));
    cmd.env("VLLM_TORCH_PROFILER_DIR", root);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let r = run_guarded(&mut cmd, std::time::Duration::from_secs(120));
    assert!(
        r.out.status.success() && !r.stdout.contains("FAIL"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    r
}

/// The `running` flag after each step the script printed, as a string of 0/1.
fn running(r: &ClientRun) -> String {
    r.values("STEP")
        .iter()
        .map(|v| v.split(' ').nth(1).unwrap().to_string())
        .collect()
}

/// (status, running) of call `i` (1-based).
fn call(r: &ClientRun, i: usize) -> (i32, i32) {
    let v = r.value(&format!("CALL{i}")).expect("call printed");
    let f: Vec<&str> = v.rsplitn(3, ' ').collect();
    (f[1].parse().unwrap(), f[0].parse().unwrap())
}

fn only_worker(root: &Path) -> (PathBuf, Vec<Value>, Value) {
    let ws = workers(root);
    assert_eq!(ws.len(), 1, "{ws:?}");
    let t = trace(&ws[0]);
    let m = json(&ws[0].join("profiler_metadata.json"));
    (ws[0].clone(), t, m)
}

fn steps(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("ProfilerStep#{i}")).collect()
}

#[test]
fn max_steps_ends_the_profile_and_names_the_bound() {
    let root = tempfile::tempdir().unwrap();
    let r = script(
        root.path(),
        &["start", "steps:6", "flush"],
        &[("NPUPROF_MAX_STEPS", "3")],
    );
    // The fourth step stops the profile instead of being recorded.
    assert_eq!(running(&r), "111000");
    let (_, t, m) = only_worker(root.path());
    assert_eq!(step_names(&t), steps(3));
    assert_eq!(
        m["npuprof"]["stop_reason"],
        "max steps reached (NPUPROF_MAX_STEPS or num_steps)"
    );
    assert_eq!(m["npuprof"]["window"]["max_steps"], 3);
    assert_eq!(m["config"]["NPUPROF_MAX_STEPS"], 3);
}

#[test]
fn a_delay_skips_steps_and_its_first_recorded_step_is_step_one() {
    let root = tempfile::tempdir().unwrap();
    let r = script(
        root.path(),
        &["start", "steps:7", "flush"],
        &[("NPUPROF_DELAY_STEPS", "2"), ("NPUPROF_MAX_STEPS", "3")],
    );
    // Not running after the start (call 1) nor during the two skipped steps; the third step starts it.
    assert_eq!(call(&r, 1), (0, 0));
    assert_eq!(running(&r), "0011100");
    let (_, t, m) = only_worker(root.path());
    assert_eq!(step_names(&t), steps(3));
    assert_eq!(m["npuprof"]["window"]["delay_steps"], 2);
    assert_eq!(m["npuprof"]["window"]["first_step"], 3);
}

#[test]
fn max_seconds_ends_a_profile_that_gets_no_step() {
    let root = tempfile::tempdir().unwrap();
    // No step at all after the start: the drain thread ends it.
    let r = script(
        root.path(),
        &["start", "step", "sleep:2500", "stop", "flush"],
        &[("NPUPROF_MAX_SECONDS", "1")],
    );
    assert_eq!(call(&r, 1), (0, 1));
    // Stopped by itself: the stop finds nothing to stop.
    assert_eq!(call(&r, 4), (3, 0));
    let (_, t, m) = only_worker(root.path());
    assert_eq!(step_names(&t), steps(1));
    assert_eq!(
        m["npuprof"]["stop_reason"],
        "max seconds reached (NPUPROF_MAX_SECONDS or max_seconds)"
    );
    let ns = |k: &str| m["npuprof"][k].as_u64().unwrap();
    let took = ns("stop_time_ns") - ns("start_time_ns");
    assert!(
        (1_000_000_000..2_400_000_000).contains(&took),
        "recorded {took} ns for a 1 s bound"
    );
}

#[test]
fn the_old_logic_keeps_its_stop_step_and_takes_the_time_bound() {
    let root = tempfile::tempdir().unwrap();
    let r = script(
        root.path(),
        &["steps:2", "sleep:2500", "step", "flush"],
        &[
            ("PROFILER_TOKEN_THRESHOLD", "1"),
            ("PROFILER_STOP_STEP", "1000"),
            ("NPUPROF_MAX_STEPS", "1"),
            ("NPUPROF_MAX_SECONDS", "1"),
        ],
    );
    // NPUPROF_MAX_STEPS does not cut the old logic's profile (PROFILER_STOP_STEP does); the time bound does.
    assert_eq!(running(&r), "11");
    assert_eq!(call(&r, 3), (0, 0));
    let (_, t, m) = only_worker(root.path());
    assert_eq!(step_names(&t), steps(2));
    assert_eq!(m["npuprof"]["started_by"], "PROFILER_TOKEN_THRESHOLD");
    assert!(m["npuprof"]["stop_reason"]
        .as_str()
        .unwrap()
        .starts_with("max seconds"));
}

#[test]
fn bad_window_values_warn_once_and_take_the_default() {
    let root = tempfile::tempdir().unwrap();
    let r = script(
        root.path(),
        &["start", "steps:4", "flush"],
        &[
            ("NPUPROF_MAX_STEPS", "three"),
            ("NPUPROF_DELAY_STEPS", "-1"),
            ("NPUPROF_MAX_SECONDS", "1e3"),
        ],
    );
    for v in [
        "NPUPROF_MAX_STEPS",
        "NPUPROF_DELAY_STEPS",
        "NPUPROF_MAX_SECONDS",
    ] {
        assert_eq!(
            r.stderr.matches(v).count(),
            1,
            "one warning for {v}:\n{}",
            r.stderr
        );
    }
    // The defaults: no delay, no bound.
    assert_eq!(running(&r), "1111");
    let (_, _, m) = only_worker(root.path());
    assert_eq!(m["config"]["NPUPROF_MAX_STEPS"], 0);
}

#[test]
fn start_with_sets_steps_tag_and_output_root_for_one_profile() {
    let root = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let spec = format!("with:steps=2,tag=decode-8k,dir={}", other.path().display());
    let r = script(
        root.path(),
        &[&spec, "steps:4", "start", "steps:4", "stop", "flush"],
        &[("NPUPROF_MAX_STEPS", "3")],
    );
    // The options' 2 steps, then a plain start with the environment's 3.
    assert_eq!(running(&r), "11001110");
    let ws = workers(other.path());
    assert_eq!(ws.len(), 1);
    let name = ws[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("decode-8k_"), "{name}");
    assert_eq!(step_names(&trace(&ws[0])), steps(2));
    let m = json(&ws[0].join("profiler_metadata.json"));
    assert_eq!(m["npuprof"]["window"]["tag"], "decode-8k");
    let (_, t, _) = only_worker(root.path());
    assert_eq!(step_names(&t), steps(3));
    // Both are results msprof-analyze and our checker accept.
    check_profile(other.path());
}

#[test]
fn none_lifts_the_environments_bound_and_null_is_a_plain_start() {
    let root = tempfile::tempdir().unwrap();
    let r = script(
        root.path(),
        &[
            "with:steps=none",
            "steps:5",
            "stop",
            "null",
            "steps:5",
            "flush",
        ],
        &[("NPUPROF_MAX_STEPS", "2")],
    );
    assert_eq!(running(&r), "1111111000");
}

#[test]
fn start_with_refuses_bad_options_by_name() {
    let root = tempfile::tempdir().unwrap();
    let r = script(
        root.path(),
        &[
            "with:tag=../up",
            "with:size=4",
            "with:extra=1",
            "with:secs=99999999",
            "with:delay=2,at=5",
            "with:extra=0",
        ],
        &[],
    );
    for (i, needle) in [
        (1, "tag \"../up\""),
        (2, "size is 4"),
        (3, "does not know"),
        (4, "max_seconds 99999999"),
        (5, "not both"),
    ] {
        assert_eq!(call(&r, i).0, 4, "call {i}");
        let e = r.value(&format!("ERROR{i}")).unwrap();
        assert!(e.contains(needle), "call {i}: {e}");
    }
    // A larger struct whose unknown fields are zero is accepted.
    assert_eq!(call(&r, 6), (0, 1));
    assert!(workers(root.path()).len() == 1);
}

#[test]
fn a_start_at_a_step_waits_for_it_and_stop_cancels_a_waiting_start() {
    let root = tempfile::tempdir().unwrap();
    let r = script(
        root.path(),
        &[
            "with:at=4,steps=2",
            "start",
            "steps:6",
            "with:delay=100",
            "stop",
            "stop",
            "flush",
        ],
        &[],
    );
    // A second start while one waits is refused.
    assert_eq!(call(&r, 2).0, 2);
    // The process counts from its first counted step: steps 4 and 5 are recorded.
    assert_eq!(running(&r), "000110");
    // The waiting start is cancelled by the first stop; the second finds nothing.
    assert_eq!(call(&r, 5), (0, 0));
    assert_eq!(call(&r, 6), (3, 0));
    let (_, t, m) = only_worker(root.path());
    assert_eq!(step_names(&t), steps(2));
    assert_eq!(m["npuprof"]["window"]["first_step"], 4);
}

#[test]
fn shutdown_cancels_a_waiting_start() {
    let root = tempfile::tempdir().unwrap();
    let r = script(
        root.path(),
        &["with:delay=2", "shutdown", "steps:5", "flush"],
        &[],
    );
    assert_eq!(call(&r, 2).0, 0);
    // Without the cancel, the third step would have started a profile after the shutdown.
    assert_eq!(running(&r), "00000");
    assert!(workers(root.path()).is_empty());
}

#[test]
fn the_watchers_step_count_survives_a_profile_and_a_step_already_passed_starts_now() {
    let root = tempfile::tempdir().unwrap();
    // With NPUPROF_CONTROL=1 every step is counted, also after a profile ran (a start used to stop the count).
    let r = script(
        root.path(),
        &[
            "steps:3",
            "start",
            "steps:3",
            "stop",
            "steps:5",
            "with:at=9",
            "steps:2",
            "stop",
            "flush",
        ],
        &[("NPUPROF_CONTROL", "1")],
    );
    // The count is 11 when the start asks for step 9: it starts at once (call 6), its first step is 12.
    assert_eq!(call(&r, 6), (0, 1));
    let ws = workers(root.path());
    assert_eq!(ws.len(), 2);
    let firsts: Vec<u64> = ws
        .iter()
        .map(|d| {
            json(&d.join("profiler_metadata.json"))["npuprof"]["window"]["first_step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let mut firsts = firsts;
    firsts.sort();
    assert_eq!(firsts, [4, 12]);
}

#[test]
fn a_size_that_cuts_a_field_is_refused_before_any_pointer_is_read() {
    let root = tempfile::tempdir().unwrap();
    let spec = format!("with:size=44,dir={}", root.path().display());
    let r = script(root.path(), &[&spec, "with:size=12"], &[]);
    for i in [1, 2] {
        assert_eq!(call(&r, i), (4, 0), "call {i}");
        assert!(r
            .value(&format!("ERROR{i}"))
            .unwrap()
            .contains("a multiple of 8"));
    }
}
