//! `npuprof trigger start|stop --all`: one command for every process that watches a results directory,
//! with per-process answers and aligned windows (each process starts at the same step of its own count).
//! The processes are tests/c/window.c clients stepping in lockstep on the wall clock, as the ranks of one
//! tensor-parallel job do.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn cli() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_npuprof"))
}

/// A watching process (NPUPROF_CONTROL=1) running the window client's `calls`, its output in a file.
struct Rank {
    child: Child,
    out: PathBuf,
}

impl Rank {
    fn spawn(root: &Path, rank: u32, calls: &[&str]) -> Rank {
        let out = root.with_extension(format!("rank{rank}.{}.out", std::process::id()));
        let f = std::fs::File::create(&out).unwrap();
        let mut cmd = Command::new(window_client());
        clean_env(cmd.arg(lib()).args(calls));
        cmd.env("VLLM_TORCH_PROFILER_DIR", root)
            .env("NPUPROF_CONTROL", "1")
            .env("RANK", rank.to_string())
            .env("NPUPROF_LOG", "info")
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f));
        Rank {
            child: cmd.spawn().unwrap(),
            out,
        }
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
    fn finish(mut self) -> String {
        let st = self.child.wait().unwrap();
        let log = self.log();
        assert!(st.success(), "rank exited {st}:\n{log}");
        log
    }
}

impl Drop for Rank {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

fn trigger(args: &[&str], root: &Path) -> (i32, String) {
    let mut a = vec!["trigger"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--dir", root.to_str().unwrap(), "--timeout", "60"]);
    let o = run(cli(), &a, &[]);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// Waits (polling, failing only after two minutes) until `n` processes have registered under `root`.
fn registered(root: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let regs = std::fs::read_dir(root.join(".control"))
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".reg"))
                })
                .count()
            })
            .unwrap_or(0);
        if regs >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{regs} of {n} registered");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn meta(d: &Path) -> Value {
    json(&d.join("profiler_metadata.json"))["npuprof"].clone()
}

/// The wall-clock start (µs) of each result's ProfilerStep#1, by rank.
fn first_step_starts(root: &Path) -> Vec<(u64, f64)> {
    let mut v: Vec<(u64, f64)> = workers(root)
        .iter()
        .map(|d| {
            let t = trace(d);
            let s = slices(&t, "ProfilerStep#1")[0];
            (meta(d)["rank"].as_u64().unwrap(), ts_us(s))
        })
        .collect();
    v.sort_by_key(|x| x.0);
    v
}

fn spread_ms(v: &[(u64, f64)]) -> f64 {
    let ts: Vec<f64> = v.iter().map(|x| x.1).collect();
    (ts.iter().cloned().fold(f64::MIN, f64::max) - ts.iter().cloned().fold(f64::MAX, f64::min))
        / 1000.0
}

#[test]
fn start_all_aligns_the_ranks_on_one_step_and_each_answers() {
    let root = tempfile::tempdir().unwrap();
    // 600 steps of 20 ms each, stepping at the same wall-clock instants.
    let calls = ["lockstep:600:20", "flush"];
    let ranks = [
        Rank::spawn(root.path(), 0, &calls),
        Rank::spawn(root.path(), 1, &calls),
    ];
    registered(root.path(), 2);
    std::thread::sleep(Duration::from_millis(600));
    let (rc, out) = trigger(
        &["start", "--all", "--steps", "10", "--lead", "4"],
        root.path(),
    );
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("aligning 2 process(es)"), "{out}");
    for (r, p) in ranks.iter().enumerate() {
        assert!(
            out.contains(&format!("started: pid {} rank {r} host ", p.pid())),
            "{out}"
        );
    }
    let logs: Vec<String> = ranks.into_iter().map(Rank::finish).collect();
    let ws = workers(root.path());
    assert_eq!(ws.len(), 2, "{logs:?}");
    let firsts: Vec<u64> = ws
        .iter()
        .map(|d| meta(d)["window"]["first_step"].as_u64().unwrap())
        .collect();
    // The same step of each process's own count: both record the same 10 steps of the job.
    assert_eq!(firsts[0], firsts[1]);
    assert!(firsts[0] > 1);
    for d in &ws {
        assert_eq!(step_names(&trace(d)).len(), 10);
        assert!(meta(d)["stop_reason"]
            .as_str()
            .unwrap()
            .starts_with("max steps"));
    }
    let v = first_step_starts(root.path());
    eprintln!(
        "ALIGNED first recorded step of each rank at step {}: spread {:.3} ms ({v:?})",
        firsts[0],
        spread_ms(&v)
    );
    // Both results go through the checker and msprof-analyze's cluster analysis together.
    check_profile(root.path());
}

