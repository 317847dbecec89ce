//! The process lifecycle around a profile (tests/c/lifecycle.c, loaded by dlopen): exiting right after
//! `npuprof_stop`, a signal handler re-entering a control call, ring memory returned at shutdown, and every
//! record that does not reach the trace counted by reason.
//!
//! A client that hangs is killed after a generous deadline (a real hang, never a timing assertion).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

fn client() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_c("lifecycle", &["tests/c/lifecycle.c"], &[], &[]))
        .clone()
}

/// Runs the lifecycle client with `lib`, `args` and `env` (only `common::clean_env`'s variables kept), killing it if
/// it has not ended after 120 s.
fn run_lifecycle(lib: &Path, args: &[&str], env: &[(&str, &str)]) -> ClientRun {
    let mut cmd = Command::new(client());
    common::clean_env(cmd.arg(lib).args(args)).envs(env.iter().copied());
    common::run_guarded(&mut cmd, Duration::from_secs(120))
}

/// [`run_lifecycle`], creating the file `release` once the client's stderr contains `needle`
/// (`common::run_guarded_releasing`).
fn run_lifecycle_releasing(
    lib: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    needle: &str,
    release: &Path,
) -> ClientRun {
    let mut cmd = Command::new(client());
    common::clean_env(cmd.arg(lib).args(args)).envs(env.iter().copied());
    common::run_guarded_releasing(&mut cmd, Duration::from_secs(120), Some((needle, release)))
}

/// Item 1 of issue 14: `npuprof_stop()` then `exit()` at once. The export is held (fault injection
/// `hold@export.run`) until the exit hook has logged that it waits, so it is certainly still queued or
/// running when the hook runs, whatever the timing: the hook waits for it (saying so once) and the result
/// is complete.
#[test]
fn exit_right_after_stop_waits_for_the_export() {
    let root = tempfile::tempdir().unwrap();
    let release = root.path().join("release");
    let faults = format!("hold@export.run={}", release.display());
    let r = run_lifecycle_releasing(
        &lib_faults(),
        &["stop_exit", "2000"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_TEST_FAULTS", &faults),
        ],
        "waiting up to",
        &release,
    );
    r.assert_ok();
    let waits: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("exiting while") && l.contains("waiting up to"))
        .collect();
    assert_eq!(waits.len(), 1, "one log line for the wait:\n{}", r.stderr);
    let dir = r.dir();
    let t = trace(&dir);
    assert_eq!(slices(&t, "work").len(), 4000, "{}", r.stderr);
    assert_eq!(step_names(&t), ["ProfilerStep#1", "ProfilerStep#2"]);
    let m = json(&dir.join("profiler_metadata.json"));
    assert_eq!(m["npuprof"]["stop_reason"], "npuprof_stop");
    assert_eq!(m["npuprof"]["recorded_records"], 2 + 2000 * 2 * 3);
    assert!(!dir.join("FRAMEWORK/npuprof.spool").exists());
    check_profile_no_cluster(root.path());
}

/// Issue 16: `npuprof_flush` and `npuprof_shutdown` are bounded by `NPUPROF_FLUSH_TIMEOUT_S`. The export is
/// held (fault injection `hold@export.run`) until a file exists that the client creates only after both calls
/// have returned, so no sleep decides the outcome: each returns `NPUPROF_ERR_IO` with one log line naming
/// the variable, and once the hold ends a flush returns 0 and the profile is complete (nothing lost).
#[test]
fn flush_and_shutdown_return_after_the_flush_timeout_and_lose_nothing() {
    let root = tempfile::tempdir().unwrap();
    let release = root.path().join("release");
    let faults = format!("hold@export.run={}", release.display());
    let r = run_lifecycle(
        &lib_faults(),
        &["flush_timeout", release.to_str().unwrap()],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_FLUSH_TIMEOUT_S", "1"),
            ("NPUPROF_TEST_FAULTS", &faults),
        ],
    );
    r.assert_ok();
    // NPUPROF_ERR_IO = 5, while the export was certainly still held.
    assert_eq!(r.value("FLUSH_HELD").unwrap(), "5", "{}", r.stderr);
    assert_eq!(r.value("SHUTDOWN_HELD").unwrap(), "5", "{}", r.stderr);
    // Both returned while the export was held (a wait that outlived the hold would find it written).
    assert_eq!(r.value("WRITTEN_WHILE_HELD").unwrap(), "0", "{}", r.stderr);
    assert_eq!(r.value("FLUSH_AFTER").unwrap(), "0", "{}", r.stderr);
    let retries: usize = r.value("RETRIES").unwrap().parse().unwrap();
    let timed_out = |call: &str| {
        r.stderr
            .lines()
            .filter(|l| {
                l.contains(&format!(
                    "{call}: profiles are still being written after 1s"
                )) && l.contains("NPUPROF_FLUSH_TIMEOUT_S")
            })
            .count()
    };
    // One line per call that timed out: the held flush, each retry that timed out, and the shutdown.
    assert_eq!(timed_out("npuprof_flush"), 1 + retries, "{}", r.stderr);
    assert_eq!(timed_out("npuprof_shutdown"), 1, "{}", r.stderr);
    let dir = r.dir();
    let t = trace(&dir);
    assert_eq!(slices(&t, "work").len(), 300, "{}", r.stderr);
    assert_eq!(
        step_names(&t),
        ["ProfilerStep#1", "ProfilerStep#2", "ProfilerStep#3"]
    );
    let m = json(&dir.join("profiler_metadata.json"));
    assert_eq!(m["npuprof"]["stop_reason"], "npuprof_stop");
    assert!(!dir.join("FRAMEWORK/npuprof.spool").exists());
    check_profile_no_cluster(root.path());
}

