//! The spool and `npuprof recover` against hostile, damaged and live spools: sizes read from a spool are
//! bounded before anything is allocated, a live profile is not recovered, counters and configuration
//! survive a `kill -9`, a profile's spool carries only the names it uses, and recover is linear and never
//! writes through a symlink.

mod common;
use common::*;
use npuprof::record::{kind, Record};
use npuprof::spool::{Frame, Reader, Writer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn spool_client() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bin = std::env::current_exe()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            build_c(
                &format!("spool_client_{bin}"),
                &["tests/c/spool_client.c"],
                &[],
                &[],
            )
        })
        .clone()
}

fn cli() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_npuprof"))
}

fn recover(dir: &Path, env: &[(&str, &str)]) -> Output {
    run(cli(), &["recover", dir.to_str().unwrap()], env)
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn value(stdout: &str, key: &str) -> Option<String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
        .next_back()
}

/// The START frame of a crafted spool (what the drain writes).
fn start_kv(pid: &str, rank: &str) -> BTreeMap<String, String> {
    let mut kv = BTreeMap::new();
    for (k, v) in [
        ("gen", "1"),
        ("pid", pid),
        ("rank", rank),
        ("device_id", "0"),
        ("worker", "crafted"),
        ("start_tick", "1000"),
        ("anchor_ns", "1700000000000000000"),
        ("clock", "test"),
        ("auto", "false"),
        ("backend", "host"),
        ("ticks_per", "1"),
        ("ns_per", "1"),
    ] {
        kv.insert(k.to_string(), v.to_string());
    }
    kv
}

/// A worker directory under `root` whose spool holds what `frames` writes.
fn crafted(root: &Path, frames: impl FnOnce(&mut Writer)) -> PathBuf {
    let dir = root.join("crafted_1_20260101000000000_ascend_ms");
    std::fs::create_dir_all(dir.join("FRAMEWORK")).unwrap();
    let f = std::fs::File::create(dir.join("FRAMEWORK/npuprof.spool")).unwrap();
    let mut w = Writer::new(f).unwrap();
    frames(&mut w);
    w.finish().unwrap();
    dir
}

fn begin(ts: u64, depth: u64, name: u32) -> Record {
    Record::new(ts, kind::BEGIN, depth << 32 | name as u64)
}

fn end(ts: u64, depth: u64) -> Record {
    Record::new(ts, kind::END, depth << 32)
}

/// Runs `npuprof recover DIR` under an address-space limit (so an allocation sized by a hostile id fails at
/// once instead of taking the machine's memory). Not under qemu-user, which reserves the guest's address
/// space up front.
fn recover_limited(dir: &Path, limit_kb: u64) -> Output {
    let limit = if std::env::var_os("NPUPROF_QEMU_USER").is_some() {
        String::new()
    } else {
        format!("ulimit -v {limit_kb}; ")
    };
    let script = format!("{limit}exec \"$0\" recover \"$1\"");
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg(cli()).arg(dir);
    cmd.env_remove("NPUPROF_LOG");
    cmd.output().unwrap()
}

/// Item 8: a NAME frame with id 0xffffffff (and one with a huge id next to a real one) once made the
/// export size its name table by the id (96 GiB, an abort). Recover now finishes such a spool, within a
/// 2 GiB address space, and names the range by its real name.
#[test]
fn a_hostile_name_id_is_bounded_not_allocated() {
    let root = tempfile::tempdir().unwrap();
    let dir = crafted(root.path(), |w| {
        w.start(&start_kv("4242", "0")).unwrap();
        w.name(0xffff_ffff, b"hostile").unwrap();
        w.name(0xfff0_0000, b"hostile too").unwrap();
        w.name(2, b"real_name").unwrap();
        w.thread(0, 1, 4242, b"main").unwrap();
        w.records(
            0,
            1,
            &[
                begin(1100, 0, 2),
                end(1200, 0),
                begin(1300, 0, 0xffff_ffff),
                end(1400, 0),
            ],
        )
        .unwrap();
    });
    let o = recover_limited(&dir, 2 << 20);
    assert!(o.status.success(), "{}", text(&o));
    let t = trace(&dir);
    assert_eq!(slices(&t, "real_name").len(), 1, "{}", text(&o));
    // The out-of-range id is not a name of this profile: its range is still drawn, with a placeholder.
    assert_eq!(
        t.iter()
            .filter(|e| e["ph"] == "X" && e["name"].as_str().unwrap().contains("unknown name"))
            .count(),
        1
    );
}

