//! `npuprof check|summary|recover|trigger` on hostile or odd trees: admins run the CLI on result directories
//! other users can write, so it must never follow a planted symlink, block on a FIFO, read without bound,
//! print a terminal escape from a name, panic on a crafted number, or pass a tree it could not read.
//!
//! Every run of the CLI here has a kill-after deadline (a hang fails the test instead of hanging the suite)
//! and, natively, an address-space limit (an unbounded read fails instead of eating the machine's memory).

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Far more than any of these runs needs; reached only by a real hang.
const HANG_DEADLINE: Duration = Duration::from_secs(60);
/// The CLI's address-space limit (native runs only: qemu-user reserves large guest spaces).
const ADDRESS_SPACE: u64 = 1 << 30;

struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Run {
    fn all(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.out, self.err)
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs the built `npuprof` with `args`; as an unprivileged user (65534) when `nobody` and we are root.
fn npuprof_as(args: &[&str], nobody: bool) -> Run {
    let logs = tempfile::tempdir().unwrap();
    let (o, e) = (logs.path().join("out"), logs.path().join("err"));
    let as_nobody = nobody && is_root();
    let command = |exe: &Path| {
        let mut cmd = Command::new(exe);
        common::clean_env(cmd.args(args))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap());
        if as_nobody {
            cmd.uid(65534).gid(65534);
        }
        let (target, host) = (env!("NPUPROF_BUILD_TARGET"), env!("NPUPROF_BUILD_HOST"));
        if target == host {
            // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    let lim = libc::rlimit {
                        rlim_cur: ADDRESS_SPACE,
                        rlim_max: ADDRESS_SPACE,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                })
            };
        }
        cmd
    };
    let exe = Path::new(env!("CARGO_BIN_EXE_npuprof"));
    let mut child = match command(exe).spawn() {
        Ok(c) => c,
        Err(err) if as_nobody && err.kind() == std::io::ErrorKind::PermissionDenied => {
            // The build tree is out of the unprivileged user's reach (under /root): run a copy.
            std::fs::set_permissions(logs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let copy = logs.path().join("npuprof");
            std::fs::copy(exe, &copy).unwrap();
            command(&copy).spawn().unwrap()
        }
        Err(err) => panic!("spawn {}: {err}", exe.display()),
    };
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > HANG_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "npuprof {args:?} hung: killed after {HANG_DEADLINE:?}\n{}",
                std::fs::read_to_string(&o).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&std::fs::read(&o).unwrap()).into_owned(),
        err: String::from_utf8_lossy(&std::fs::read(&e).unwrap()).into_owned(),
    }
}

fn npuprof(args: &[&str]) -> Run {
    npuprof_as(args, false)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const WORKER: &str = "w0_20260101000000000_ascend_ms";

const TRACE: &str = r#"[
{"ph":"M","name":"process_name","pid":1,"tid":0,"args":{"name":"host"}},
{"ph":"X","name":"ProfilerStep#1","pid":1,"tid":1,"ts":"1000.000","dur":"100.000","cat":"cpu_op"},
{"ph":"X","name":"model_forward","pid":1,"tid":1,"ts":"1010.000","dur":"50.000","cat":"cpu_op"}
]"#;

/// A small result that `npuprof check` passes, under `root/name`.
fn result_named(root: &Path, name: &str) -> PathBuf {
    let w = root.join(name);
    let out = w.join("ASCEND_PROFILER_OUTPUT");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(w.join("FRAMEWORK")).unwrap();
    std::fs::write(
        w.join("profiler_info_0.json"),
        r#"{"ms_profiler_info":{"rank_id":0}}"#,
    )
    .unwrap();
    std::fs::write(
        w.join("profiler_metadata.json"),
        r#"{"npuprof":{"backend":"none","start_time_ns":0,"stop_time_ns":2000000,"stop_reason":"npuprof_stop",
           "steps":1,"slices":2,"recorded_records":4,"dropped_records":{"ring_full":0}}}"#,
    )
    .unwrap();
    std::fs::write(out.join("trace_view.json"), TRACE).unwrap();
    std::fs::write(out.join("step_trace_time.csv"), {
        // Stage (2) = Free + Computing + Communication(Not Overlapped) - Bubble (1 + 1 + 1 - 1).
        let h = npuprof::export::csv::STEP_TRACE_HEADER;
        format!("{h}\n1,1,1,1,1,1,1,2,1,1,1\n")
    })
    .unwrap();
    std::fs::write(
        out.join("kernel_details.csv"),
        "Step ID,Name,Type,Accelerator Core,Start Time(us),Duration(us),Wait Time(us)\n\
         1,k,MatMul,AI_CORE,1000.000\t,1.000,0.000\n",
    )
    .unwrap();
    std::fs::write(out.join("op_statistic.csv"), {
        let h = npuprof::export::csv::OP_STATISTIC_HEADER;
        format!("{h}\n0,MatMul,AI_CORE,1,1.000,1.000,1.000,1.000,100.000\n")
    })
    .unwrap();
    w
}

