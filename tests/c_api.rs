//! End-to-end tests through the C ABI: a C client (tests/c/client.c) loads libnpuprof.so by LD_PRELOAD (weak
//! symbols) and by dlopen, exactly as a runtime would, and the results on disk are checked.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn both<F: Fn(bool)>(f: F) {
    for dlopen in [false, true] {
        f(dlopen);
    }
}

/// The invariants every result directory must satisfy, whatever the scenario.
fn assert_valid_worker(dir: &Path, rank: u32) -> (Vec<Value>, Value) {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with("_ascend_ms"), "{name}");
    let parts: Vec<&str> = name.split('_').collect();
    let stamp = parts[parts.len() - 3];
    assert!(
        stamp.len() == 17 && stamp.bytes().all(|b| b.is_ascii_digit()),
        "timestamp field of {name}"
    );
    assert!(dir.join(format!("profiler_info_{rank}.json")).is_file());
    let info = json(&dir.join(format!("profiler_info_{rank}.json")));
    assert_eq!(info["ms_profiler_info"]["rank_id"], rank);
    let meta = json(&dir.join("profiler_metadata.json"));
    let out = dir.join("ASCEND_PROFILER_OUTPUT");
    let t = trace(dir);
    for e in &t {
        let ph = e["ph"].as_str().unwrap();
        assert!(e["pid"].is_u64() && e["pid"].as_u64().unwrap() < 1 << 31);
        if ph != "M" {
            let ts = e["ts"].as_str().expect("ts string");
            let (_, frac) = ts.split_once('.').expect("ts has decimals");
            assert_eq!(frac.len(), 3, "{ts}");
        }
        if ph == "X" {
            assert!(dur_ns(e) >= 0);
        }
    }
    let st = csv(&out.join("step_trace_time.csv"));
    assert_eq!(
        st[0].join(","),
        "Device_id,Step,Computing,Communication(Not Overlapped),Overlapped,Communication,Free,Stage,Bubble,\
Communication(Not Overlapped and Exclude Receive),Preparing"
    );
    assert!(st.len() >= 2);
    // A host-only result has no kernel_details.csv (MindSpore writes none at LevelNone; a header-only one
    // makes msprof-analyze's advisor report "No valid op info"); a device result has rows in it.
    let kd_path = out.join("kernel_details.csv");
    if meta["npuprof"]["backend"] == "host" {
        assert!(
            !kd_path.exists(),
            "a host-only result has no kernel_details.csv"
        );
    }
    let kd = if kd_path.exists() {
        let kd = csv(&kd_path);
        assert!(kd.len() >= 2, "kernel_details.csv without rows");
        kd
    } else {
        vec![npuprof::export::csv::KERNEL_HEADER
            .split(',')
            .map(String::from)
            .collect()]
    };
    for col in [
        "Name",
        "Type",
        "Accelerator Core",
        "Start Time(us)",
        "Duration(us)",
        "Wait Time(us)",
    ] {
        assert!(kd[0].iter().any(|c| c == col), "kernel_details lacks {col}");
    }
    let os = csv(&out.join("op_statistic.csv"));
    assert_eq!(
        os[0].join(","),
        "Device_id,OP Type,Core Type,Count,Total Time(us),Min Time(us),Avg Time(us),Max Time(us),Ratio(%)"
    );
    // No temporary or partial files left behind.
    for entry in walk(dir) {
        assert!(
            !entry.to_string_lossy().ends_with(".tmp"),
            "{}",
            entry.display()
        );
    }
    (t, meta)
}

fn walk(d: &Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![];
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        }
        v.push(p);
    }
    v
}