/// The exit hook is registered at every start (so that it runs before the destructors of whatever a backend
/// loaded); only the first one to run may wait. Six profiles whose exports are held (fault injection
/// `hold@export.run` on a file nobody creates: the exit ends the hold), then exit(): the exports are
/// certainly unfinished, so the hook certainly gives up after NPUPROF_FLUSH_TIMEOUT_S; one wait, one log
/// line (before: six waits of NPUPROF_FLUSH_TIMEOUT_S each, six pairs of lines).
#[test]
fn many_profiles_then_exit_wait_once_not_once_per_start() {
    let root = tempfile::tempdir().unwrap();
    let faults = format!(
        "hold@export.run={}",
        root.path().join("never-released").display()
    );
    let r = run_lifecycle(
        &lib_faults(),
        &["profiles_exit", "6"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_FLUSH_TIMEOUT_S", "1"),
            ("NPUPROF_TEST_FAULTS", &faults),
        ],
    );
    r.assert_ok();
    let waits = r
        .stderr
        .matches("stopped profile(s) are still being written")
        .count();
    let gave_up = r.stderr.matches("were not finished within").count();
    assert_eq!((waits, gave_up), (1, 1), "{}", r.stderr);
}

/// A Stop whose handling panics in the drain (before it reaches the export thread) still ends its "being
/// written" count: after a flush, the exit hook has nothing to wait for and says nothing (before: it
/// announced a profile still being written that no thread would ever write).
#[test]
fn a_stop_abandoned_by_a_drain_panic_is_not_waited_for_at_exit() {
    let root = tempfile::tempdir().unwrap();
    let r = run_lifecycle(
        &lib_faults(),
        &["flushed_exit"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_TEST_FAULTS", "panic@drain.msg*2"),
            ("RUST_BACKTRACE", "0"),
        ],
    );
    r.assert_ok();
    assert_eq!(
        r.stderr
            .matches("internal error in the npuprof-drain thread")
            .count(),
        2,
        "{}",
        r.stderr
    );
    // The abandoned profile is reported by the flush (NPUPROF_ERR_INTERNAL), not waited for at exit.
    assert_eq!(r.value("FLUSH").unwrap(), "7", "{}", r.stderr);
    assert!(!r.stderr.contains("still being written"), "{}", r.stderr);
}

/// exit() after npuprof_shutdown with NPUPROF_CONTROL=1: the exit hook reads the configuration without
/// starting the watcher again (before: it did, inside its own control lock, and logged a bogus "re-entered"
/// refusal).
#[test]
fn exit_after_shutdown_with_control_logs_nothing_bogus() {
    let root = tempfile::tempdir().unwrap();
    let r = run_lifecycle(
        &lib(),
        &["shutdown_exit"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_CONTROL", "1"),
        ],
    );
    r.assert_ok();
    assert!(!r.stderr.contains("re-entered"), "{}", r.stderr);
    assert!(!r.stderr.contains("no watcher"), "{}", r.stderr);
}

/// Item 10 of issue 14: a SIGUSR1 handler calling `npuprof_shutdown` interrupts `npuprof_start` and then
/// `npuprof_stop` on the same thread while they hold the control lock (raised by a fault-injection point
/// there): the handler's call returns NPUPROF_ERR_BUSY at once, the interrupted calls complete, the
/// process ends and its profile is whole.
#[test]
fn a_signal_handler_reentering_start_or_stop_gets_busy_not_a_deadlock() {
    let root = tempfile::tempdir().unwrap();
    let sig = libc::SIGUSR1.to_string();
    let faults = format!("raise@session.start.locked={sig},raise@session.stop.locked={sig}");
    let r = run_lifecycle(
        &lib_faults(),
        &["sig_reenter"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_TEST_FAULTS", &faults),
        ],
    );
    r.assert_ok();
    assert_eq!(r.value("START_HANDLER_CALLS").as_deref(), Some("1"));
    assert_eq!(r.value("STOP_HANDLER_CALLS").as_deref(), Some("2"));
    assert_eq!(r.value("START_HANDLER_RC").as_deref(), Some("8"));
    assert_eq!(r.value("STOP_HANDLER_RC").as_deref(), Some("8"));
    assert!(
        r.stderr.contains("re-entered"),
        "the refused call is logged:\n{}",
        r.stderr
    );
    let t = trace(&r.dir());
    assert_eq!(slices(&t, "work").len(), 1);
    assert_eq!(step_names(&t), ["ProfilerStep#1"]);
}