fn result(root: &Path) -> PathBuf {
    result_named(root, WORKER)
}

fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
}

/// The crafted result really is valid: the hostile variants below fail for what was planted, nothing else.
#[test]
fn a_crafted_result_passes_check_and_summary() {
    let t = tempfile::tempdir().unwrap();
    result(t.path());
    let r = npuprof(&["check", s(t.path())]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.out.contains("CHECK PASS: 1 result(s)"), "{}", r.all());
    let r = npuprof(&["summary", s(t.path())]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.out.contains("model_forward"), "{}", r.all());
}

/// Two `-> .` links inside a result made `check ROOT` walk 2^40 paths; links are never followed, and one
/// inside a result is a problem of that result. Outside results, a link to another tree is not searched.
#[test]
fn check_never_follows_symlinks() {
    let t = tempfile::tempdir().unwrap();
    let w = result(t.path());
    std::os::unix::fs::symlink(".", w.join("a")).unwrap();
    std::os::unix::fs::symlink(".", w.join("b")).unwrap();
    std::os::unix::fs::symlink(".", w.join("FRAMEWORK/c")).unwrap();
    let r = npuprof(&["check", s(t.path())]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.out.contains(&format!("{WORKER}/a: a symlink")),
        "{}",
        r.all()
    );
    assert!(r.out.contains("FRAMEWORK/c: a symlink"), "{}", r.all());
    assert!(r.out.contains("CHECK FAIL: 3 problem(s)"), "{}", r.all());
    let r = npuprof(&["summary", s(t.path())]);
    assert_eq!(r.code, 0, "{}", r.all());

    // Around results: loops and a link to another tree of results are not searched.
    let other = tempfile::tempdir().unwrap();
    result_named(other.path(), "elsewhere_20260101000000000_ascend_ms");
    let t = tempfile::tempdir().unwrap();
    result(t.path());
    std::fs::create_dir(t.path().join("team")).unwrap();
    std::os::unix::fs::symlink(".", t.path().join("team/x")).unwrap();
    std::os::unix::fs::symlink("..", t.path().join("team/y")).unwrap();
    std::os::unix::fs::symlink(other.path(), t.path().join("ext")).unwrap();
    std::os::unix::fs::symlink(
        other.path().join("elsewhere_20260101000000000_ascend_ms"),
        t.path().join("ext_20260101000000000_ascend_ms"),
    )
    .unwrap();
    let r = npuprof(&["check", s(t.path())]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.out.contains("CHECK PASS: 1 result(s)"), "{}", r.all());
}

/// A FIFO named like a result file blocked `summary`, `check` and `recover` forever in open(2).
#[test]
fn fifos_named_like_result_files_are_refused_not_waited_on() {
    let t = tempfile::tempdir().unwrap();
    let w = result(t.path());
    let trace = w.join("ASCEND_PROFILER_OUTPUT/trace_view.json");
    std::fs::remove_file(&trace).unwrap();
    mkfifo(&trace);
    let r = npuprof(&["summary", s(t.path())]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.out.contains("trace_view.json") && r.out.contains("not a regular file"),
        "{}",
        r.all()
    );
    let meta = w.join("profiler_metadata.json");
    std::fs::remove_file(&meta).unwrap();
    mkfifo(&meta);
    let r = npuprof(&["check", s(t.path())]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.out.contains("profiler_metadata.json: not a regular file"),
        "{}",
        r.all()
    );
    assert!(
        r.out.contains("trace_view.json: not a regular file"),
        "{}",
        r.all()
    );

    // recover: a worker directory whose spool is a FIFO.
    let d = t.path().join("dead_20260101000000000_ascend_ms");
    std::fs::create_dir_all(d.join("FRAMEWORK")).unwrap();
    mkfifo(&d.join("FRAMEWORK/npuprof.spool"));
    let r = npuprof(&["recover", s(&d)]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.err.contains("npuprof.spool") && r.err.contains("not a regular file"),
        "{}",
        r.all()
    );
}