/// Every `attention`/`mlp` slice lies inside a `model_forward` slice of the same thread.
fn assert_nested(t: &[Value]) {
    let fwd = slices(t, "model_forward");
    for inner in slices(t, "attention").into_iter().chain(slices(t, "mlp")) {
        let (s, e) = (ts_ns(inner), ts_ns(inner) + dur_ns(inner));
        assert!(
            fwd.iter()
                .any(|f| f["tid"] == inner["tid"] && ts_ns(f) <= s && e <= ts_ns(f) + dur_ns(f)),
            "{inner} not nested in a model_forward"
        );
    }
}

#[test]
fn manual_logic_start_step_stop_via_preload_and_dlopen() {
    both(|dlopen| {
        let root = tempfile::tempdir().unwrap();
        let r = run_client(
            dlopen,
            &["manual", "5", "2"],
            &[
                ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
                ("RANK", "3"),
            ],
        );
        r.assert_ok();
        assert_eq!(
            r.value("LINK").unwrap(),
            if dlopen { "dlopen" } else { "preload" }
        );
        let ws = workers(root.path());
        assert_eq!(ws.len(), 1);
        assert_eq!(r.dir(), ws[0]);
        let (t, meta) = assert_valid_worker(&ws[0], 3);
        assert_eq!(
            step_names(&t),
            (1..=5)
                .map(|i| format!("ProfilerStep#{i}"))
                .collect::<Vec<_>>()
        );
        assert_eq!(slices(&t, "model_forward").len(), 5);
        assert_eq!(slices(&t, "attention").len(), 20);
        assert_eq!(slices(&t, "mlp").len(), 20);
        assert_eq!(slices(&t, "worker_task").len(), 2000);
        let marks = t
            .iter()
            .filter(|e| e["ph"] == "i" && e["name"] == "kv_cache_swap")
            .count();
        assert_eq!(marks, 20 + 2000);
        assert_nested(&t);
        assert_proper_nesting(&t);
        // Steps follow each other, each drawn ending 1 ns before the next begins (msprof-analyze compare's
        // tree builder nests a step that begins exactly where the previous one ends), and carry their token
        // counts.
        let mut steps: Vec<&Value> = t
            .iter()
            .filter(|e| {
                e["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("ProfilerStep#"))
            })
            .collect();
        steps.sort_by_key(|e| ts_ns(e));
        for w in steps.windows(2) {
            assert_eq!(
                ts_ns(w[0]) + dur_ns(w[0]) + 1,
                ts_ns(w[1]),
                "a step ends 1 ns before the next"
            );
            assert_eq!(w[0]["cat"], "cpu_op", "a step is a framework op");
            assert!(dur_us(w[0]) >= 2000.0, "a step sleeps 2 ms: {}", w[0]);
        }
        assert_eq!(steps[0]["args"]["num_scheduled_tokens"], 100);
        // Three recording threads, named.
        let threads: Vec<&Value> = t.iter().filter(|e| e["name"] == "thread_name").collect();
        assert_eq!(threads.len(), 3, "{threads:?}");
        assert!(t
            .iter()
            .any(|e| e["name"] == "process_name" && e["args"]["name"] == "MindSpore"));
        // step_trace_time: one row per step, Computing = step time.
        let st = csv(&ws[0].join("ASCEND_PROFILER_OUTPUT/step_trace_time.csv"));
        assert_eq!(st.len(), 6);
        for (i, row) in st[1..].iter().enumerate() {
            assert_eq!(row[1], (i + 1).to_string());
            let comp: f64 = row[2].parse().unwrap();
            assert!(comp > 0.0);
            if i < 4 {
                assert!(
                    (comp - dur_us(steps[i])).abs() < 0.002,
                    "{row:?} vs {}",
                    steps[i]
                );
            }
        }
        let m = &meta["npuprof"];
        assert_eq!(m["steps"], 5);
        assert_eq!(m["threads"], 3);
        assert_eq!(m["dropped_records"]["ring_full"], 0);
        assert_eq!(m["unbalanced_pops"], 0);
        assert_eq!(m["trigger"], "manual");
        assert_eq!(m["truncated"], false);
        // ranges: 5 fwd + 40 inner + 2000 worker = 2045 begin+end pairs; marks 2020; steps 5.
        assert_eq!(m["recorded_records"], 2045 * 2 + 2020 + 5);
        assert!(
            !ws[0].join("FRAMEWORK/npuprof.spool").exists(),
            "spool removed after export"
        );
        assert!(
            r.stderr
                .contains("Parsing: [####################] 3/3 Done"),
            "{}",
            r.stderr
        );
    });
}

fn old_logic(
    threshold: &str,
    stop_step: Option<&str>,
    tokens: &[&str],
) -> (ClientRun, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
        ("PROFILER_TOKEN_THRESHOLD", threshold),
    ];
    if let Some(s) = stop_step {
        env.push(("PROFILER_STOP_STEP", s));
    }
    let mut args = vec!["old"];
    args.extend_from_slice(tokens);
    let r = run_client(false, &args, &env);
    r.assert_ok();
    (r, root)
}

