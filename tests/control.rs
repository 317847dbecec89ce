//! On-demand start/stop from outside (`NPUPROF_CONTROL=1`, `npuprof trigger`), and the `npuprof` CLI.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn cli() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_npuprof"))
}

fn npuprof(args: &[&str]) -> (i32, String, String) {
    let o = run(cli(), args, &[]);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// An unchanged program (tests/c/idle.c: no npuprof symbol, no call) that only got
/// `LD_PRELOAD=libnpuprof.so`.
struct Preloaded {
    child: Child,
    log: PathBuf,
}

impl Preloaded {
    fn spawn(root: &Path, control: bool) -> Preloaded {
        let log = root.with_extension("log");
        // Built for the target (an aarch64 program under qemu-user when cross-testing).
        let idle = build_c("idle", &["tests/c/idle.c"], &[], &[]);
        let mut cmd = Command::new(idle);
        cmd.arg("60")
            .env("LD_PRELOAD", lib())
            .env("VLLM_TORCH_PROFILER_DIR", root)
            .env("NPUPROF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if control {
            cmd.env("NPUPROF_CONTROL", "1");
        }
        Preloaded {
            child: cmd.spawn().unwrap(),
            log,
        }
    }
    fn pid(&self) -> String {
        self.child.id().to_string()
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Preloaded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (untimed, bounded) until the watcher of `root` is up: `.control/` exists.
fn watching(root: &Path) {
    for _ in 0..400 {
        if root.join(".control").is_dir() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{} never appeared", root.join(".control").display());
}

/// A runtime that was not changed at all: `npuprof trigger start/stop --pid` makes a complete result, a
/// second start is refused with the library's message (exit 1), and the directory check passes.
#[test]
fn trigger_starts_and_stops_a_profile_in_an_unchanged_preloaded_process() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("prof");
    let p = Preloaded::spawn(&root, true);
    watching(&root);
    let pid = p.pid();
    let dir = root.to_str().unwrap();
    let (c, out, err) = npuprof(&["trigger", "start", "--pid", &pid, "--dir", dir]);
    assert_eq!(c, 0, "{out}{err}\n{}", p.log());
    let wd = out.trim().strip_prefix("started: ").unwrap().to_string();
    assert!(wd.ends_with("_ascend_ms") && wd.contains(&pid), "{out}");
    let (c, _, err) = npuprof(&["trigger", "start", "--pid", &pid, "--dir", dir]);
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("a profile is already recording"), "{err}");
    let (c, out, err) = npuprof(&["trigger", "stop", "--pid", &pid, "--dir", dir]);
    assert_eq!(c, 0, "{out}{err}");
    assert_eq!(out.trim(), format!("stopped: {wd}"));
    // The export runs in the background of that process: wait for its files (untimed, bounded).
    for _ in 0..400 {
        if Path::new(&wd).join("profiler_metadata.json").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let (c, out, _) = npuprof(&["check", &wd]);
    assert_eq!(c, 0, "{out}");
    assert!(
        p.log().contains("NPUPROF_CONTROL: accepting"),
        "{}",
        p.log()
    );
    // Only the same user: a command file owned by someone else is removed unread.
    let cmd = root.join(".control").join(format!("{pid}.cmd"));
    std::fs::write(&cmd, "start").unwrap();
    // SAFETY: chown on a path we just created; fails harmlessly when not root.
    let c_path = std::ffi::CString::new(cmd.to_str().unwrap()).unwrap();
    if unsafe { libc::chown(c_path.as_ptr(), 65534, 65534) } == 0 {
        for _ in 0..400 {
            if !cmd.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        assert!(!cmd.exists());
        assert!(
            p.log().contains("is not a regular file of uid"),
            "{}",
            p.log()
        );
        assert_eq!(workers(&root).len(), 1, "a foreign command started nothing");
    }
}

/// Without `NPUPROF_CONTROL` nothing watches: trigger says so (exit 3) instead of waiting forever, and a
/// dead or foreign pid is a usage error (exit 2).
#[test]
fn trigger_without_a_watcher_or_process_fails_with_distinct_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("prof");
    let p = Preloaded::spawn(&root, false);
    let dir = root.to_str().unwrap();
    let (c, _, err) = npuprof(&["trigger", "start", "--pid", &p.pid(), "--dir", dir]);
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("NPUPROF_CONTROL=1"), "{err}");
    let (c, _, err) = npuprof(&[
        "trigger",
        "start",
        "--pid",
        "999999999",
        "--dir",
        dir,
        "--timeout",
        "1",
    ]);
    assert_eq!(c, 2, "{err}");
    let (c, _, _) = npuprof(&["trigger", "pause", "--pid", "1"]);
    assert_eq!(c, 2);
}

/// The preload constructor starts the watcher only when this very file is in LD_PRELOAD and
/// NPUPROF_CONTROL is set; a `dlopen`ed copy never starts a thread at load, even with NPUPROF_CONTROL.
#[test]
fn the_watcher_starts_at_load_only_for_a_preloaded_library() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("prof");
    let root_s = root.to_str().unwrap();
    let threads = |dlopen: bool, control: bool| {
        let mut env = vec![("VLLM_TORCH_PROFILER_DIR", root_s)];
        if control {
            env.push(("NPUPROF_CONTROL", "1"));
        }
        let r = run_client(dlopen, &["loadonly"], &env);
        r.assert_ok();
        let n = |k: &str| r.value(k).unwrap().parse::<i32>().unwrap();
        (n("THREADS_BEFORE_LOAD"), n("THREADS_AFTER_LOAD"))
    };
    let (plain, _) = threads(false, false);
    let (watched, _) = threads(false, true);
    assert_eq!(
        watched - plain,
        2,
        "preloaded + NPUPROF_CONTROL: drain and export threads from before main"
    );
    let (before, after) = threads(true, true);
    assert_eq!(after, before, "dlopen + NPUPROF_CONTROL: no thread at load");
}

/// `npuprof summary` and `npuprof check` on a real result, and `check` naming exactly what is wrong.
#[test]
fn summary_and_check_describe_a_result_and_name_each_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run_client(
        false,
        &["manual", "3", "2"],
        &[("VLLM_TORCH_PROFILER_DIR", tmp.path().to_str().unwrap())],
    );
    r.assert_ok();
    let d = r.dir();
    let (c, out, err) = npuprof(&["summary", tmp.path().to_str().unwrap()]);
    assert_eq!(c, 0, "{err}");
    assert!(
        out.contains("3 steps") && out.contains("model_forward"),
        "{out}"
    );
    let (c, out, _) = npuprof(&["check", tmp.path().to_str().unwrap()]);
    assert_eq!(c, 0, "{out}");
    assert!(out.contains("CHECK PASS: 1 result(s)"), "{out}");
    // Break it three ways.
    let out_dir = d.join("ASCEND_PROFILER_OUTPUT");
    std::fs::write(out_dir.join("step_trace_time.csv"), "Step,Computing\n1,2\n").unwrap();
    std::fs::write(out_dir.join("kernel_details.csv.tmp"), "partial").unwrap();
    let t = std::fs::read_to_string(out_dir.join("trace_view.json")).unwrap();
    std::fs::write(out_dir.join("trace_view.json"), &t[..t.len() / 2]).unwrap();
    let (c, out, _) = npuprof(&["check", d.to_str().unwrap()]);
    assert_eq!(c, 1, "{out}");
    assert!(out.contains("step_trace_time.csv: header is"), "{out}");
    assert!(
        out.contains("kernel_details.csv.tmp: a partial file"),
        "{out}"
    );
    assert!(
        out.contains("trace_view.json") && out.contains("not a JSON array"),
        "{out}"
    );
    assert!(out.contains("CHECK FAIL: 3 problem(s)"), "{out}");
    // Usage errors and help.
    assert_eq!(npuprof(&["check"]).0, 2);
    assert_eq!(npuprof(&[]).0, 2);
    for cmd in ["trigger", "summary", "check", "recover"] {
        let (c, out, _) = npuprof(&[cmd, "--help"]);
        assert_eq!(c, 0);
        assert!(out.starts_with(&format!("npuprof {cmd}")), "{out}");
    }
    let (c, _, _) = npuprof(&["summary", tmp.path().join("nothing").to_str().unwrap()]);
    assert_eq!(c, 1);
}