/// `profiler_metadata.json` linked to /dev/zero grew the CLI to 1.36 GB in 3 s: links are refused, and a
/// file over its kind's cap is reported as too large (naming the file and the cap), never read.
#[test]
fn reads_are_bounded_and_too_large_files_are_named() {
    let t = tempfile::tempdir().unwrap();
    let w = result_named(t.path(), "a_20260101000000000_ascend_ms");
    std::fs::remove_file(w.join("profiler_metadata.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", w.join("profiler_metadata.json")).unwrap();
    let r = npuprof(&["check", s(&w)]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.out.contains("profiler_metadata.json: a symlink"),
        "{}",
        r.all()
    );
    let r = npuprof(&["summary", s(&w)]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.out.contains("profiler_metadata.json: a symlink"),
        "{}",
        r.all()
    );

    // Sparse files: huge sizes that cost no disk.
    let w = result_named(t.path(), "b_20260101000000000_ascend_ms");
    let out = w.join("ASCEND_PROFILER_OUTPUT");
    for (p, len) in [
        (w.join("profiler_metadata.json"), 1u64 << 30),
        (out.join("trace_view.json"), 1 << 40),
        (out.join("kernel_details.csv"), 1 << 40),
    ] {
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
    }
    let r = npuprof(&["check", s(&w)]);
    assert_eq!(r.code, 1, "{}", r.all());
    for f in [
        "profiler_metadata.json",
        "trace_view.json",
        "kernel_details.csv",
    ] {
        assert!(
            r.out
                .lines()
                .any(|l| l.contains(&format!("{f}: too large")) && l.contains("cap")),
            "{f}\n{}",
            r.all()
        );
    }
    let r = npuprof(&["summary", s(&w)]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.out.contains("profiler_metadata.json: too large"),
        "{}",
        r.all()
    );
}

/// `trigger --timeout` with a negative, NaN, infinite, huge, zero or non-numeric value is a usage error
/// before anything is sent (it panicked after sending the command: a started profile, a stale ack).
#[test]
fn trigger_rejects_bad_timeouts_before_sending() {
    let t = tempfile::tempdir().unwrap();
    let control = t.path().join(".control");
    std::fs::create_dir(&control).unwrap();
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o700)).unwrap();
    let pid = std::process::id().to_string();
    for bad in ["-1", "NaN", "inf", "-inf", "1e30", "0", "ten"] {
        let r = npuprof(&[
            "trigger",
            "start",
            "--pid",
            &pid,
            "--dir",
            s(t.path()),
            "--timeout",
            bad,
        ]);
        assert_eq!(r.code, 2, "--timeout {bad}: {}", r.all());
        assert!(r.err.contains("--timeout"), "{}", r.all());
        assert!(!r.err.contains("panicked"), "{}", r.all());
        let left: Vec<_> = std::fs::read_dir(&control).unwrap().collect();
        assert!(left.is_empty(), "--timeout {bad} sent something: {left:?}");
    }
}

/// Names from a result (trace names, op types, metadata strings, directory names) printed raw let a crafted
/// result drive the admin's terminal (ESC sequences, BEL, CR overwriting a line).
#[test]
fn summary_escapes_control_characters_in_names() {
    let t = tempfile::tempdir().unwrap();
    let w = result_named(t.path(), "e\x1b[31m_20260101000000000_ascend_ms");
    let out = w.join("ASCEND_PROFILER_OUTPUT");
    std::fs::write(
        out.join("trace_view.json"),
        r#"[{"ph":"X","name":"evil\u001b]0;pwned\u0007\r","pid":1,"tid":1,"ts":"1.000","dur":"1.000"}]"#,
    )
    .unwrap();
    std::fs::write(
        out.join("op_statistic.csv"),
        "OP Type,Core Type,Count,Total Time(us)\nOp\x1b[2J\u{9b}x,AI_CORE,1,1.000\n",
    )
    .unwrap();
    std::fs::write(
        w.join("profiler_metadata.json"),
        r#"{"npuprof":{"backend":"b\u001bc","stop_reason":"r\u0008s"}}"#,
    )
    .unwrap();
    let r = npuprof(&["summary", s(t.path())]);
    assert_eq!(r.code, 0, "{}", r.all());
    let raw = r.out.chars().any(|c| c.is_control() && c != '\n');
    assert!(!raw, "control characters printed raw: {:?}", r.out);
    for want in [
        "evil\\x1b]0;pwned\\x07\\r",
        "Op\\x1b[2J\\u{9b}x",
        "b\\x1bc",
        "r\\x08s",
        "e\\x1b[31m_",
    ] {
        assert!(r.out.contains(want), "{want}: {:?}", r.out);
    }
    let r = npuprof(&["check", s(t.path())]);
    assert!(
        !r.out.chars().any(|c| c.is_control() && c != '\n'),
        "{:?}",
        r.out
    );
}