fn running_pattern(r: &ClientRun, n: usize) -> String {
    (1..=n)
        .map(|i| r.value(&format!("RUNNING_AFTER_STEP_{i}")).unwrap())
        .collect()
}

#[test]
fn old_logic_starts_at_threshold_and_records_exactly_stop_step_steps() {
    for (stop, want_steps) in [("3", 3usize), ("1", 1), ("6", 6)] {
        let tokens = [
            "10", "50", "100", "5", "7", "5", "5", "5", "5", "5", "200", "300",
        ];
        let (r, root) = old_logic("100", Some(stop), &tokens);
        // Starts at the 3rd step (100 tokens), runs for `stop` steps, then stops by itself, once.
        let mut want = String::from("00");
        want.push_str(&"1".repeat(want_steps));
        want.push_str(&"0".repeat(tokens.len() - 2 - want_steps));
        assert_eq!(running_pattern(&r, tokens.len()), want, "stop step {stop}");
        let ws = workers(root.path());
        assert_eq!(ws.len(), 1, "the old logic fires once per process");
        let (t, meta) = assert_valid_worker(&ws[0], 0);
        assert_eq!(
            step_names(&t),
            (1..=want_steps)
                .map(|i| format!("ProfilerStep#{i}"))
                .collect::<Vec<_>>()
        );
        // ProfilerStep#1 is the triggering step (100 tokens).
        assert_eq!(
            slices(&t, "ProfilerStep#1")[0]["args"]["num_scheduled_tokens"],
            100
        );
        // Each recorded step contains the forward that followed its step call, and is complete.
        assert_eq!(slices(&t, "model_forward").len(), want_steps);
        assert_proper_nesting(&t);
        assert_eq!(meta["npuprof"]["stop_reason"], "PROFILER_STOP_STEP reached");
        assert_eq!(meta["npuprof"]["started_by"], "PROFILER_TOKEN_THRESHOLD");
        let st = csv(&ws[0].join("ASCEND_PROFILER_OUTPUT/step_trace_time.csv"));
        assert_eq!(st.len(), want_steps + 1);
    }
}

#[test]
fn old_logic_default_stop_step_is_five_and_an_empty_threshold_is_unset() {
    let tokens = ["0", "0", "1", "0", "0", "0", "0", "0", "0"];
    let (r, root) = old_logic("1", None, &tokens);
    assert_eq!(running_pattern(&r, tokens.len()), "001111100");
    let ws = workers(root.path());
    let (t, _) = assert_valid_worker(&ws[0], 0);
    assert_eq!(step_names(&t).len(), 5);
    // The one rule for empty values (docs/configuration.md): `PROFILER_TOKEN_THRESHOLD=` is unset, so the
    // new logic: no step starts a profile.
    let (r, root) = old_logic("", None, &tokens);
    assert_eq!(running_pattern(&r, tokens.len()), "000000000");
    assert!(workers(root.path()).is_empty());
}

