//! "The record path takes no lock", proved directly: another thread holds every lock of the library
//! (`session::hold_every_lock`: control, ring registry, name table, vendor-call slot) while a recording
//! thread pushes, pops, marks and steps, and the recording thread must finish. The seccomp proof in
//! tests/record_path.rs only sees a lock that is contended (a futex call); here every lock is contended.
//!
//! Probes show the locks are really held (not a vacuous pass): a call that takes each of them, entered
//! (each probe says so just before its call) while the recording thread records, has not ended when the
//! recording thread is done, and each does end after the locks are released.
//!
//! One test function: the library's state is per process.

mod common;
use npuprof::ffi::*;
use std::sync::mpsc;
use std::time::Duration;

const N: usize = 2_000;
/// Only a hang reaches it: the recording thread makes a few thousand record calls.
const HANG: Duration = Duration::from_secs(60);

#[test]
fn record_calls_finish_while_another_thread_holds_every_npuprof_lock() {
    let root = tempfile::tempdir().unwrap();
    std::env::set_var("VLLM_TORCH_PROFILER_DIR", root.path());
    std::env::set_var("NPUPROF_LOG", "warn");
    // SAFETY: valid C strings.
    let (range, mark) = unsafe {
        (
            npuprof_intern(c"locked_range".as_ptr()),
            npuprof_intern(c"locked_mark".as_ptr()),
        )
    };
    assert_eq!(npuprof_start(), 0);

    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let recorder = std::thread::spawn(move || {
        // The first record of a thread registers its ring (under the registry lock, once): before the
        // locks are taken.
        npuprof_mark(mark);
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        for _ in 0..N {
            npuprof_range_push(range);
            npuprof_mark(mark);
            npuprof_range_pop();
            assert_eq!(npuprof_step(64), 0);
        }
        done_tx.send(()).unwrap();
    });
    ready_rx.recv_timeout(HANG).expect("the recorder started");

    let held = npuprof::session::hold_every_lock();
    // Probes: each needs one of the held locks, so none can end while `held` lives. Each says it is about
    // to make its call, and the test waits for all three before it looks: a probe that was never scheduled
    // would otherwise look blocked too.
    let (in_tx, in_rx) = mpsc::channel::<()>();
    let (a, b, c) = (in_tx.clone(), in_tx.clone(), in_tx);
    let probes = [
        // the control lock
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            a.send(()).unwrap();
            // SAFETY: a valid buffer of that length.
            unsafe { npuprof_output_dir(buf.as_mut_ptr().cast(), buf.len()) };
        }),
        // the name table
        std::thread::spawn(move || {
            b.send(()).unwrap();
            // SAFETY: a valid C string.
            unsafe { npuprof_intern(c"probe_name".as_ptr()) };
        }),
        // the ring registry (a new thread's first record registers its ring)
        std::thread::spawn(move || {
            c.send(()).unwrap();
            npuprof_mark(mark)
        }),
    ];
    for _ in 0..3 {
        in_rx.recv_timeout(HANG).expect("a probe started");
    }
    go_tx.send(()).unwrap();
    let finished = done_rx.recv_timeout(HANG);
    let blocked: Vec<bool> = probes.iter().map(|p| !p.is_finished()).collect();
    drop(held);
    assert!(
        finished.is_ok(),
        "the record calls blocked while another thread held npuprof's locks"
    );
    assert_eq!(
        blocked,
        [true, true, true],
        "a probe ended while the locks were held (control, names, registry): the hook holds nothing"
    );
    for p in probes {
        p.join().unwrap();
    }
    recorder.join().unwrap();

    assert_eq!(npuprof_stop(), 0);
    assert_eq!(npuprof_flush(), 0);
    let ws = common::workers(root.path());
    assert_eq!(ws.len(), 1);
    let t = common::trace(&ws[0]);
    // Everything made while the locks were held is in the result, nothing dropped.
    assert_eq!(common::slices(&t, "locked_range").len(), N);
    let marks = t
        .iter()
        .filter(|e| e["ph"] == "i" && e["name"] == "locked_mark")
        .count();
    assert_eq!(marks, N + 2, "N marks, the warm-up mark and the probe's");
    assert_eq!(common::step_names(&t).len(), N);
    let meta = common::json(&ws[0].join("profiler_metadata.json"));
    assert_eq!(meta["npuprof"]["dropped_records"]["ring_full"], 0, "{meta}");
    assert_eq!(npuprof_shutdown(), 0);
}