/// Issue 18 item 6: the memory CSVs, when a result has them, carry torch_npu's headers (what compare reads
/// by name); a result without them is fine.
#[test]
fn check_knows_the_memory_csvs() {
    let t = tempfile::tempdir().unwrap();
    let w = result(t.path());
    let out = w.join("ASCEND_PROFILER_OUTPUT");
    let r = npuprof(&["check", s(t.path())]);
    assert_eq!(r.code, 0, "{}", r.all());
    std::fs::write(
        out.join("memory_record.csv"),
        "Component,Timestamp(us),Total Allocated(MB),Total Reserved(MB),Total Active(MB),Stream Ptr,\
         Device Type\nAPP,\"1.000\t\",1.000000,1.000000,N/A,N/A,NPU:0\n",
    )
    .unwrap();
    std::fs::write(
        out.join("operator_memory.csv"),
        "Name,Size(KB)\n0x1,1.000\n",
    )
    .unwrap();
    let r = npuprof(&["check", s(t.path())]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.out.contains("operator_memory.csv") && !r.out.contains("memory_record.csv"),
        "{}",
        r.all()
    );
}

/// `check A B` checked only A (and passed when B was broken); every directory given is checked.
#[test]
fn check_and_summary_take_every_directory_given() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    result(a.path());
    let wb = result(b.path());
    std::fs::remove_file(wb.join("ASCEND_PROFILER_OUTPUT/op_statistic.csv")).unwrap();
    for args in [[s(a.path()), s(b.path())], [s(b.path()), s(a.path())]] {
        let r = npuprof(&["check", args[0], args[1]]);
        assert_eq!(r.code, 1, "{}", r.all());
        assert!(
            r.out.contains(&format!("{}/{WORKER}", s(a.path()))),
            "{}",
            r.all()
        );
        assert!(r.out.contains("op_statistic.csv"), "{}", r.all());
        assert!(
            r.out.contains("CHECK FAIL: 1 problem(s) in 2 result(s)"),
            "{}",
            r.all()
        );
    }
    let r = npuprof(&["summary", s(a.path()), s(b.path())]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.out.matches("model_forward").count(), 2, "{}", r.all());
}

/// A directory the CLI cannot open was skipped and the tree passed (`CHECK PASS`); it is a failure naming
/// the directory. Run as an unprivileged user (root opens any directory).
#[test]
fn unreadable_directories_are_reported_not_passed() {
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let w = result(t.path());
    // Readable by the unprivileged user.
    for e in walk(t.path()) {
        let mode = if e.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&e, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let private = t.path().join("private");
    std::fs::create_dir(&private).unwrap();
    result(&private);
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o000)).unwrap();
    let r = npuprof_as(&["check", s(t.path())], true);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.out.contains(&format!("{}: cannot open", s(&private))),
        "{}",
        r.all()
    );
    assert!(r.out.contains("CHECK FAIL"), "{}", r.all());
    let r = npuprof_as(&["summary", s(t.path())], true);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.out.contains(&format!("{}: cannot open", s(&private))),
        "{}",
        r.all()
    );
    // Inside a result: a subdirectory it cannot list.
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(&private).unwrap();
    std::fs::set_permissions(w.join("FRAMEWORK"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let r = npuprof_as(&["check", s(t.path())], true);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.out.contains("FRAMEWORK: cannot open"), "{}", r.all());
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk(&e));
        }
        out.push(e);
    }
    out
}