#[test]
fn old_logic_manual_stop_ends_an_auto_profile_early() {
    // A large PROFILER_STOP_STEP: the client stops manually after the 4 steps it makes.
    let tokens = ["1", "1", "1", "1"];
    let (r, root) = old_logic("1", Some("1000"), &tokens);
    assert_eq!(running_pattern(&r, 4), "1111");
    let ws = workers(root.path());
    let (t, meta) = assert_valid_worker(&ws[0], 0);
    assert_eq!(step_names(&t).len(), 4);
    assert_eq!(meta["npuprof"]["stop_reason"], "npuprof_stop");
}

#[test]
fn disabled_when_dir_unset_every_call_is_safe() {
    both(|dlopen| {
        let r = run_client(dlopen, &["disabled"], &[("PROFILER_TOKEN_THRESHOLD", "1")]);
        r.assert_ok();
        assert_eq!(r.value("DIR").unwrap(), "");
        assert!(r.stderr.contains("VLLM_TORCH_PROFILER_DIR"), "{}", r.stderr);
    });
    // Set but empty is disabled too.
    let r = run_client(false, &["disabled"], &[("VLLM_TORCH_PROFILER_DIR", "")]);
    r.assert_ok();
}

#[test]
fn misuse_gets_named_error_codes_and_nothing_written_is_lost() {
    both(|dlopen| {
        let root = tempfile::tempdir().unwrap();
        let r = run_client(
            dlopen,
            &["misuse"],
            &[("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap())],
        );
        r.assert_ok();
        let dirs = r.values("DIR");
        assert_eq!(dirs.len(), 2);
        assert_ne!(dirs[0], dirs[1]);
        assert_eq!(workers(root.path()).len(), 2);
        let first = Path::new(&dirs[0]);
        let (t, meta) = assert_valid_worker(first, 0);
        let m = &meta["npuprof"];
        assert_eq!(m["unbalanced_pops"], 2);
        assert_eq!(m["ranges_closed_at_stop"], 1);
        let a = slices(&t, "a");
        assert_eq!(a.len(), 2);
        assert!(a.iter().any(|e| e["args"]["npuprof"] == "closed at stop"));
        assert_eq!(slices(&t, "[unknown name #0]").len(), 1, "range with id 0");
        assert!(t
            .iter()
            .any(|e| e["ph"] == "i" && e["name"] == "[unknown name #987654]"));
        // The second profile (after shutdown) is complete too.
        let (t2, _) = assert_valid_worker(Path::new(&dirs[1]), 0);
        assert_eq!(slices(&t2, "a").len(), 1);
        // Every misuse was logged with its reason.
        assert!(
            r.stderr.contains("npuprof_stop: no profile is recording"),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains("npuprof_start: a profile is already recording"),
            "{}",
            r.stderr
        );
    });
}

#[test]
fn any_name_bytes_are_escaped_not_rejected() {
    let root = tempfile::tempdir().unwrap();
    let r = run_client(
        false,
        &["names"],
        &[("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap())],
    );
    r.assert_ok();
    let (t, _) = assert_valid_worker(&r.dir(), 0);
    for want in [
        "quote\"d",
        "back\\slash",
        "ctl\u{1}\t\n",
        "bad\\xff\\xfe",
        "comma,name",
        "中文",
    ] {
        assert_eq!(slices(&t, want).len(), 1, "range {want:?}");
        assert_eq!(
            t.iter()
                .filter(|e| e["ph"] == "i" && e["name"] == want)
                .count(),
            1,
            "mark {want:?}"
        );
    }
}

#[test]
fn back_to_back_profiles_get_their_own_directories() {
    let root = tempfile::tempdir().unwrap();
    let r = run_client(
        false,
        &["two"],
        &[("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap())],
    );
    r.assert_ok();
    let dirs = r.values("DIR");
    assert_eq!(dirs.len(), 2);
    assert_ne!(dirs[0], dirs[1]);
    for d in &dirs {
        let (t, _) = assert_valid_worker(Path::new(d), 0);
        assert_eq!(step_names(&t).len(), 3);
        assert_eq!(slices(&t, "model_forward").len(), 3);
        assert_proper_nesting(&t);
    }
}

#[test]
fn invalid_environment_values_warn_and_use_defaults() {
    let root = tempfile::tempdir().unwrap();
    let r = run_client(
        false,
        &["manual", "2", "0"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("VLLM_TORCH_PROFILER_WITH_STACK", "maybe"),
            ("NPUPROF_BUFFER_KB", "huge"),
            ("NPUPROF_LOG", "info"),
        ],
    );
    r.assert_ok();
    assert!(
        r.stderr
            .contains("VLLM_TORCH_PROFILER_WITH_STACK=\"maybe\" is not a boolean")
            && r.stderr.contains("using false"),
        "{}",
        r.stderr
    );
    assert!(r
        .stderr
        .contains("NPUPROF_BUFFER_KB=\"huge\" is not an unsigned integer; using 1024"));
    let meta = json(&r.dir().join("profiler_metadata.json"));
    assert_eq!(meta["config"]["VLLM_TORCH_PROFILER_WITH_STACK"], false);
    assert_eq!(meta["config"]["NPUPROF_BUFFER_KB"], 1024);
}

/// Issue 17: the metadata's `"config"` block is written from the one variable list, so every variable npuprof
/// reads is in it (it used to omit the MSPTI, control, log, rank and flush variables), each with its value in
/// effect.
#[test]
fn the_metadata_config_block_has_every_variable_read() {
    let root = tempfile::tempdir().unwrap();
    let r = run_client(
        false,
        &["manual", "2", "0"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_BACKEND", "host"),
            ("NPUPROF_LOG", "warn"),
            ("NPUPROF_MSPTI_BUFFERS", "16"),
            ("NPUPROF_CONTROL", "0"),
            ("RANK", "3"),
        ],
    );
    r.assert_ok();
    let meta = json(&r.dir().join("profiler_metadata.json"));
    let c = meta["config"].as_object().expect("a config object");
    for name in npuprof::config::VARIABLES {
        assert!(c.contains_key(*name), "{name} missing from {c:?}");
    }
    assert_eq!(c.len(), npuprof::config::VARIABLES.len(), "{c:?}");
    assert_eq!(c["NPUPROF_LOG"], "warn");
    assert_eq!(c["NPUPROF_MSPTI_BUFFERS"], 16);
    assert_eq!(c["NPUPROF_MSPTI_API"], true);
    assert_eq!(c["NPUPROF_CONTROL"], false);
    // The rank came from RANK: it has the value, the variables it took precedence over none.
    assert_eq!(c["RANK"], 3);
    assert_eq!(c["NPUPROF_RANK"], Value::Null);
    assert_eq!(c["PROFILER_TOKEN_THRESHOLD"], Value::Null);
}

#[test]
fn with_stack_adds_call_stacks_to_ranges() {
    let root = tempfile::tempdir().unwrap();
    let r = run_client(
        false,
        &["manual", "1", "0"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("VLLM_TORCH_PROFILER_WITH_STACK", "true"),
        ],
    );
    r.assert_ok();
    let t = trace(&r.dir());
    let f = slices(&t, "model_forward");
    let stack = f[0]["args"]["Call stack"].as_str().expect("Call stack arg");
    // The client is built with -g but dladdr sees only dynamic symbols; the caller module is named.
    assert!(stack.contains("client_preload"), "{stack}");
    assert!(stack.split(';').count() >= 2, "{stack}");
}

#[test]
fn tiny_buffers_drop_and_count_instead_of_blocking() {
    let root = tempfile::tempdir().unwrap();
    // 4 KiB = 256 records per thread; each worker makes 3000 records between two drains.
    let r = run_client(
        false,
        &["manual", "2", "4"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_BUFFER_KB", "4"),
        ],
    );
    r.assert_ok();
    let (t, meta) = assert_valid_worker(&r.dir(), 0);
    let m = &meta["npuprof"];
    let dropped = m["dropped_records"]["ring_full"].as_u64().unwrap();
    let recorded = m["recorded_records"].as_u64().unwrap();
    // Issued: 2 steps + 2*(1 fwd + 8 inner ranges)*2 + 2*4 marks + 4 workers * 1000 * 3.
    let issued = 2 + 2 * 9 * 2 + 2 * 4 + 4 * 3000;
    assert_eq!(
        recorded + dropped,
        issued,
        "recorded {recorded} + dropped {dropped}"
    );
    assert!(
        dropped > 0,
        "a 256-record ring must overflow with 4 busy threads"
    );
    // Whatever was kept is well-formed: no slice with a negative duration, the trace loads.
    assert!(t.iter().all(|e| e["ph"] != "X" || dur_ns(e) >= 0));
    assert_proper_nesting(&t);
}

/// Return from `main`, and `exit()` called on another thread (the runtime's `sys.exit` path), while
/// recording, by LD_PRELOAD and by dlopen: the exit hook finishes the profile, nothing is partial.
#[test]
fn exit_without_stop_does_not_hang_or_leave_corrupt_files() {
    // (scenario, model_forward slices: the main thread's, and the exiting thread's)
    for (scenario, forwards) in [("exit_running", 1), ("exit_call", 2)] {
        both(|dlopen| {
            let root = tempfile::tempdir().unwrap();
            let r = run_client(
                dlopen,
                &[scenario],
                &[("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap())],
            );
            r.assert_ok();
            let d = r.dir();
            let m = json(&d.join("profiler_metadata.json"));
            assert_eq!(
                m["npuprof"]["stop_reason"],
                "process exit without npuprof_stop"
            );
            assert_eq!(slices(&trace(&d), "model_forward").len(), forwards);
            // Whatever exists is complete: JSON files parse, no partial .tmp remains.
            for p in walk(&d) {
                let s = p.to_string_lossy();
                assert!(!s.ends_with(".tmp"), "{s}");
                if s.ends_with(".json") {
                    json(&p);
                }
            }
        });
    }
}

#[test]
fn loading_the_library_starts_no_thread_and_creates_nothing() {
    both(|dlopen| {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("not-yet");
        let r = run_client(
            dlopen,
            &["loadonly"],
            &[
                ("VLLM_TORCH_PROFILER_DIR", root.to_str().unwrap()),
                ("PROFILER_TOKEN_THRESHOLD", "1"),
            ],
        );
        r.assert_ok();
        // (Compared with the count before loading: qemu-user adds a thread of its own.)
        let before = r.value("THREADS_BEFORE_LOAD").unwrap();
        assert_eq!(r.value("THREADS_AFTER_LOAD").unwrap(), before);
        assert_eq!(r.value("THREADS_AFTER_VERSION").unwrap(), before);
        assert!(!root.exists(), "nothing is created before npuprof_start");
        assert!(r.stderr.is_empty(), "nothing logged at load: {}", r.stderr);
    });
}

#[test]
fn max_disk_mb_ends_the_profile_cleanly_and_marks_it_truncated() {
    let root = tempfile::tempdir().unwrap();
    // 4 threads x 40 000 x 3 records = 7.7 MB of spool against a 1 MB cap.
    let r = run_client(
        false,
        &["flood", "4", "40000"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_MAX_DISK_MB", "1"),
            ("NPUPROF_BUFFER_KB", "4096"),
        ],
    );
    r.assert_ok();
    assert_eq!(
        r.value("RUNNING_AT_END").unwrap(),
        "0",
        "the cap stops recording"
    );
    assert_eq!(
        r.stderr.matches("reached NPUPROF_MAX_DISK_MB").count(),
        1,
        "{}",
        r.stderr
    );
    let (t, meta) = assert_valid_worker(&r.dir(), 0);
    let m = &meta["npuprof"];
    assert_eq!(m["truncated"], true);
    assert_eq!(m["stop_reason"], "NPUPROF_MAX_DISK_MB reached");
    assert!(!t.is_empty());
    assert!(m["dropped_records"]["over_disk_cap"].as_u64().unwrap() > 0);
    // The warning gives exact sizes: the cap in bytes and the spool's bytes (not "0 MB").
    let spool = m["spool_bytes"].as_u64().unwrap();
    assert!(
        r.stderr.contains("(1048576 bytes;") && r.stderr.contains(&format!("holds {spool} bytes")),
        "{}",
        r.stderr
    );
    assert!(spool < (1 << 20) + (256 << 10), "{m}");
    let total: u64 = walk(&r.dir())
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    assert!(total < 3 << 20, "result uses {total} bytes for a 1 MB cap");
}

#[test]
fn dlclose_while_recording_does_not_unmap_or_hang() {
    let root = tempfile::tempdir().unwrap();
    let r = run_client(
        true,
        &["dlclose"],
        &[("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap())],
    );
    r.assert_ok();
    let (t, _) = assert_valid_worker(&r.dir(), 0);
    assert_eq!(slices(&t, "model_forward").len(), 2);
}

#[test]
fn a_vanished_output_directory_fails_the_export_with_io_and_the_next_profile_works() {
    let root = tempfile::tempdir().unwrap();
    let r = run_client(
        false,
        &["vanish"],
        &[("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap())],
    );
    r.assert_ok();
    assert!(r.stderr.contains("npuprof_flush: cannot"), "{}", r.stderr);
    let (t, _) = assert_valid_worker(&r.dir(), 0);
    assert_eq!(slices(&t, "model_forward").len(), 1);
    assert_eq!(
        workers(root.path()).len(),
        1,
        "the vanished one is not recreated"
    );
}

#[test]
fn a_forked_child_starts_clean_and_both_profiles_are_complete() {
    let root = tempfile::tempdir().unwrap();
    // A child flush that waits on the parent's threads (they do not exist in the child) is never answered:
    // it fails with NPUPROF_FLUSH_TIMEOUT_S's error, which the child reports as CHILD_BAD=1. The timeout
    // only catches that hang: 100 s is far beyond any legitimate flush of a few records (also under qemu),
    // and the child's two flushes stay within run_client's own 300 s limit.
    let r = run_client(
        false,
        &["fork"],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_FLUSH_TIMEOUT_S", "100"),
        ],
    );
    r.assert_ok();
    assert_eq!(
        r.value("CHILD_BAD").unwrap(),
        "0",
        "a call in the forked child failed (a flush waiting on threads that do not exist?)\n{}\n{}",
        r.stdout,
        r.stderr
    );
    let child = std::path::PathBuf::from(r.value("CHILD_DIR").unwrap());
    let parent = r.dir();
    assert_ne!(child, parent);
    let (tc, _) = assert_valid_worker(&child, 0);
    let (tp, _) = assert_valid_worker(&parent, 0);
    // forward(n) is one model_forward with n attention layers.
    assert_eq!(
        slices(&tc, "model_forward").len(),
        1,
        "the child records only its own profile"
    );
    assert_eq!(slices(&tc, "attention").len(), 3);
    assert_eq!(
        slices(&tp, "model_forward").len(),
        2,
        "the parent's profile spans the fork"
    );
    assert_eq!(slices(&tp, "attention").len(), 4);
    let pid_of =
        |t: &[serde_json::Value]| t.iter().find(|e| e["ph"] == "X").unwrap()["pid"].clone();
    assert_ne!(pid_of(&tc), pid_of(&tp));
    assert_eq!(workers(root.path()).len(), 2);
}
