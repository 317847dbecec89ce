//! Thread lifecycle on the record path, in-process: threads that exit keep their data until drained, their
//! rings are reused (memory bounded by threads alive at once, not by threads ever seen), and a record made
//! from a thread-local destructor after the ring was retired is dropped and counted, never a use-after-free.

mod common;
use npuprof::ffi::*;
use std::time::Duration;

struct RecordsOnDrop(u32);
impl Drop for RecordsOnDrop {
    fn drop(&mut self) {
        npuprof_mark(self.0);
    }
}
thread_local! {
    static LATE: std::cell::RefCell<Option<RecordsOnDrop>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn exited_threads_keep_their_data_and_rings_are_reused() {
    let root = tempfile::tempdir().unwrap();
    std::env::set_var("VLLM_TORCH_PROFILER_DIR", root.path());
    std::env::set_var("NPUPROF_LOG", "warn");
    let id = unsafe { npuprof_intern(c"short_task".as_ptr()) };
    let late = unsafe { npuprof_intern(c"late_mark".as_ptr()) };
    assert_eq!(npuprof_start(), 0);

    const THREADS: usize = 64;
    for _ in 0..THREADS {
        std::thread::spawn(move || {
            for _ in 0..5 {
                npuprof_range_push(id);
                npuprof_range_pop();
            }
        })
        .join()
        .unwrap();
        // Let the drain empty and recycle the exited thread's ring.
        std::thread::sleep(Duration::from_millis(12));
    }
    let rings = npuprof::record::ring_count();
    assert!(
        rings <= 4,
        "{rings} rings for {THREADS} short-lived threads: rings are not reused"
    );

    // A thread-local registered before the ring's exit guard is destroyed after it (LIFO): its record
    // finds the ring retired and is counted, not written into a ring another thread may own.
    std::thread::spawn(move || {
        LATE.with(|l| *l.borrow_mut() = Some(RecordsOnDrop(late)));
        npuprof_range_push(id);
        npuprof_range_pop();
    })
    .join()
    .unwrap();

    assert_eq!(npuprof_stop(), 0);
    assert_eq!(npuprof_flush(), 0);
    let ws = common::workers(root.path());
    let t = common::trace(&ws[0]);
    assert_eq!(common::slices(&t, "short_task").len(), 5 * THREADS + 1);
    let tids: std::collections::BTreeSet<u64> = t
        .iter()
        .filter(|e| e["name"] == "short_task")
        .map(|e| e["tid"].as_u64().unwrap())
        .collect();
    assert_eq!(tids.len(), THREADS + 1, "every thread keeps its own tid");
    let names = t.iter().filter(|e| e["name"] == "thread_name").count();
    assert_eq!(names, THREADS + 1);
    let meta = common::json(&ws[0].join("profiler_metadata.json"));
    let m = &meta["npuprof"];
    assert_eq!(m["dropped_records"]["after_thread_exit"], 1, "{m}");
    assert!(t.iter().all(|e| e["name"] != "late_mark"));
    common::assert_proper_nesting(&t);
    assert_eq!(npuprof_shutdown(), 0);
}