/// Item 1 (recover part): a spool that holds a STOP frame but whose result files are missing (the process
/// ended while its export ran) is finished by `recover`, with the stop reason of its STOP frame.
#[test]
fn recover_finishes_a_complete_spool_whose_results_are_missing() {
    let root = tempfile::tempdir().unwrap();
    let r = run_client(
        true,
        &["manual", "3", "1"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_KEEP_SPOOL", "1"),
        ],
    );
    r.assert_ok();
    let d = r.dir();
    let before = json(&d.join("profiler_metadata.json"));
    // The export "died" midway: only the spool is left, and the partial files of the interrupted writes.
    for e in std::fs::read_dir(&d).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let out = d.join("ASCEND_PROFILER_OUTPUT");
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("trace_view.json.tmp"), b"[\n{\"ph\":").unwrap();
    std::fs::write(d.join("profiler_info_0.json.tmp"), b"{").unwrap();
    let o = recover(&d, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&d.join("profiler_metadata.json"));
    assert_eq!(m["npuprof"]["stop_reason"], "npuprof_stop", "{m}");
    assert_eq!(m["npuprof"]["recovered"], true, "{m}");
    assert_eq!(
        m["npuprof"]["recorded_records"],
        before["npuprof"]["recorded_records"]
    );
    assert_eq!(step_names(&trace(&d)).len(), 3);
    assert!(!out.join("trace_view.json.tmp").exists());
    assert!(!d.join("profiler_info_0.json.tmp").exists());
    // Now finished: a second recover leaves it alone.
    let o = recover(&d, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already a finished result"));
}