#[test]
fn plain_per_process_triggers_start_on_different_steps() {
    // The comparison the closing note reports: one `trigger start --pid` per rank, in turn.
    let root = tempfile::tempdir().unwrap();
    let calls = ["lockstep:300:20", "flush"];
    let ranks = [
        Rank::spawn(root.path(), 0, &calls),
        Rank::spawn(root.path(), 1, &calls),
    ];
    registered(root.path(), 2);
    std::thread::sleep(Duration::from_millis(600));
    for p in &ranks {
        let pid = p.pid().to_string();
        let (rc, out) = trigger(&["start", "--pid", &pid, "--steps", "10"], root.path());
        assert_eq!(rc, 0, "{out}");
    }
    for p in ranks {
        p.finish();
    }
    let ws = workers(root.path());
    assert_eq!(ws.len(), 2);
    let firsts: Vec<u64> = ws
        .iter()
        .map(|d| meta(d)["window"]["first_step"].as_u64().unwrap())
        .collect();
    let v = first_step_starts(root.path());
    eprintln!(
        "PLAIN first recorded steps {firsts:?}: spread {:.3} ms ({v:?})",
        spread_ms(&v)
    );
    for d in &ws {
        assert_eq!(step_names(&trace(d)).len(), 10);
    }
}

#[test]
fn dead_and_stale_registrations_are_ignored_and_named() {
    let root = tempfile::tempdir().unwrap();
    let rank = Rank::spawn(root.path(), 0, &["step", "sleep:60000"]);
    registered(root.path(), 1);
    let ctl = root.path().join(".control");
    // A process of this host that has ended, and one of another node that stopped refreshing long ago.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let real = std::fs::read_to_string(
        std::fs::read_dir(&ctl)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".reg"))
            .unwrap(),
    )
    .unwrap();
    let field = |k: &str| {
        real.lines()
            .find_map(|l| l.strip_prefix(k).map(str::to_string))
            .unwrap()
    };
    let (host, pidns) = (field("host="), field("pidns="));
    let reg = |pid: u32, host: &str, time_ns: u64| {
        format!(
            "pid={pid}\nrank=7\nhost={host}\nstep=0\nrate=0\ntime_ns={time_ns}\npidns={pidns}\ndir=\n"
        )
    };
    let dead = ctl.join(format!("{host}.{gone_pid}.reg"));
    std::fs::write(&dead, reg(gone_pid, &host, u64::MAX / 2)).unwrap();
    std::fs::write(ctl.join("othernode.42.reg"), reg(42, "othernode", 1)).unwrap();
    let (rc, out) = trigger(&["start", "--all", "--at-step", "1"], root.path());
    assert_eq!(rc, 0, "{out}\n{}", rank.log());
    assert!(
        out.contains(&format!(
            "ignored: pid {gone_pid} rank 7 host {host}: the process has ended"
        )),
        "{out}"
    );
    assert!(
        out.contains("ignored: pid 42 rank 7 host othernode: its registration is"),
        "{out}"
    );
    assert!(
        out.contains(&format!("started: pid {} rank 0", rank.pid())),
        "{out}"
    );
    // The dead local entry is removed; the other node's is left to its owner.
    assert!(!dead.exists());
    let (rc, out) = trigger(&["stop", "--all"], root.path());
    assert_eq!(rc, 0, "{out}");
}

#[test]
fn an_idle_rank_answers_armed_and_stop_all_cancels_it() {
    let root = tempfile::tempdir().unwrap();
    // One step (the watcher starts with the first call), then no step for a minute: an idle DP rank.
    let rank = Rank::spawn(root.path(), 0, &["step", "sleep:60000"]);
    registered(root.path(), 1);
    let a = ["start", "--all", "--at-step", "50", "--timeout", "2"];
    let mut args: Vec<&str> = a.to_vec();
    args.extend(["--dir", root.path().to_str().unwrap()]);
    let (rc, out) = {
        let mut v = vec!["trigger"];
        v.extend_from_slice(&args[..]);
        let o = run(cli(), &v, &[]);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains(&format!("armed: pid {} rank 0 host ", rank.pid())),
        "{out}"
    );
    assert!(
        out.contains("starts at its step 50 (at step 1 when it answered)"),
        "{out}"
    );
    let (rc, out) = trigger(&["stop", "--all"], root.path());
    assert_eq!(rc, 0, "{out}\n{}", rank.log());
    assert!(rank
        .log()
        .contains("the start waiting for step 50 is cancelled"));
    assert!(workers(root.path()).is_empty());
}

#[test]
fn a_process_that_starts_watching_after_a_command_never_runs_it() {
    let root = tempfile::tempdir().unwrap();
    let first = Rank::spawn(root.path(), 0, &["step", "sleep:60000"]);
    registered(root.path(), 1);
    let (rc, out) = trigger(&["start", "--all", "--at-step", "1"], root.path());
    assert_eq!(rc, 0, "{out}");
    // A rank that begins watching now finds that command already there: not its own.
    let late = Rank::spawn(root.path(), 1, &["step", "sleep:60000"]);
    registered(root.path(), 2);
    std::thread::sleep(Duration::from_millis(800));
    assert!(!late.log().contains("job command"), "{}", late.log());
    let (rc, out) = trigger(&["stop", "--all"], root.path());
    // The first stops; the late one had nothing to stop, and says so.
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains(&format!("stopped: pid {} rank 0", first.pid())),
        "{out}"
    );
    assert!(
        out.contains(&format!("failed: pid {} rank 1", late.pid())) && out.contains("status 3"),
        "{out}"
    );
}

