//! Issue 15, item 5: a device library whose stop or flush blocks (`msptiActivityFlushAll`, `aclprofStop`,
//! `aclprofFinalize` that do not return) never blocks the host: `npuprof_stop` returns at once, `output_dir`
//! and `fork()` work meanwhile, `exit()` returns (while recording too, and from another thread), a new start
//! is refused with a named error instead of calling the vendor concurrently, and the profile is written
//! with its host data and the abandoned vendor call named in `profiler_metadata.json`.
//!
//! The fakes' opt-in hang mode (tests/c/fake_hang.h: `FAKE_MSPTI_HANG`, `FAKE_ACL_HANG`) blocks the named
//! call for N seconds or forever. No timing is asserted: a call that blocks forever returning at all is the
//! proof; the client is killed after a generous deadline only to report a real hang.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The fake CANN libraries (aclprof) in their own directory (other test binaries build theirs elsewhere).
fn cann_lib() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_dir().join("ctests/vendor-stop/cann/lib64");
        std::fs::create_dir_all(&dir).unwrap();
        build_c(
            "vendor-stop/cann/lib64/libmsprofiler.so",
            &["tests/c/fake_msprofiler.c"],
            &[],
            &["-shared", "-fPIC", "-Wl,-soname,libmsprofiler.so"],
        );
        build_c(
            "vendor-stop/cann/lib64/libascendcl.so",
            &["tests/c/fake_ascendcl.c"],
            &[],
            &[
                "-shared",
                "-fPIC",
                "-Wl,-soname,libascendcl.so",
                &format!("-L{}", dir.display()),
                "-lmsprofiler",
                "-Wl,-rpath,$ORIGIN",
            ],
        );
        dir
    })
}

fn mspti_lib() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_dir().join("ctests/vendor-stop/mspti/lib64");
        std::fs::create_dir_all(&dir).unwrap();
        build_c(
            "vendor-stop/mspti/lib64/libmspti.so",
            &["tests/c/fake_mspti.c"],
            &[],
            &["-shared", "-fPIC", "-Wl,-soname,libmspti.so"],
        );
        dir
    })
}

fn client() -> PathBuf {
    static C: OnceLock<PathBuf> = OnceLock::new();
    C.get_or_init(|| {
        build_c(
            "acl_client_vendor_stop",
            &["tests/c/acl_client.c"],
            &[],
            &[],
        )
    })
    .clone()
}

#[derive(Clone, Copy, PartialEq)]
enum Vendor {
    Acl,
    Mspti,
}

struct Run {
    out: ClientRun,
    log: Vec<String>,
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Run {
    /// The profile directories under the results root, oldest first.
    fn workers(&self) -> Vec<PathBuf> {
        let mut w = workers(&self.root);
        w.sort();
        w
    }
    fn meta(dir: &Path) -> Value {
        json(&dir.join("profiler_metadata.json"))
    }
    fn context(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}\nvendor log:\n{}",
            self.out.stdout,
            self.out.stderr,
            self.log.join("\n")
        )
    }
}

/// Runs the client with the backend of `vendor` and `env`, killing it if it has not ended after 120 s (a
/// real hang: the fakes block forever unless released).
fn go(vendor: Vendor, env: &[(&str, &str)], cmds: &[&str]) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("prof");
    let log = tmp.path().join("calls.log");
    let lib = lib();
    let (libdir, backend, log_var) = match vendor {
        Vendor::Acl => (cann_lib(), "acl", "FAKE_ACL_LOG"),
        Vendor::Mspti => (mspti_lib(), "mspti", "FAKE_MSPTI_LOG"),
    };
    let preload = match vendor {
        Vendor::Acl => lib.display().to_string(),
        Vendor::Mspti => format!("{}:{}", lib.display(), libdir.join("libmspti.so").display()),
    };
    let mut cmd = Command::new(client());
    clean_env(cmd.arg("-").args(cmds));
    cmd.env("VLLM_TORCH_PROFILER_DIR", &root)
        .env("NPUPROF_BACKEND", backend)
        .env("LD_LIBRARY_PATH", libdir)
        .env("LD_PRELOAD", preload)
        .env(log_var, &log)
        .env("FAKE_ACL_DEVICE", "0")
        .envs(env.iter().copied());
    let out = run_guarded(&mut cmd, Duration::from_secs(120));
    let log = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    Run {
        out,
        log,
        root,
        _tmp: tmp,
    }
}

