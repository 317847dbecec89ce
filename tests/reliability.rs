//! The reliability suite: injected panics, a concurrency storm, and hostile filesystems. Each test runs the
//! C client (tests/c/) as the runtime would and checks what is on disk afterwards.
//!
//! Long variants: `NPUPROF_LONG=1` multiplies the storm by 8 (CI runs the default size).

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// Every file under `root` is whole: no `*.tmp` left by an interrupted write, every JSON parses, every
/// CSV has a header line. Returns the number of worker directories.
fn assert_nothing_partial(root: &Path) -> usize {
    fn walk(p: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(root, &mut files);
    for f in &files {
        let name = f.to_string_lossy();
        assert!(!name.ends_with(".tmp"), "partial file left: {name}");
        if name.ends_with(".json") {
            let b = std::fs::read(f).unwrap();
            assert!(
                serde_json::from_slice::<serde_json::Value>(&b).is_ok(),
                "{name} is not valid JSON ({} bytes)",
                b.len()
            );
        }
        if name.ends_with(".csv") {
            let s = std::fs::read_to_string(f).unwrap();
            assert!(s.lines().next().is_some_and(|h| h.contains(',')), "{name}");
        }
    }
    workers(root).len()
}

/// A panic inside every exported function (inside its panic boundary) and at the deep points (inside the
/// control lock, in the drain and export threads) comes back as `NPUPROF_ERR_INTERNAL` or the documented
/// neutral value; the next call works, and a profile made afterwards is complete.
#[test]
fn a_panic_inside_every_export_is_internal_and_the_library_keeps_working() {
    let lib = lib_faults();
    let header = std::fs::read_to_string(repo().join("include/npuprof.h")).unwrap();
    // The functions of the header: `npuprof_<name>(`.
    let exports: Vec<String> = header
        .match_indices("npuprof_")
        .filter_map(|(i, _)| {
            let w: String = header[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            header[i + w.len()..].starts_with('(').then_some(w)
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(exports.len() >= 14, "{exports:?}");
    let deep = [
        "session.start.locked",
        "session.stop.locked",
        "drain.msg",
        "export.run",
    ];
    let faults: Vec<String> = exports
        .iter()
        .map(String::as_str)
        .chain(deep)
        .map(|p| format!("panic@{p}"))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_str().unwrap();
    let faults = faults.join(",");
    let r = run_client_with(
        &lib,
        true,
        &["panic"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root),
            ("NPUPROF_TEST_FAULTS", &faults),
        ],
    );
    r.assert_ok();
    // One log line per caught panic, naming where.
    for p in exports.iter().map(String::as_str).chain(deep) {
        assert!(
            r.stderr.contains(&format!("injected fault at {p}")),
            "no log line for {p}:\n{}",
            r.stderr
        );
    }
    assert_nothing_partial(tmp.path());
    // The profile after the panics is complete and passes the shared checker.
    let last = r.dir();
    let t = trace(&last);
    assert_eq!(step_names(&t).len(), 3, "{}", last.display());
    let only = tempfile::tempdir().unwrap();
    std::fs::rename(&last, only.path().join(last.file_name().unwrap())).unwrap();
    check_profile(only.path());
}

fn long() -> bool {
    std::env::var_os("NPUPROF_LONG").is_some_and(|v| v != "0")
}

/// 8 threads, 10 000 random sequences (1-8 calls each) of every exported call, racing starts, stops,
/// shutdowns and flushes against recording. No call returns an unexpected code, no file is partial, every
/// directory is a valid result, and every mark that certainly hit a running profile is in a trace or
/// counted as dropped (none lost uncounted).
#[test]
fn a_storm_of_random_calls_from_8_threads_loses_nothing_uncounted() {
    let storm = build_c("storm", &["tests/c/storm.c"], &[], &[]);
    let lib = lib();
    let tmp = tempfile::tempdir().unwrap();
    let sequences = if long() { 80_000 } else { 10_000 };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 100_000;
    let out = run(
        &storm,
        &[
            lib.to_str().unwrap(),
            "8",
            &sequences.to_string(),
            &seed.to_string(),
        ],
        &[
            ("VLLM_TORCH_PROFILER_DIR", tmp.path().to_str().unwrap()),
            // Small rings: the drop path is part of the storm.
            ("NPUPROF_BUFFER_KB", "64"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stdout.lines().any(|l| l.starts_with("FAIL ")),
        "storm (seed {seed}) failed: {:?}\n{stdout}\n{}",
        out.status,
        &stderr[stderr.len().saturating_sub(4000)..]
    );
    let val = |k: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in {stdout}"))
            .parse()
            .unwrap()
    };
    assert_eq!(val("SEQUENCES"), sequences);
    let n = assert_nothing_partial(tmp.path());
    assert!(n > 0, "the storm made no profile");
    // Marks are counted against dropped *marks*: a total over every kind would let dropped ranges hide
    // lost marks.
    // Certain marks are compared with the candidates found (storm.c), not with every mark found.
    let (mut found, mut found_candidates, mut dropped, mut dropped_marks) =
        (0u64, 0u64, 0u64, 0u64);
    for w in workers(tmp.path()) {
        let t = trace(&w);
        let count = |name: &str| {
            t.iter()
                .filter(|e| e["ph"] == "i" && e["name"] == name)
                .count() as u64
        };
        found_candidates += count("storm-candidate");
        found += count("storm-mark") + count("storm-candidate");
        let m = json(&w.join("profiler_metadata.json"));
        let d = &m["npuprof"]["dropped_records"];
        let mut here = 0;
        for k in [
            "ring_full",
            "after_thread_exit",
            "outside_profile_window",
            "over_disk_cap",
        ] {
            here += d[k].as_u64().unwrap_or_else(|| panic!("{k} in {d}"));
        }
        let by_kind = &m["npuprof"]["dropped_by_kind"];
        let kinds: u64 = ["unknown", "begin", "end", "mark", "step", "stack"]
            .iter()
            .map(|k| {
                by_kind[k]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{k} in {by_kind}"))
            })
            .sum();
        assert_eq!(
            kinds, here,
            "the drops by kind {by_kind} do not add up to the drops by reason {d}"
        );
        dropped += here;
        dropped_marks += by_kind["mark"].as_u64().unwrap();
    }
    let (marks, candidates, certain) = (val("MARKS"), val("CANDIDATES"), val("CERTAIN"));
    eprintln!(
        "storm seed {seed}: {} calls, {n} profiles, {marks} marks ({candidates} candidates, {certain} \
         certainly while running), {found} in traces ({found_candidates} candidates), {dropped} records \
         counted as dropped ({dropped_marks} marks)",
        val("CALLS")
    );
    assert!(certain > 0, "no mark was certainly recorded: {stdout}");
    assert!(found <= marks && found_candidates <= candidates && certain <= candidates);
    assert!(
        found_candidates + dropped_marks >= certain,
        "marks lost without being counted: {certain} certain, {found_candidates} candidates found, \
         {dropped_marks} marks dropped ({dropped} records of every kind) (seed {seed})"
    );
    // Every result passes the shared checker's layout, schema and trace rules, one at a time (the checker
    // takes a root of distinct ranks); the newest also passes msprof-analyze.
    let last = workers(tmp.path()).pop().unwrap();
    let one = tempfile::tempdir().unwrap();
    std::fs::rename(&last, one.path().join(last.file_name().unwrap())).unwrap();
    check_profile(one.path());
    check_each(tmp.path());
}

/// `check_profile_no_cluster` on every worker under `root`, one at a time (each in a root of its own, as
/// the cluster-free checks once wanted; these are many profiles of one process).
fn check_each(root: &Path) {
    for w in workers(root) {
        let one = tempfile::tempdir().unwrap();
        copy_dir(&w, &one.path().join(w.file_name().unwrap()));
        check_profile_no_cluster(one.path());
    }
}

/// `kill -9` while recording: no handler runs, the directory holds only the spool. `npuprof recover`
/// turns it into a valid result with every step drained before the kill; recovering twice is refused, and
/// a torn last frame (a kill in the middle of a write) is skipped and reported.
#[test]
fn kill_9_while_recording_leaves_a_spool_that_npuprof_recover_finishes() {
    let root = tempfile::tempdir().unwrap();
    let r = run_client(
        false,
        &["kill9", "6"],
        &[("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap())],
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(r.out.status.signal(), Some(9), "{}", r.stderr);
    let d = r.dir();
    assert!(!d.join("profiler_metadata.json").exists());
    let spool = d.join("FRAMEWORK/npuprof.spool");
    assert!(spool.is_file());
    // A copy with a torn last frame: a few bytes of a frame that never finished.
    let torn = tempfile::tempdir().unwrap();
    let torn_dir = torn.path().join(d.file_name().unwrap());
    std::fs::create_dir_all(torn_dir.join("FRAMEWORK")).unwrap();
    std::fs::create_dir_all(torn_dir.join("ASCEND_PROFILER_OUTPUT")).unwrap();
    let mut bytes = std::fs::read(&spool).unwrap();
    let whole = bytes.len();
    bytes.extend_from_slice(&[4, 0, 0, 0, 200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(torn_dir.join("FRAMEWORK/npuprof.spool"), &bytes).unwrap();

    let cli = env!("CARGO_BIN_EXE_npuprof");
    let rec = |dir: &Path| run(Path::new(cli), &["recover", dir.to_str().unwrap()], &[]);
    let o = rec(&d);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let t = trace(&d);
    assert_eq!(step_names(&t).len(), 6, "{out}");
    assert_eq!(slices(&t, "model_forward").len(), 6);
    assert_proper_nesting(&t);
    let m = json(&d.join("profiler_metadata.json"));
    assert!(
        m["npuprof"]["stop_reason"]
            .as_str()
            .unwrap()
            .starts_with("recovered"),
        "{m}"
    );
    // Recovering again is refused: the result is not rewritten.
    let o = rec(&d);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already a finished result"));
    check_profile(root.path());

    let o = rec(&torn_dir);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains(&format!("torn last frame at byte {whole}")),
        "{out}"
    );
    assert_eq!(step_names(&trace(&torn_dir)).len(), 6);
    let m = json(&torn_dir.join("profiler_metadata.json"));
    assert!(
        m["npuprof"]["spool_error"]
            .as_str()
            .is_some_and(|e| e.contains("torn")),
        "{m}"
    );
    // Not a worker directory: a clear error, exit 1.
    let o = rec(root.path());
    assert_eq!(o.status.code(), Some(1));
}

/// A small tmpfs mounted for one test (needs CAP_SYS_ADMIN); unmounted on drop. `None` where mounting is
/// not possible: the callers fall back to RLIMIT_FSIZE or an unusable path, and say so.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "npuprof-test"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then_some(Tmpfs { dir })
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn remount_ro(&self) -> bool {
        std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output();
    }
}

/// A full disk (a 3 MB tmpfs, or RLIMIT_FSIZE where mounting is not allowed): the profile that cannot
/// grow stops recording by itself, its export fails with NPUPROF_ERR_IO and a message naming the file,
/// the process goes on, and the profile written before is intact.
#[test]
fn a_full_disk_stops_recording_fails_with_io_and_keeps_earlier_profiles() {
    let fs = Tmpfs::mount("3m");
    let plain = tempfile::tempdir().unwrap();
    let (root, mode) = match &fs {
        Some(t) => (t.path().to_path_buf(), "tmpfs"),
        None => {
            eprintln!("note: cannot mount a tmpfs here; using RLIMIT_FSIZE (2 MB per file)");
            (plain.path().to_path_buf(), "rlimit")
        }
    };
    let r = run_client(
        false,
        &["diskfull", mode],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.to_str().unwrap()),
            ("NPUPROF_BUFFER_KB", "1024"),
        ],
    );
    r.assert_ok();
    let v = |k: &str| r.value(k).unwrap_or_else(|| panic!("{k}:\n{}", r.stdout));
    assert_eq!(v("ALIVE"), "1");
    assert_eq!(v("STOPPED_ITSELF"), "1", "recording went on: {}", r.stdout);
    assert_eq!(
        v("STOPB"),
        "3",
        "the stop after it stopped itself: NOT_RUNNING"
    );
    assert_eq!(
        v("FLUSHB"),
        "5",
        "flush reports NPUPROF_ERR_IO:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("No space left on device") || r.stderr.contains("File too large"),
        "{}",
        r.stderr
    );
    // The earlier profile is intact and valid; nothing anywhere is partial.
    let a = PathBuf::from(v("DIRA"));
    assert_eq!(step_names(&trace(&a)).len(), 3);
    assert_nothing_partial(&root);
    let one = tempfile::tempdir().unwrap();
    copy_dir(&a, &one.path().join(a.file_name().unwrap()));
    check_profile(one.path());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// A read-only output root (a tmpfs remounted read-only; else a path under /proc, which nobody can create
/// in): `npuprof_start` fails with NPUPROF_ERR_IO every time, the process goes on, nothing is left behind.
#[test]
fn a_read_only_output_root_fails_start_with_io() {
    let fs = Tmpfs::mount("1m").filter(|t| t.remount_ro());
    let root = match &fs {
        Some(t) => t.path().join("profiles"),
        None => {
            eprintln!("note: cannot mount a read-only tmpfs here; using a path under /proc");
            PathBuf::from("/proc/self/npuprof-profiles")
        }
    };
    for dlopen in [false, true] {
        let r = run_client(
            dlopen,
            &["readonly"],
            &[("VLLM_TORCH_PROFILER_DIR", root.to_str().unwrap())],
        );
        r.assert_ok();
        assert_eq!(r.value("ALIVE").as_deref(), Some("1"));
        assert!(
            r.stderr.contains(root.to_str().unwrap()),
            "the message names the directory:\n{}",
            r.stderr
        );
    }
}

/// fork() from a worker thread while three other threads record and intern names: the child has no
/// running profile, starts its own into its own directory, and the parent's profile is complete (every
/// thread's ranges properly nested, the forking moment included).
#[test]
fn fork_from_a_worker_thread_while_others_record() {
    for dlopen in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let r = run_client(
            dlopen,
            &["fork_threads"],
            &[("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap())],
        );
        r.assert_ok();
        assert_eq!(r.value("CHILD_BAD").as_deref(), Some("0"), "{}", r.stdout);
        let child = PathBuf::from(r.value("CHILD_DIR").unwrap());
        let parent = r.dir();
        assert_ne!(child, parent);
        let tc = trace(&child);
        assert_eq!(
            slices(&tc, "model_forward").len(),
            1,
            "only the child's own"
        );
        assert!(tc.iter().any(|e| e["name"] == "child-name"));
        let tp = trace(&parent);
        assert!(slices(&tp, "model_forward").len() >= 3);
        assert_proper_nesting(&tp);
        assert_nothing_partial(root.path());
        check_each(root.path());
    }
}

/// dlclose while idle (after a profile, threads alive but nothing recording): nothing is unmapped, the
/// library keeps working.
#[test]
fn dlclose_while_idle_keeps_the_library_working() {
    let root = tempfile::tempdir().unwrap();
    let r = run_client(
        true,
        &["dlclose_idle"],
        &[("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap())],
    );
    r.assert_ok();
    assert_eq!(slices(&trace(&r.dir()), "model_forward").len(), 1);
    assert_eq!(workers(root.path()).len(), 2);
}

/// The host drain stalled (held by fault injection, `hold@drain.batch`, as on a blocked disk, until the
/// client has joined its 4 recording threads) while they record 4500 records each into 2048-record rings:
/// the recording threads never wait for it (the run finishes, rings overflow: at most one drain pass
/// before the hold empties a ring once, so more than 2 x 2048 records per thread certainly overflow,
/// whatever the timing), and every issued record is either in the spool or counted as dropped, exactly.
#[test]
fn a_stalled_drain_never_blocks_recording_and_counts_every_drop() {
    let root = tempfile::tempdir().unwrap();
    let release = root.path().join("release");
    let faults = format!("hold@drain.batch={}", release.display());
    let r = run_client_with(
        &lib_faults(),
        false,
        &["manual", "2", "4", "1500", release.to_str().unwrap()],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_BUFFER_KB", "32"),
            ("NPUPROF_TEST_FAULTS", &faults),
        ],
    );
    r.assert_ok();
    let m = json(&r.dir().join("profiler_metadata.json"));
    let m = &m["npuprof"];
    let dropped = m["dropped_records"]["ring_full"].as_u64().unwrap();
    let recorded = m["recorded_records"].as_u64().unwrap();
    // The client's `manual 2 4 1500`: 2 steps, 2 forwards of 9 ranges (push + pop) per step, 4 marks per
    // step, and 4 workers making 4500 records each.
    let issued = 2 + 2 * 9 * 2 + 2 * 4 + 4 * 4500;
    eprintln!(
        "stalled host drain: {issued} issued, {recorded} spooled, {dropped} dropped and counted"
    );
    assert_eq!(recorded + dropped, issued, "{m}");
    // Each worker's ring is emptied at most once before the hold (by the drain pass that then holds), so
    // each worker drops at least 4500 - 2 x 2048 records.
    assert!(
        dropped >= 4 * (4500 - 2 * 2048),
        "the held drain must overflow each worker's 2048-record ring: {m}"
    );
    let t = trace(&r.dir());
    assert_proper_nesting(&t);
}

/// Under `NPUPROF_TEST_SANITIZE` (run-tests' sanitizer section), the C code really is instrumented: a
/// heap overflow is reported by AddressSanitizer and a signed overflow by UndefinedBehaviorSanitizer, each
/// fatal. Without it, the same program runs to its end.
#[test]
fn the_sanitizer_build_catches_a_heap_overflow_and_undefined_behaviour() {
    let exe = build_c("asan_canary", &["tests/c/asan_canary.c"], &[], &[]);
    for (mode, report) in [
        ("asan", "AddressSanitizer: heap-buffer-overflow"),
        ("ubsan", "runtime error: signed integer overflow"),
    ] {
        let n = if mode == "asan" { "9" } else { "2" };
        let o = run(&exe, &[mode, n], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        if sanitize() {
            assert!(
                !o.status.success() && err.contains(report),
                "{mode}: not reported: {:?}\n{err}",
                o.status
            );
        } else {
            assert!(o.status.code().is_some(), "{mode}: {:?}\n{err}", o.status);
        }
    }
}