/// Item 11 of issue 14 (the cap): an NPUPROF_BUFFER_KB above the documented maximum warns and uses the
/// maximum (256 MiB per thread).
#[test]
fn a_huge_buffer_kb_is_capped_with_a_warning() {
    let root = tempfile::tempdir().unwrap();
    let r = run_lifecycle(
        &lib(),
        &["start_stop"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_BUFFER_KB", "4194304"),
        ],
    );
    r.assert_ok();
    let warned = r
        .stderr
        .lines()
        .filter(|l| l.contains("NPUPROF_BUFFER_KB") && l.contains("using 262144"))
        .count();
    assert_eq!(warned, 1, "{}", r.stderr);
    let m = json(&r.dir().join("profiler_metadata.json"));
    assert_eq!(m["config"]["NPUPROF_BUFFER_KB"], 262144);
}

/// Item 11 of issue 14 (memory): four live threads with 64 MiB rings; after `npuprof_shutdown` the resident
/// set drops by most of the 256 MiB, and the same threads record again into the next profile.
#[test]
fn shutdown_returns_ring_memory_and_threads_record_again_afterwards() {
    let root = tempfile::tempdir().unwrap();
    let r = run_lifecycle(
        &lib(),
        &["rings", "4"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_BUFFER_KB", "65536"),
        ],
    );
    r.assert_ok();
    let kb = |k: &str| r.value(k).unwrap().parse::<i64>().unwrap();
    let (before, after) = (kb("RSS_BEFORE_SHUTDOWN_KB"), kb("RSS_AFTER_SHUTDOWN_KB"));
    eprintln!("resident: {before} KiB before shutdown, {after} KiB after");
    assert!(before > 4 * 65536, "the rings are resident: {before} KiB");
    assert!(
        before - after >= 3 * 65536,
        "ring memory returned at shutdown: {before} KiB -> {after} KiB"
    );
    let dirs = r.values("DIR");
    assert_eq!(dirs.len(), 2);
    for d in dirs {
        let t = trace(Path::new(&d));
        assert_eq!(slices(&t, "worker_task").len(), 4, "{d}");
    }
}

/// Item 6 of issue 14: a trace cut at its share of NPUPROF_MAX_DISK_MB. Every record the client issued (it
/// counts them itself) is in the trace or counted as dropped, by reason, exactly; and with
/// NPUPROF_KEEP_SPOOL=1 the kept spool counts against the cap, so the whole result stays within it.
#[test]
fn a_cut_trace_counts_every_record_it_left_out() {
    let root = tempfile::tempdir().unwrap();
    let r = run_lifecycle(
        &lib(),
        &["cut", "4000", "3"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_MAX_DISK_MB", "2"),
            ("NPUPROF_KEEP_SPOOL", "1"),
        ],
    );
    r.assert_ok();
    let issued: u64 = r.value("ISSUED").unwrap().parse().unwrap();
    assert_eq!(issued, 3 + 3 * 4000 * 3);
    let dir = r.dir();
    let t = trace(&dir);
    // In the trace: a worker_task slice is its two records, a mark one, a step one.
    let in_trace = 2 * slices(&t, "worker_task").len() as u64
        + t.iter()
            .filter(|e| e["ph"] == "i" && e["name"] == "tick")
            .count() as u64
        + step_names(&t).len() as u64;
    let m = json(&dir.join("profiler_metadata.json"));
    let m = &m["npuprof"];
    let dropped = m["dropped_records"].as_object().unwrap();
    let counted: u64 = dropped.values().map(|v| v.as_u64().unwrap()).sum();
    eprintln!("issued {issued}, in trace {in_trace}, dropped {dropped:?}");
    assert_eq!(m["truncated"], true, "{m}");
    assert!(dropped["trace_cut"].as_u64().unwrap() > 0, "{m}");
    assert_eq!(issued, in_trace + counted, "{m}");
    // The cap holds with the spool kept: every file of the result together.
    let total: u64 = walk_files(&dir)
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert!(dir.join("FRAMEWORK/npuprof.spool").is_file());
    assert!(
        total <= 2 << 20,
        "{total} bytes on disk for NPUPROF_MAX_DISK_MB=2"
    );
}

fn walk_files(d: &Path) -> Vec<PathBuf> {
    let mut v = vec![];
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk_files(&p));
        } else {
            v.push(p);
        }
    }
    v
}