/// The profile's host data is all there: its steps in the trace and its records counted.
fn assert_host_data(dir: &Path, steps: usize, ctx: &str) {
    let t = trace(dir);
    let want: Vec<String> = (1..=steps).map(|k| format!("ProfilerStep#{k}")).collect();
    assert_eq!(step_names(&t), want, "{ctx}");
    assert_eq!(slices(&t, "model_forward").len(), steps, "{ctx}");
}

/// `msptiActivityFlushAll` never returns (until the test releases it). `npuprof_stop` returns anyway;
/// `output_dir` and `fork()` work while the flush hangs; a new start is refused with NPUPROF_ERR_BACKEND
/// naming the call (npuprof never calls MSPTI while its own stop is inside it); the profile keeps its host
/// data and its metadata names the abandoned call; `npuprof_shutdown` returns and leaves MSPTI alone. Once
/// the flush returns, a start works again and that
/// profile has its device data; `exit()` returns.
#[test]
fn a_flush_that_never_returns_blocks_neither_stop_nor_output_dir_fork_start_or_exit() {
    let r = go(
        Vendor::Mspti,
        &[
            ("FAKE_MSPTI_HANG", "msptiActivityFlushAll=forever"),
            ("NPUPROF_VENDOR_TIMEOUT_S", "1"),
        ],
        &[
            "mspti",
            "start",
            "steps:2",
            "stop",
            "wait_hang",
            "dir",
            "fork",
            "start",
            "shutdown",
            "release",
            "start_until_ok",
            "steps:1",
            "stop",
            "flush",
            "exit",
        ],
    );
    let ctx = r.context();
    r.out.assert_ok();
    assert_eq!(r.out.values("STOP"), ["0", "0"], "{ctx}");
    assert!(!r.out.value("DIR").unwrap_or_default().is_empty(), "{ctx}");
    assert_eq!(r.out.value("CHILD_START").as_deref(), Some("0"), "{ctx}");
    assert_eq!(r.out.value("CHILD_EXIT").as_deref(), Some("0"), "{ctx}");
    // The second start: refused, not run against a library still inside our flush; the third, after the
    // flush returned, works.
    assert_eq!(r.out.values("START"), ["0", "6", "0"], "{ctx}");
    assert!(
        r.out
            .stderr
            .contains("device stop (msptiActivityFlushAll) has not returned"),
        "{ctx}"
    );
    assert_eq!(r.out.value("FLUSH").as_deref(), Some("0"), "{ctx}");
    // Shutdown neither waits for the flush nor unsubscribes from a library still inside it.
    assert_eq!(r.out.value("SHUTDOWN").as_deref(), Some("0"), "{ctx}");
    assert!(
        r.out.stderr.contains("the MSPTI subscription is kept"),
        "{ctx}"
    );
    assert!(
        !r.log.iter().any(|l| l.starts_with("msptiUnsubscribe")),
        "{ctx}"
    );
    // MSPTI was not called again before the hung flush returned.
    let at = |p: &dyn Fn(&str) -> bool| r.log.iter().position(|l| p(l)).unwrap();
    let released = at(&|l| l == "hang msptiActivityFlushAll released");
    let enables: Vec<usize> = r
        .log
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("msptiActivityEnable "))
        .map(|(i, _)| i)
        .collect();
    let hung = at(&|l| l == "hang msptiActivityFlushAll forever");
    assert!(
        enables.iter().all(|&i| i < hung || i > released),
        "an enable ran inside the hung flush:\n{ctx}"
    );
    let parent: Vec<PathBuf> = r
        .workers()
        .into_iter()
        .filter(|d| Run::meta(d)["device"]["backend"] == "mspti")
        .collect();
    assert_eq!(parent.len(), 2, "{ctx}");
    let m = Run::meta(&parent[0]);
    assert_eq!(m["device"]["status"], "abandoned", "{m}");
    assert_eq!(
        m["device"]["vendor_stop_abandoned"], "msptiActivityFlushAll",
        "{m}"
    );
    assert_eq!(m["npuprof"]["stop_reason"], "npuprof_stop", "{m}");
    assert_host_data(&parent[0], 2, &ctx);
    let m = Run::meta(&parent[1]);
    assert_eq!(m["device"]["status"], "parsed", "{m}");
    assert_eq!(m["device"]["device_tasks"], 3, "{m}");
}