#[test]
fn no_watcher_is_exit_3_and_bad_options_are_usage_errors() {
    let root = tempfile::tempdir().unwrap();
    let (rc, out) = trigger(&["start", "--all"], root.path());
    assert_eq!(rc, 3, "{out}");
    for bad in [
        &["start", "--all", "--pid", "1"][..],
        &["stop", "--all", "--steps", "3"],
        &["start", "--all", "--steps", "0"],
        &["start", "--all", "--at-step", "x"],
        &["start", "--all", "--lead", "-1"],
    ] {
        let (rc, out) = trigger(bad, root.path());
        assert_eq!(rc, 2, "{bad:?}: {out}");
    }
}

#[test]
fn a_registered_process_that_does_not_answer_is_named() {
    let root = tempfile::tempdir().unwrap();
    let rank = Rank::spawn(root.path(), 0, &["step", "sleep:60000"]);
    registered(root.path(), 1);
    // A live process of this host (this test) that registers but never watches: a stuck watcher.
    let ctl = root.path().join(".control");
    let host = npuprof::config::hostname();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let me = std::process::id();
    std::fs::write(
        ctl.join(npuprof::control::job::reg_name(&host, me)),
        format!("pid={me}\nrank=5\nhost={host}\nstep=0\nrate=0\ntime_ns={now}\ndir=\n"),
    )
    .unwrap();
    let mut a = vec![
        "trigger",
        "start",
        "--all",
        "--at-step",
        "1",
        "--timeout",
        "2",
    ];
    a.extend(["--dir", root.path().to_str().unwrap()]);
    let o = run(cli(), &a, &[]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains(&format!("no answer: pid {me} rank 5 host")),
        "{out}"
    );
    // The live watcher answered all the same.
    assert!(
        out.contains(&format!("started: pid {} rank 0", rank.pid())),
        "{out}"
    );
}

#[test]
fn a_job_command_of_another_user_is_never_run() {
    if !root_or_skip("a command file owned by another uid") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let rank = Rank::spawn(root.path(), 0, &["step", "sleep:60000"]);
    registered(root.path(), 1);
    std::thread::sleep(Duration::from_millis(600));
    let cmd = root.path().join(".control/all.cmd");
    std::fs::write(&cmd, "start\nid=1-1\nat_step=1\n").unwrap();
    std::os::unix::fs::chown(&cmd, Some(4321), Some(4321)).unwrap();
    // Several polls later: not run, no answer, no profile.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!rank.log().contains("job command"), "{}", rank.log());
    assert!(workers(root.path()).is_empty());
    let acks = std::fs::read_dir(root.path().join(".control"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".ack")
        })
        .count();
    assert_eq!(acks, 0);
    // The same command as the process's own user runs.
    std::fs::remove_file(&cmd).unwrap();
    let (rc, out) = trigger(&["start", "--all", "--at-step", "1"], root.path());
    assert_eq!(rc, 0, "{out}");
}

#[test]
fn stop_by_pid_of_an_armed_start_cancels_it_and_succeeds() {
    let root = tempfile::tempdir().unwrap();
    let rank = Rank::spawn(root.path(), 0, &["step", "sleep:60000"]);
    registered(root.path(), 1);
    let pid = rank.pid().to_string();
    let mut a = vec![
        "trigger",
        "start",
        "--pid",
        &pid,
        "--at-step",
        "50",
        "--timeout",
        "1",
    ];
    a.extend(["--dir", root.path().to_str().unwrap()]);
    let o = run(cli(), &a, &[]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("armed: process"), "{out}");
    let (rc, out) = trigger(&["stop", "--pid", &pid], root.path());
    assert_eq!(rc, 0, "{out}\n{}", rank.log());
    assert!(out.starts_with("stopped"), "{out}");
    // No late outcome is left behind for the next command to read.
    std::thread::sleep(Duration::from_millis(600));
    assert!(!root.path().join(format!(".control/{pid}.ack")).exists());
}

#[test]
fn a_removed_control_directory_is_created_again_by_its_watchers() {
    let root = tempfile::tempdir().unwrap();
    let rank = Rank::spawn(root.path(), 0, &["step", "sleep:60000"]);
    registered(root.path(), 1);
    std::fs::remove_dir_all(root.path().join(".control")).unwrap();
    registered(root.path(), 1);
    let (rc, out) = trigger(&["start", "--all", "--at-step", "1"], root.path());
    assert_eq!(rc, 0, "{out}\n{}", rank.log());
    assert_eq!(
        rank.log().matches("was removed; creating it again").count(),
        1
    );
}