/// Values near u64::MAX in metadata or a trace wrapped (release) or panicked (debug) the sums.
#[test]
fn sums_saturate_instead_of_wrapping() {
    let t = tempfile::tempdir().unwrap();
    let w = result(t.path());
    std::fs::write(
        w.join("profiler_metadata.json"),
        r#"{"npuprof":{"backend":"none","steps":18446744073709551615,
           "dropped_records":{"ring_full":18446744073709551615,"over_disk_cap":7}}}"#,
    )
    .unwrap();
    let big = "18446744073709551.000";
    std::fs::write(
        w.join("ASCEND_PROFILER_OUTPUT/trace_view.json"),
        format!(
            r#"[{{"ph":"X","name":"ProfilerStep#1","pid":1,"tid":1,"ts":"{big}","dur":"{big}","cat":"cpu_op"}},
               {{"ph":"X","name":"g","pid":1,"tid":2,"ts":"{big}","dur":"{big}"}},
               {{"ph":"X","name":"f","pid":1,"tid":3,"ts":"{big}","dur":"{big}"}},
               {{"ph":"X","name":"f","pid":1,"tid":4,"ts":"{big}","dur":"{big}"}}]"#
        ),
    )
    .unwrap();
    let r = npuprof(&["summary", s(t.path())]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.out.contains("18446744073709551615 dropped"),
        "{}",
        r.all()
    );
    let r = npuprof(&["check", s(t.path())]);
    assert!(!r.err.contains("panicked"), "{}", r.all());
    assert_eq!(r.code, 0, "{}", r.all());
}

