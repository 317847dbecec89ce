use super::*;
use std::collections::HashMap;

fn cfg(vars: &[(&str, &str)]) -> Config {
    let m: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    Config::from_lookup(&|k| m.get(k).cloned())
}

#[test]
fn defaults_disable_profiling_and_select_the_new_logic() {
    let c = cfg(&[]);
    assert_eq!(c.profiler_dir, None);
    assert_eq!(c.trigger, Trigger::Manual);
    assert_eq!(c.buffer_kb, 1024);
    assert_eq!(c.max_disk_mb, 4096);
    assert_eq!(c.rank, 0);
    assert!(!c.with_stack && !c.record_shapes && !c.with_flops && !c.with_profile_memory);
    assert!(c.warnings.is_empty());
    assert_eq!(c.ring_capacity(), 65536);
}

/// Issue 15 item 10: a flush waits at least as long as the device steps it waits for. Unset, its timeout
/// covers the vendor stop and msprof (with the margin); set shorter, it is kept with one warning (unless
/// the backend has no device step).
#[test]
fn the_flush_timeout_covers_the_device_steps_or_warns() {
    assert_eq!(cfg(&[]).flush_timeout_s, 60 + 600 + DEVICE_STEP_MARGIN_S);
    let c = cfg(&[
        ("NPUPROF_MSPROF_TIMEOUT_S", "1000"),
        ("NPUPROF_VENDOR_TIMEOUT_S", "5"),
    ]);
    assert_eq!(c.flush_timeout_s, 1005 + DEVICE_STEP_MARGIN_S);
    // Short device steps never lower the least default.
    let c = cfg(&[
        ("NPUPROF_MSPROF_TIMEOUT_S", "10"),
        ("NPUPROF_VENDOR_TIMEOUT_S", "5"),
    ]);
    assert_eq!(c.flush_timeout_s, DEFAULT_FLUSH_TIMEOUT_S);
    assert!(c.warnings.is_empty());
    let c = cfg(&[("NPUPROF_FLUSH_TIMEOUT_S", "100")]);
    assert_eq!(c.flush_timeout_s, 100);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].starts_with("NPUPROF_FLUSH_TIMEOUT_S=100 is shorter"));
    let c = cfg(&[
        ("NPUPROF_FLUSH_TIMEOUT_S", "100"),
        ("NPUPROF_BACKEND", "host"),
    ]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = cfg(&[("NPUPROF_FLUSH_TIMEOUT_S", "720")]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn empty_or_blank_dir_means_disabled() {
    assert_eq!(cfg(&[("VLLM_TORCH_PROFILER_DIR", "")]).profiler_dir, None);
    assert_eq!(cfg(&[("VLLM_TORCH_PROFILER_DIR", "  ")]).profiler_dir, None);
    // A relative root is made absolute once, against the current directory when the config is read.
    assert_eq!(
        cfg(&[("VLLM_TORCH_PROFILER_DIR", "./p")]).profiler_dir,
        Some(std::env::current_dir().unwrap().join("p"))
    );
}

#[test]
fn threshold_selects_old_logic_empty_means_unset() {
    assert_eq!(
        cfg(&[("PROFILER_TOKEN_THRESHOLD", "")]).trigger,
        Trigger::Manual
    );
    let c = cfg(&[("PROFILER_TOKEN_THRESHOLD", "1")]);
    assert_eq!(
        c.trigger,
        Trigger::Auto {
            threshold: 1,
            stop_step: 5
        }
    );
    let c = cfg(&[
        ("PROFILER_TOKEN_THRESHOLD", " 64 "),
        ("PROFILER_STOP_STEP", "3"),
    ]);
    assert_eq!(
        c.trigger,
        Trigger::Auto {
            threshold: 64,
            stop_step: 3
        }
    );
    assert!(c.warnings.is_empty());
    // Stop step without threshold is ignored (new logic).
    assert_eq!(cfg(&[("PROFILER_STOP_STEP", "3")]).trigger, Trigger::Manual);
}

#[test]
fn bad_numbers_warn_with_variable_value_and_replacement() {
    let c = cfg(&[
        ("PROFILER_TOKEN_THRESHOLD", "-3"),
        ("PROFILER_STOP_STEP", "0"),
        ("NPUPROF_BUFFER_KB", "1"),
        ("NPUPROF_MAX_DISK_MB", "lots"),
    ]);
    assert_eq!(
        c.trigger,
        Trigger::Auto {
            threshold: 1,
            stop_step: 1
        }
    );
    assert_eq!(c.buffer_kb, MIN_BUFFER_KB);
    assert_eq!(c.max_disk_mb, DEFAULT_MAX_DISK_MB);
    assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
    assert!(c.warnings[0].starts_with("PROFILER_STOP_STEP=\"0\""));
    assert!(c.warnings[0].ends_with("using 1"));
    assert!(c.warnings[1].contains("PROFILER_TOKEN_THRESHOLD=\"-3\""));
    assert!(c.warnings[1].ends_with("using 1"));
    assert!(
        c.warnings[2].contains("NPUPROF_BUFFER_KB=\"1\"") && c.warnings[2].ends_with("using 4")
    );
    assert!(c.warnings[3].contains("\"lots\"") && c.warnings[3].ends_with("using 4096"));
}

#[test]
fn booleans_accept_the_documented_spellings_only() {
    for (v, want) in [
        ("1", true),
        ("TRUE", true),
        (" yes ", true),
        ("On", true),
        ("0", false),
        ("False", false),
        ("no", false),
        ("OFF", false),
    ] {
        let c = cfg(&[("VLLM_TORCH_PROFILER_WITH_STACK", v)]);
        assert_eq!(c.with_stack, want, "{v}");
        assert!(c.warnings.is_empty());
    }
    let c = cfg(&[("VLLM_TORCH_PROFILER_RECORD_SHAPES", "enabled")]);
    assert!(!c.record_shapes);
    assert_eq!(
        c.warnings,
        vec![
            "VLLM_TORCH_PROFILER_RECORD_SHAPES=\"enabled\" is not a boolean (1/0, true/false, \
             yes/no, on/off); using false"
        ]
    );
}

#[test]
fn rank_falls_through_invalid_sources() {
    assert_eq!(cfg(&[("RANK", "3"), ("LOCAL_RANK", "1")]).rank, 3);
    assert_eq!(cfg(&[("NPUPROF_RANK", "7"), ("RANK", "3")]).rank, 7);
    let c = cfg(&[("NPUPROF_RANK", "x"), ("LOCAL_RANK", "2")]);
    assert_eq!((c.rank, c.device_id), (2, 2));
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("NPUPROF_RANK=\"x\"") && c.warnings[0].contains("RANK, else 0"));
}

#[test]
#[cfg_attr(miri, ignore = "gethostname is a foreign call Miri cannot run")]
fn worker_name_is_sanitised() {
    let c = cfg(&[("NPUPROF_WORKER_NAME", "a/b\nc")]);
    assert_eq!(c.worker_name.as_deref(), Some("a_b_c"));
    assert_eq!(c.warnings.len(), 1);
    let c = cfg(&[("NPUPROF_WORKER_NAME", "..")]);
    assert_eq!(c.worker_name, None);
    let w = c.worker_name_now();
    assert!(w.ends_with(&format!("_{}", std::process::id())), "{w}");
}

#[test]
#[cfg_attr(miri, ignore = "gethostname is a foreign call Miri cannot run")]
fn worker_names_that_cannot_be_directory_names_warn_once_and_use_the_default() {
    use std::os::unix::ffi::OsStringExt;
    // Fits exactly: the directory name is then 255 bytes.
    let fits = "w".repeat(MAX_WORKER_NAME_BYTES);
    let c = cfg(&[("NPUPROF_WORKER_NAME", &fits)]);
    assert_eq!(c.worker_name.as_deref(), Some(fits.as_str()));
    assert!(c.warnings.is_empty());
    let dir = format!("{fits}_{}{}", "2".repeat(17), crate::layout::SUFFIX);
    assert_eq!(dir.len(), 255);
    // One byte more (a multi-byte character counts in bytes) cannot be a directory name.
    for long in [format!("{fits}w"), format!("{}é", &fits[1..])] {
        let c = cfg(&[("NPUPROF_WORKER_NAME", &long)]);
        assert_eq!(c.worker_name, None);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("more than a directory name can hold"));
    }
    // A leading dot is replaced (never a hidden directory, never `.control`).
    let c = cfg(&[("NPUPROF_WORKER_NAME", ".control")]);
    assert_eq!(c.worker_name.as_deref(), Some("_control"));
    assert_eq!(c.warnings.len(), 1);
    // Non-UTF-8 warns (it used to become U+FFFD silently).
    let bad = OsString::from_vec(vec![b'w', 0xff]);
    let c = Config::from_lookup(&|k| (k == "NPUPROF_WORKER_NAME").then(|| bad.clone()));
    assert_eq!(c.worker_name, None);
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].contains("not valid UTF-8"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn local_rank_warns_once_and_overflow_is_out_of_range() {
    let c = cfg(&[("LOCAL_RANK", "x")]);
    assert_eq!((c.rank, c.device_id), (0, 0));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let c = cfg(&[("NPUPROF_MAX_DISK_MB", "18446744073709551616")]);
    assert_eq!(c.max_disk_mb, u64::MAX / (1 << 20));
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("out of range"), "{:?}", c.warnings);
    assert!(!c.warnings[0].contains("not an unsigned integer"));
}

