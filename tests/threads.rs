//! Thread lifecycle on the record path, in-process: threads that exit keep their data until drained, their
//! rings are reused (memory bounded by threads alive at once, not by threads ever seen), records made from
//! thread-local destructors still land, and a record made after the ring was retired (from a later pthread
//! key destructor) is dropped and counted, never a use-after-free.

mod common;
use npuprof::ffi::*;

/// Returns once the drain has made a full pass over the rings since this call began (emptied every ring and
/// recycled those whose thread exited): the drain makes that pass before it forwards a flush to the export
/// thread that answers it.
fn drained() {
    assert_eq!(npuprof_flush(), 0);
}

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
    // SAFETY: a valid C string.
    let id = unsafe { npuprof_intern(c"short_task".as_ptr()) };
    // SAFETY: a valid C string.
    let late = unsafe { npuprof_intern(c"late_mark".as_ptr()) };
    assert_eq!(npuprof_start(), 0);
    let before = npuprof::record::ring_count();

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
        // The drain empties and recycles the exited thread's ring before the next thread starts.
        drained();
    }
    let rings = npuprof::record::ring_count();
    assert_eq!(
        rings,
        before + 1,
        "{rings} rings for {THREADS} short-lived threads, one after another: rings are not reused"
    );

    // Threads whose first record happens in a pthread key destructor (a C library's per-thread cleanup):
    // their rings are still retired (glibc re-runs destructors of keys set during that phase) and reused.
    let mut first_key: libc::pthread_key_t = 0;
    unsafe extern "C" fn records_first(v: *mut libc::c_void) {
        npuprof_range_push(v as usize as u32);
        npuprof_range_pop();
    }
    assert_eq!(
        // SAFETY: valid out-parameter and destructor.
        unsafe { libc::pthread_key_create(&mut first_key, Some(records_first)) },
        0
    );
    for _ in 0..16 {
        std::thread::spawn(move || {
            // SAFETY: a valid key; the value is the name id.
            unsafe { libc::pthread_setspecific(first_key, id as usize as *const libc::c_void) };
        })
        .join()
        .unwrap();
        drained();
    }
    let after = npuprof::record::ring_count();
    assert_eq!(
        after, rings,
        "{after} rings after 16 destructor-only threads, one after another (was {rings}): leaked"
    );

    // A Rust thread-local destructor runs before the pthread key destructor that retires the ring: its
    // record lands. A pthread key created after npuprof's (so destroyed after it) records too late: the ring
    // is retired, the record is counted, not written into a ring another thread may own.
    let mut key: libc::pthread_key_t = 0;
    unsafe extern "C" fn too_late(v: *mut libc::c_void) {
        npuprof_mark(v as usize as u32);
    }
    assert_eq!(
        // SAFETY: valid out-parameter and destructor.
        unsafe { libc::pthread_key_create(&mut key, Some(too_late)) },
        0
    );
    // SAFETY: a valid C string.
    let too_late_id = unsafe { npuprof_intern(c"too_late".as_ptr()) };
    std::thread::spawn(move || {
        LATE.with(|l| *l.borrow_mut() = Some(RecordsOnDrop(late)));
        // SAFETY: a valid key; the value is the name id.
        unsafe { libc::pthread_setspecific(key, too_late_id as usize as *const libc::c_void) };
        npuprof_range_push(id);
        npuprof_range_pop();
    })
    .join()
    .unwrap();

    assert_eq!(npuprof_stop(), 0);
    assert_eq!(npuprof_flush(), 0);
    let ws = common::workers(root.path());
    let t = common::trace(&ws[0]);
    assert_eq!(common::slices(&t, "short_task").len(), 5 * THREADS + 16 + 1);
    let tids: std::collections::BTreeSet<u64> = t
        .iter()
        .filter(|e| e["name"] == "short_task")
        .map(|e| e["tid"].as_u64().unwrap())
        .collect();
    assert_eq!(
        tids.len(),
        THREADS + 16 + 1,
        "every thread keeps its own tid"
    );
    let names = t.iter().filter(|e| e["name"] == "thread_name").count();
    assert_eq!(names, THREADS + 16 + 1);
    let meta = common::json(&ws[0].join("profiler_metadata.json"));
    let m = &meta["npuprof"];
    assert_eq!(m["dropped_records"]["after_thread_exit"], 1, "{m}");
    assert_eq!(t.iter().filter(|e| e["name"] == "late_mark").count(), 1);
    assert!(t.iter().all(|e| e["name"] != "too_late"));
    common::assert_proper_nesting(&t);
    assert_eq!(npuprof_shutdown(), 0);
}