/// Item 2: `recover` on the directory of a live, recording process refuses (exit 1, naming the pid) and
/// leaves the spool alone; the process's own export then succeeds.
#[test]
fn recover_refuses_a_live_profile_naming_its_pid() {
    let root = tempfile::tempdir().unwrap();
    let go = root.path().join("go");
    let mut child = common::clean_env(Command::new(spool_client()).arg(lib()).arg("live").arg(&go))
        .env("VLLM_TORCH_PROFILER_DIR", root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stdout until DIR and PID are printed.
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while value(&seen, "PID").is_none() {
        use std::io::Read;
        let mut b = [0u8; 256];
        let n = stdout.read(&mut b).unwrap();
        assert!(n > 0 && Instant::now() < deadline, "client ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&b[..n]));
    }
    let dir = PathBuf::from(value(&seen, "DIR").unwrap());
    let pid = value(&seen, "PID").unwrap();
    let spool = dir.join("FRAMEWORK/npuprof.spool");
    // Wait until the drain has written the start frame (the spool has a header and a frame).
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::metadata(&spool).map_or(0, |m| m.len()) <= 16 {
        assert!(Instant::now() < deadline, "no start frame written");
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = recover(&dir, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("pid {pid}")), "{}", text(&o));
    assert!(spool.is_file(), "the live spool was removed");
    assert!(!dir.join("profiler_metadata.json").exists());
    std::fs::write(&go, b"").unwrap();
    let out = child.wait_with_output().unwrap();
    {
        use std::io::Read;
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        seen.push_str(&rest);
    }
    assert!(
        out.status.success(),
        "{seen}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(value(&seen, "FLUSH").as_deref(), Some("0"), "{seen}");
    let m = json(&dir.join("profiler_metadata.json"));
    assert_eq!(m["npuprof"]["stop_reason"], "npuprof_stop");
    assert_eq!(step_names(&trace(&dir)).len(), 6);
}

/// Item 2, the window before the first frame: the spool is locked from the moment it has its name, so a
/// `recover` while the drain has not yet written the START frame (held back here by fault injection,
/// `hold@drain.start`, until the test has run that `recover`: certainly before the first frame, whatever
/// the timing) refuses it as live, and cannot take the lock from the writer (before: it took the lock of
/// the empty spool, the drain then wrote the whole profile unlocked, and a later `recover` exported and
/// deleted the spool of the live process).
#[test]
fn recover_before_the_first_frame_cannot_take_the_lock() {
    let root = tempfile::tempdir().unwrap();
    let go = root.path().join("go");
    let started = root.path().join("started");
    let mut child = common::clean_env(
        Command::new(spool_client())
            .arg(lib_faults())
            .arg("live")
            .arg(&go),
    )
    .env("VLLM_TORCH_PROFILER_DIR", root.path())
    .env(
        "NPUPROF_TEST_FAULTS",
        format!("hold@drain.start={}", started.display()),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while value(&seen, "PID").is_none() {
        use std::io::Read;
        let mut b = [0u8; 256];
        let n = stdout.read(&mut b).unwrap();
        assert!(n > 0 && Instant::now() < deadline, "client ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&b[..n]));
    }
    let dir = PathBuf::from(value(&seen, "DIR").unwrap());
    let spool = dir.join("FRAMEWORK/npuprof.spool");
    let early = recover(&dir, &[]);
    assert_eq!(early.status.code(), Some(1), "{}", text(&early));
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("is a live profile"),
        "{}",
        text(&early)
    );
    // Still before the first frame: the drain is held until `started` exists.
    assert!(
        std::fs::metadata(&spool).map_or(0, |m| m.len()) <= 16,
        "a frame was written while the drain was held"
    );
    std::fs::write(&started, b"").unwrap();
    // Once the drain has written its START frame, recover still refuses, naming the pid.
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::metadata(&spool).map_or(0, |m| m.len()) <= 16 {
        assert!(Instant::now() < deadline, "no start frame written");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = value(&seen, "PID").unwrap();
    let late = recover(&dir, &[]);
    assert_eq!(late.status.code(), Some(1), "{}", text(&late));
    assert!(
        String::from_utf8_lossy(&late.stderr).contains(&format!("pid {pid}")),
        "{}",
        text(&late)
    );
    std::fs::write(&go, b"").unwrap();
    let out = child.wait_with_output().unwrap();
    {
        use std::io::Read;
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        seen.push_str(&rest);
    }
    assert!(
        out.status.success(),
        "{seen}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("locked by another process"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(value(&seen, "FLUSH").as_deref(), Some("0"), "{seen}");
    let m = json(&dir.join("profiler_metadata.json"));
    assert_eq!(m["npuprof"]["stop_reason"], "npuprof_stop");
}

/// Item 3: a process that drops records (tiny rings, a flood) and is then killed: the recovered metadata
/// reports the drops as of the last counters frame, and the configuration the process ran with (not the
/// environment of `npuprof recover`).
#[test]
fn recovered_counts_and_config_are_the_workers() {
    let root = tempfile::tempdir().unwrap();
    let out = run(
        &spool_client(),
        &[lib().to_str().unwrap(), "flood_kill9", "4", "200000"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_BUFFER_KB", "4"),
            ("NPUPROF_MAX_DISK_MB", "777"),
            ("VLLM_TORCH_PROFILER_WITH_STACK", "0"),
            ("VLLM_TORCH_PROFILER_RECORD_SHAPES", "1"),
            ("NPUPROF_MSPTI_BUFFERS", "16"),
            ("NPUPROF_FLUSH_TIMEOUT_S", "999"),
        ],
    );
    use std::os::unix::process::ExitStatusExt;
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.signal(), Some(9), "{so}");
    assert_eq!(value(&so, "FAILURES").as_deref(), Some("0"), "{so}");
    let dir = PathBuf::from(value(&so, "DIR").unwrap());
    let o = recover(
        &dir,
        &[("NPUPROF_BUFFER_KB", "2048"), ("NPUPROF_MAX_DISK_MB", "5")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&dir.join("profiler_metadata.json"));
    let n = &m["npuprof"];
    assert!(
        n["dropped_records"]["ring_full"].as_u64().unwrap() > 0,
        "{m}"
    );
    // The drops by record kind travel in the counters frame too, and add up to the drops by reason.
    let d = &n["dropped_records"];
    let by_reason: u64 = [
        "ring_full",
        "after_thread_exit",
        "outside_profile_window",
        "over_disk_cap",
    ]
    .iter()
    .map(|k| d[k].as_u64().unwrap())
    .sum();
    let k = &n["dropped_by_kind"];
    let by_kind: u64 = ["unknown", "begin", "end", "mark", "step", "stack"]
        .iter()
        .map(|x| k[x].as_u64().unwrap())
        .sum();
    assert_eq!(by_kind, by_reason, "{m}");
    assert!(k["mark"].as_u64().unwrap() > 0, "{m}");
    assert!(n["counters_as_of_ns"].as_u64().is_some(), "{m}");
    assert_eq!(m["config"]["NPUPROF_BUFFER_KB"], 4, "{m}");
    assert_eq!(m["config"]["NPUPROF_MAX_DISK_MB"], 777, "{m}");
    // Every variable is recorded, not only those the metadata used to show.
    assert_eq!(m["config"]["NPUPROF_MSPTI_BUFFERS"], 16, "{m}");
    assert_eq!(m["config"]["NPUPROF_FLUSH_TIMEOUT_S"], 999, "{m}");
    assert_eq!(
        m["config"]["VLLM_TORCH_PROFILER_RECORD_SHAPES"], true,
        "{m}"
    );
    assert_eq!(
        m["config"]["VLLM_TORCH_PROFILER_DIR"],
        root.path().to_str().unwrap(),
        "{m}"
    );
}

/// Item 12: names interned before a profile (here the whole name table, about a million) are not written
/// to its spool: the profile keeps its records under a small NPUPROF_MAX_DISK_MB, and its spool's name
/// frames are exactly the names its records use.
#[test]
fn a_profile_spool_carries_only_the_names_its_records_use() {
    let root = tempfile::tempdir().unwrap();
    let n = (npuprof::record::names::MAX_NAMES - 16).to_string();
    let out = run(
        &spool_client(),
        &[lib().to_str().unwrap(), "many_names", &n],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_MAX_DISK_MB", "8"),
            ("NPUPROF_KEEP_SPOOL", "1"),
        ],
    );
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{so}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(value(&so, "DIR").unwrap());
    let m = json(&dir.join("profiler_metadata.json"));
    assert_eq!(m["npuprof"]["truncated"], false, "{m}");
    assert_eq!(slices(&trace(&dir), "used_range").len(), 5, "{m}");
    let mut names = Vec::new();
    let mut rd = Reader::open(&dir.join("FRAMEWORK/npuprof.spool")).unwrap();
    while let Some(f) = rd.next_frame() {
        if let Frame::Name(_, n) = f {
            names.push(String::from_utf8(n).unwrap());
        }
    }
    names.sort();
    assert_eq!(names, ["used_mark", "used_range"]);
}

/// Item 13: 100k thread frames (each a thread of its own) are recovered, every thread named: the host pass
/// keeps per-tid indexes instead of scanning every ring per frame (quadratic: 15 s for 100k before).
#[test]
fn recover_is_linear_in_thread_frames() {
    const N: u32 = 100_000;
    let root = tempfile::tempdir().unwrap();
    let dir = crafted(root.path(), |w| {
        w.start(&start_kv("4242", "0")).unwrap();
        w.name(2, b"work").unwrap();
        for ring in 0..N {
            w.thread(ring, 1, 10_000 + ring, format!("t{ring}").as_bytes())
                .unwrap();
            let t = 2000 + ring as u64 * 10;
            w.records(ring, 1, &[begin(t, 0, 2), end(t + 5, 0)])
                .unwrap();
        }
    });
    // A hang guard only (a quadratic pass takes minutes in a debug build).
    let (tx, rx) = std::sync::mpsc::channel();
    let d2 = dir.clone();
    std::thread::spawn(move || tx.send(recover(&d2, &[])));
    let o = rx
        .recv_timeout(Duration::from_secs(600))
        .expect("recover of 100k thread frames hung");
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&dir.join("profiler_metadata.json"));
    assert_eq!(m["npuprof"]["threads"], N, "{m}");
    let t = trace(&dir);
    assert_eq!(slices(&t, "work").len(), N as usize);
    let named = t
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .count();
    assert!(named >= N as usize);
}

/// Item 13: an `ASCEND_PROFILER_OUTPUT` replaced by a symlink is refused by name; nothing is written where
/// it points.
#[test]
fn recover_never_writes_through_a_symlinked_output_dir() {
    let root = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let dir = crafted(root.path(), |w| {
        w.start(&start_kv("4242", "0")).unwrap();
        w.name(2, b"work").unwrap();
        w.thread(0, 1, 4242, b"main").unwrap();
        w.records(0, 1, &[begin(1100, 0, 2), end(1200, 0)]).unwrap();
    });
    std::os::unix::fs::symlink(elsewhere.path(), dir.join("ASCEND_PROFILER_OUTPUT")).unwrap();
    let o = recover(&dir, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ASCEND_PROFILER_OUTPUT"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    assert!(dir.join("FRAMEWORK/npuprof.spool").is_file());
}

/// Messages: `recover` keeps the rank and pid as written in the spool; a pid or rank that no process could
/// have written (past u32) is refused by name instead of being cut to another number.
#[test]
fn recover_keeps_rank_and_pid_as_written() {
    let root = tempfile::tempdir().unwrap();
    let dir = crafted(root.path(), |w| {
        w.start(&start_kv("4000000007", "3")).unwrap();
        w.thread(0, 1, 7, b"main").unwrap();
    });
    let o = recover(&dir, &[("RANK", "5"), ("LOCAL_RANK", "6")]);
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&dir.join("profiler_metadata.json"));
    assert_eq!(m["npuprof"]["pid"], 4000000007u64, "{m}");
    assert_eq!(m["npuprof"]["rank"], 3, "{m}");
    assert!(dir.join("profiler_info_3.json").is_file());

    let root = tempfile::tempdir().unwrap();
    let dir = crafted(root.path(), |w| {
        w.start(&start_kv("4294967303", "3")).unwrap();
    });
    let o = recover(&dir, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("pid"),
        "{}",
        text(&o)
    );
}