#[test]
fn an_empty_or_blank_value_is_unset_for_every_variable() {
    for name in VARIABLES {
        for v in ["", "  ", "\t"] {
            let c = cfg(&[(name, v)]);
            let mut want = cfg(&[]);
            want.warnings.clear();
            assert_eq!(c, want, "{name}={v:?}");
        }
    }
}

#[test]
fn unknown_backend_and_log_level_warn() {
    let c = cfg(&[("NPUPROF_BACKEND", "cuda"), ("NPUPROF_LOG", "loud")]);
    assert_eq!(c.backend, BackendKind::Auto);
    assert_eq!(c.log_level, log::LevelFilter::Info);
    assert_eq!(c.warnings.len(), 2);
    assert_eq!(
        cfg(&[("NPUPROF_BACKEND", " HOST ")]).backend,
        BackendKind::Host
    );
}

#[test]
fn non_utf8_values_do_not_panic() {
    use std::os::unix::ffi::OsStringExt;
    let bad = OsString::from_vec(vec![0xff, 0xfe, b'1']);
    let c = Config::from_lookup(&|_| Some(bad.clone()));
    assert!(c.profiler_dir.is_some());
    assert!(!c.warnings.is_empty());
}

/// Issue 17: `VARIABLES` is the one list of what the reader reads: with nothing set, `from_lookup` asks for
/// every listed variable and for nothing else.
#[test]
fn the_reader_asks_for_exactly_the_listed_variables() {
    let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let _ = Config::from_lookup(&|k| {
        asked.borrow_mut().insert(k.to_string());
        None
    });
    let listed: std::collections::BTreeSet<String> =
        VARIABLES.iter().map(|v| v.to_string()).collect();
    assert_eq!(*asked.borrow(), listed);
    assert_eq!(listed.len(), VARIABLES.len(), "a variable listed twice");
}