/// `npuprof check` holds results to what msprof-analyze and Perfetto's JSON importer need (what the tests
/// once took from an external checker): each planted defect fails the crafted result with a problem naming
/// it, and a passing result reports its rank, slices and complete flows.
#[test]
fn check_names_what_msprof_analyze_and_perfetto_would_reject() {
    let t = tempfile::tempdir().unwrap();
    result(t.path());
    let r = npuprof(&["check", s(t.path())]);
    assert!(
        r.out
            .contains("CHECK PASS: 1 result(s), ranks [0], 2 slices / 0 flows"),
        "{}",
        r.all()
    );
    // A flow (start and finish with one id), an instant event and a B/E pair count as Perfetto counts them.
    let t = tempfile::tempdir().unwrap();
    let w = result(t.path());
    let trace = TRACE.replace(
        "\n]",
        r#",
{"ph":"i","s":"t","name":"mark","pid":1,"tid":1,"ts":"1020.000"},
{"ph":"B","name":"b","pid":1,"tid":2,"ts":"1000.000"},{"ph":"E","pid":1,"tid":2,"ts":"1001.000"},
{"ph":"s","id":7,"cat":"HostToDevice","name":"f","pid":1,"tid":1,"ts":"1011.000"},
{"ph":"f","id":7,"cat":"HostToDevice","name":"f","pid":1,"tid":1,"ts":"1012.000","bp":"e"},
{"ph":"s","id":"8","cat":"HostToDevice","name":"f","pid":1,"tid":1,"ts":"1013.000"}
]"#,
    );
    std::fs::write(w.join("ASCEND_PROFILER_OUTPUT/trace_view.json"), trace).unwrap();
    let r = npuprof(&["check", s(t.path())]);
    assert!(
        r.out
            .contains("CHECK PASS: 1 result(s), ranks [0], 4 slices / 1 flows"),
        "{}",
        r.all()
    );

    let step = npuprof::export::csv::STEP_TRACE_HEADER;
    let cells = |v: &str| vec![v; step.split(',').count() - 2].join(",");
    let defects: Vec<(&str, String, &str)> = vec![
        ("step_trace_time.csv", format!("{step}\n"), "no step rows"),
        (
            "step_trace_time.csv",
            format!("{step}\nx,1,{}\n", cells("1")),
            "Device_id \"x\" is not an integer",
        ),
        (
            "step_trace_time.csv",
            format!("{step}\n0,1,{}\n", cells("NaN")),
            "is not a number (us)",
        ),
        (
            "step_trace_time.csv",
            format!("{step}\n0,1,{}\n", cells("1")),
            "Stage 1.000 is not Free 1.000 + Computing 1.000 + Communication(Not Overlapped) 1.000 - Bubble \
             1.000 = 2.000 (msprof-analyze's rule)",
        ),
        (
            "kernel_details.csv",
            "Step ID,Name,Type,Accelerator Core,Start Time(us),Duration(us),Wait Time(us)\n".into(),
            "a header and no rows",
        ),
        (
            "kernel_details.csv",
            "Step ID,Name,Type,Accelerator Core,Start Time(us),Duration(us)\n1,k,MatMul,AI_CORE,1.000,1.000\n"
                .into(),
            "header is",
        ),
        (
            "kernel_details.csv",
            "Step ID,Name,Type,Accelerator Core,Start Time(us),Duration(us),Wait Time(us)\n\
             1,k,MatMul,AI_CORE,1.000,-1.000,0\n"
                .into(),
            "Duration(us) \"-1.000\" is not a number >= 0",
        ),
        (
            "kernel_details.csv",
            "Step ID,Name,Type,Accelerator Core,Start Time(us),Duration(us),Wait Time(us),Name\n\
             1,k,MatMul,AI_CORE,1.000,1.000,0,k\n"
                .into(),
            "no column twice",
        ),
        (
            "op_statistic.csv",
            "OP Type,Core Type,Count,Total Time(us)\nMatMul,AI_CORE,1,1.000\n".into(),
            "expected the reference's op_statistic header",
        ),
        (
            "api_statistic.csv",
            "API Name,Time(us)\naclrtLaunch,1.0\n".into(),
            "expected CANN's api_statistic header",
        ),
        (
            "trace_view.json",
            TRACE.replace("\n]", ",\n{\"name\":\"x\",\"pid\":1,\"tid\":1,\"ts\":\"1.000\"}\n]"),
            "has no \"ph\"",
        ),
        (
            "trace_view.json",
            TRACE.replace(r#""args":{"name":"host"}"#, r#""args":{"name":""}"#),
            "process_name needs a non-empty string args.name",
        ),
        (
            "trace_view.json",
            TRACE.replace(r#""dur":"50.000""#, r#""dur":"50.000","args":[1]"#),
            "args is not an object",
        ),
        (
            "trace_view.json",
            TRACE.replace(
                "\n]",
                ",\n{\"ph\":\"s\",\"cat\":\"c\",\"name\":\"f\",\"pid\":1,\"tid\":1,\"ts\":\"1011.000\"}\n]",
            ),
            "has no integer or string id",
        ),
        // Issue 18: the conventions msprof-analyze compare relies on.
        (
            "trace_view.json",
            TRACE.replace(r#""dur":"100.000","cat":"cpu_op""#, r#""dur":"100.000","cat":"step""#),
            "1 ProfilerStep#N slice(s) not of cat cpu_op",
        ),
        (
            "trace_view.json",
            TRACE.replace(
                "\n]",
                ",\n{\"ph\":\"X\",\"name\":\"ProfilerStep#2\",\"pid\":1,\"tid\":1,\"ts\":\"1100.000\",\
                 \"dur\":\"10.000\",\"cat\":\"cpu_op\"}\n]",
            ),
            "ProfilerStep#2 begins at or before ProfilerStep#1 ends",
        ),
        (
            "trace_view.json",
            TRACE.replace(
                "\n]",
                ",\n{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":7,\"tid\":0,\"args\":{\"name\":\"HCCL\"}},\
                 {\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":7,\"tid\":1,\"args\":{\"name\":\"Plane 0\"}},\
                 {\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":7,\"tid\":1,\"args\":{\"sort_index\":1}},\
                 {\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":7,\"tid\":2,\"args\":{\"name\":\"Group g Communication\"}},\
                 {\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":7,\"tid\":2,\"args\":{\"sort_index\":2}}\n]",
            ),
            "thread \"Plane 0\" sorts before every \"...Communication...\" thread",
        ),
    ];
    for (file, text, problem) in defects {
        let t = tempfile::tempdir().unwrap();
        let w = result(t.path());
        std::fs::write(w.join("ASCEND_PROFILER_OUTPUT").join(file), text).unwrap();
        let r = npuprof(&["check", s(t.path())]);
        assert_eq!(r.code, 1, "{file}: {}", r.all());
        assert!(r.out.contains(problem), "{file}: {problem}\n{}", r.all());
        assert!(
            r.out.contains("CHECK FAIL: 1 problem(s) in 1 result(s)"),
            "{file}: {}",
            r.all()
        );
    }
}
