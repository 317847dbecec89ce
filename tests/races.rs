//! In-process races of the control calls against recording (the C storm's twin, but in this process, so that
//! run-tests' ThreadSanitizer section sees the session, the registry, the drain and the export threads):
//! 4 threads mix start, stop, step, ranges, marks, flush and shutdown; no call returns an unexpected code,
//! and every result directory holds complete, valid files.

mod common;
use npuprof::ffi::*;

#[test]
fn control_calls_racing_recording_threads_keep_every_result_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    // NPUPROF_KEEP_TEST_DIRS: leave the results for inspection (a failing run's too).
    let _keep = std::env::var_os("NPUPROF_KEEP_TEST_DIRS").map(|_| tmp.keep());
    std::env::set_var("VLLM_TORCH_PROFILER_DIR", &root);
    std::env::set_var("NPUPROF_LOG", "error");
    std::env::set_var("NPUPROF_BUFFER_KB", "64");
    // SAFETY: a valid C string.
    let id = unsafe { npuprof_intern(c"race".as_ptr()) };
    let iters = if std::env::var_os("NPUPROF_LONG").is_some() {
        200_000
    } else {
        20_000
    };
    let hs: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                let mut bad = Vec::new();
                for _ in 0..iters {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    match s % 400 {
                        0 => {
                            let r = npuprof_start();
                            if r != 0 && r != 2 {
                                bad.push(("start", r));
                            }
                        }
                        1 => {
                            let r = npuprof_stop();
                            if r != 0 && r != 3 {
                                bad.push(("stop", r));
                            }
                        }
                        2 => {
                            let r = npuprof_flush();
                            if r != 0 {
                                bad.push(("flush", r));
                            }
                        }
                        3 if t == 0 => {
                            let r = npuprof_shutdown();
                            if r != 0 {
                                bad.push(("shutdown", r));
                            }
                        }
                        4..=40 => {
                            if npuprof_step(s >> 40) != 0 {
                                bad.push(("step", 7));
                            }
                        }
                        41..=200 => npuprof_range_push(id),
                        201..=360 => npuprof_range_pop(),
                        _ => npuprof_mark(id),
                    }
                }
                bad
            })
        })
        .collect();
    for h in hs {
        let bad = h.join().unwrap();
        assert!(bad.is_empty(), "unexpected codes: {bad:?}");
    }
    let _ = npuprof_stop();
    assert_eq!(npuprof_flush(), 0);
    assert_eq!(npuprof_shutdown(), 0);
    let ws = common::workers(&root);
    assert!(!ws.is_empty());
    for w in ws {
        let t = common::trace(&w);
        common::assert_proper_nesting(&t);
        common::json(&w.join("profiler_metadata.json"));
        assert!(
            !w.join("ASCEND_PROFILER_OUTPUT/trace_view.json.tmp")
                .exists(),
            "{}",
            w.display()
        );
    }
}