/// Each level has one row of spellings: the variable's (also `Level_1`, `1`) and MindSpore's.
#[test]
fn level_and_backend_spellings_come_from_one_table() {
    for (l, env, ms) in [
        (Level::Level0, "level0", "Level0"),
        (Level::Level1, "level1", "Level1"),
        (Level::Level2, "level2", "Level2"),
    ] {
        assert_eq!((l.name(), l.profiler_level()), (env, ms));
        for v in [env, ms, &ms.replace("Level", "Level_"), &env[5..]] {
            assert_eq!(cfg(&[("NPUPROF_LEVEL", v)]).level, l, "{v}");
        }
    }
    let c = cfg(&[("NPUPROF_LEVEL", "level3")]);
    assert_eq!(
        c.warnings,
        vec!["NPUPROF_LEVEL=\"level3\" is not a level (level0, level1, level2); using level0"]
    );
    for b in [
        BackendKind::Auto,
        BackendKind::Host,
        BackendKind::Acl,
        BackendKind::Mspti,
    ] {
        assert_eq!(BackendKind::parse(b.name()), Some(b));
    }
    assert_eq!(BackendKind::parse(" AclProf "), Some(BackendKind::Acl));
}

/// The START frame's spelling of a configuration reads back to the same configuration (so a recovered
/// profile's metadata shows the worker's settings, every variable of them).
#[test]
fn the_env_spelling_reads_back_to_the_same_config() {
    let all: &[(&str, &str)] = &[
        ("VLLM_TORCH_PROFILER_DIR", "/tmp/npuprof-x"),
        ("PROFILER_TOKEN_THRESHOLD", "5"),
        ("PROFILER_STOP_STEP", "3"),
        ("VLLM_TORCH_PROFILER_WITH_STACK", "yes"),
        ("NPUPROF_BACKEND", "aclprof"),
        ("NPUPROF_LOG", "debug"),
        ("NPUPROF_BUFFER_KB", "64"),
        ("NPUPROF_WORKER_NAME", "w1"),
        ("LOCAL_RANK", "3"),
        ("NPUPROF_FLUSH_TIMEOUT_S", "900"),
        ("NPUPROF_LEVEL", "1"),
        ("NPUPROF_AIC_METRICS", "Memory"),
        ("NPUPROF_MSPTI_BUFFERS", "16"),
        ("NPUPROF_MSPTI_API", "0"),
        ("NPUPROF_CONTROL", "on"),
        ("ASCEND_HOME_PATH", "/opt/ascend"),
    ];
    for vars in [&[][..], all, &[("RANK", "2"), ("NPUPROF_DEVICE", "1")]] {
        let c = cfg(vars);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let env: HashMap<&str, String> = c.env_vars().into_iter().collect();
        let back = Config::from_lookup(&|k| env.get(k).map(OsString::from));
        assert_eq!(back, c, "{env:?}");
    }
}

#[test]
fn trace_format_and_gzip() {
    let c = cfg(&[]);
    assert_eq!((c.trace_format, c.trace_gzip), (TraceFormat::Json, false));
    for (v, f) in [
        ("json", TraceFormat::Json),
        (" Perfetto ", TraceFormat::Perfetto),
        ("BOTH", TraceFormat::Both),
    ] {
        let c = cfg(&[("NPUPROF_TRACE_FORMAT", v), ("NPUPROF_TRACE_GZIP", "1")]);
        assert_eq!((c.trace_format, c.trace_gzip), (f, true), "{v}");
        assert!(c.warnings.is_empty());
        assert_eq!(f.json(), f != TraceFormat::Perfetto);
        assert_eq!(f.perfetto(), f != TraceFormat::Json);
    }
    let c = cfg(&[("NPUPROF_TRACE_FORMAT", "pb")]);
    assert_eq!(c.trace_format, TraceFormat::Json);
    assert_eq!(
        c.warnings,
        vec![
            "NPUPROF_TRACE_FORMAT=\"pb\" is not a trace format (json, perfetto, both); using json"
        ]
    );
}