/// A flush that is slow but returns (2 s) is waited for, not abandoned: the next start waits for it (outside
/// the control lock) and both profiles have their device data; MSPTI is never called while the stop is inside
/// it.
#[test]
fn a_slow_flush_is_waited_for_and_the_next_start_follows_it() {
    let r = go(
        Vendor::Mspti,
        &[("FAKE_MSPTI_HANG", "msptiActivityFlushAll=2")],
        &[
            "mspti", "start", "steps:2", "stop", "dir", "start", "steps:2", "stop", "flush", "dir",
        ],
    );
    let ctx = r.context();
    r.out.assert_ok();
    assert_eq!(r.out.values("START"), ["0", "0"], "{ctx}");
    assert_eq!(r.out.values("STOP"), ["0", "0"], "{ctx}");
    assert_eq!(r.out.value("FLUSH").as_deref(), Some("0"), "{ctx}");
    for d in r.out.values("DIR") {
        let m = Run::meta(Path::new(&d));
        assert_eq!(m["device"]["status"], "parsed", "{m}");
        assert!(m["device"].get("vendor_stop_abandoned").is_none(), "{m}");
        assert_eq!(m["device"]["device_tasks"], 6, "{m}");
    }
    // The second profile's first enable comes after the first flush returned.
    let pos = |p: &dyn Fn(&str) -> bool| r.log.iter().position(|l| p(l)).unwrap();
    let released = pos(&|l| l == "hang msptiActivityFlushAll released");
    let flushed = pos(&|l| l.starts_with("msptiActivityFlushAll "));
    let enables: Vec<usize> = r
        .log
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("msptiActivityEnable "))
        .map(|(i, _)| i)
        .collect();
    assert!(released < flushed, "{ctx}");
    assert!(
        enables.iter().filter(|&&i| i > flushed).count() >= 1,
        "{ctx}"
    );
    assert!(
        enables.iter().all(|&i| i < released || i > flushed),
        "an enable ran inside the flush:\n{ctx}"
    );
}

/// `exit()` while recording, and `aclprofFinalize` never returns: the exit hook's stop is bounded like any
/// other (here by NPUPROF_FLUSH_TIMEOUT_S: half of the exit wait goes to the vendor), exit returns, and the
/// profile is written with its host data, naming the abandoned call. Before: exit never returned.
#[test]
fn exit_while_recording_with_a_finalize_that_never_returns_still_exits_and_writes_the_profile() {
    let r = go(
        Vendor::Acl,
        &[
            ("FAKE_ACL_HANG", "aclprofFinalize=forever"),
            ("NPUPROF_FLUSH_TIMEOUT_S", "4"),
        ],
        &["cann", "start", "steps:2", "dir", "exit"],
    );
    let ctx = r.context();
    r.out.assert_ok();
    let calls: Vec<&str> = r
        .log
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        calls.contains(&"aclprofStop") && calls.contains(&"aclprofDestroyConfig"),
        "{ctx}"
    );
    assert!(
        r.log.iter().any(|l| l == "hang aclprofFinalize forever"),
        "{ctx}"
    );
    let dir = PathBuf::from(r.out.value("DIR").unwrap());
    let m = Run::meta(&dir);
    assert_eq!(
        m["npuprof"]["stop_reason"], "process exit without npuprof_stop",
        "{m}"
    );
    assert_eq!(m["device"]["status"], "abandoned", "{m}");
    assert_eq!(
        m["device"]["vendor_stop_abandoned"], "aclprofFinalize",
        "{m}"
    );
    assert_host_data(&dir, 2, &ctx);
}

/// `aclprofStop` never returns, and another thread calls `exit()` once it hangs, while the main thread goes
/// on. Before: `npuprof_stop` held the control lock inside aclprofStop forever, so the exit hook gave up and
/// the profile was lost. Now the stop returns, and the exit hook writes the profile, naming the call.
#[test]
fn exit_from_another_thread_while_aclprof_stop_hangs_keeps_the_profile() {
    let r = go(
        Vendor::Acl,
        &[
            ("FAKE_ACL_HANG", "aclprofStop=forever"),
            ("NPUPROF_VENDOR_TIMEOUT_S", "1"),
        ],
        &[
            "cann",
            "start",
            "steps:2",
            "bg_exit_on_hang",
            "stop",
            "dir",
            "sleep:600000",
        ],
    );
    let ctx = r.context();
    r.out.assert_ok();
    let w = r.workers();
    assert_eq!(w.len(), 1, "{ctx}");
    assert!(
        w[0].join("profiler_metadata.json").exists(),
        "profile lost:\n{ctx}"
    );
    // (The exiting thread may end the process before the main thread prints STOP=0.)
    assert!(r.out.values("STOP").iter().all(|v| v == "0"), "{ctx}");
    let m = Run::meta(&w[0]);
    assert_eq!(m["npuprof"]["stop_reason"], "npuprof_stop", "{m}");
    assert_eq!(m["device"]["vendor_stop_abandoned"], "aclprofStop", "{m}");
    assert_host_data(&w[0], 2, &ctx);
}
