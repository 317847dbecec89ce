//! A quick, dependency-free measurement of the record path and the export, in-process through the
//! exported functions (the full criterion suite with floors and peers lives in benches/).
//!
//! Run: `cargo run --release --example quickbench`

use npuprof::ffi::*;
use std::time::Instant;

fn ns_per_op(iters: u64, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    best
}

fn main() {
    let root = tempfile::tempdir().unwrap();
    std::env::set_var("VLLM_TORCH_PROFILER_DIR", root.path());
    std::env::set_var("NPUPROF_LOG", "warn");
    std::env::set_var("NPUPROF_BUFFER_KB", "65536");
    // SAFETY: valid C string.
    let id = unsafe { npuprof_intern(c"layer".as_ptr()) };

    let idle_push = ns_per_op(10_000_000, || npuprof_range_push(std::hint::black_box(id)));
    let idle_step = ns_per_op(10_000_000, || {
        npuprof_step(std::hint::black_box(1));
    });
    assert_eq!(npuprof_start(), 0);
    let pair = ns_per_op(200_000, || {
        npuprof_range_push(std::hint::black_box(id));
        npuprof_range_pop();
    });
    let mark = ns_per_op(200_000, || npuprof_mark(std::hint::black_box(id)));
    assert_eq!(npuprof_stop(), 0);
    assert_eq!(npuprof_flush(), 0);

    // Export: 1 M events (500 k push/pop pairs) recorded, then stop-to-files.
    assert_eq!(npuprof_start(), 0);
    let t = Instant::now();
    for _ in 0..500_000 {
        npuprof_range_push(id);
        npuprof_range_pop();
    }
    let rec = t.elapsed();
    let t = Instant::now();
    assert_eq!(npuprof_stop(), 0);
    assert_eq!(npuprof_flush(), 0);
    let export = t.elapsed();
    let mut buf = vec![0i8; 4096];
    let n = unsafe { npuprof_output_dir(buf.as_mut_ptr(), buf.len()) };
    let dir = String::from_utf8_lossy(&buf[..n].iter().map(|&c| c as u8).collect::<Vec<_>>())
        .into_owned();
    let tv = std::fs::metadata(format!("{dir}/ASCEND_PROFILER_OUTPUT/trace_view.json"))
        .unwrap()
        .len();
    let meta = std::fs::read_to_string(format!("{dir}/profiler_metadata.json")).unwrap();
    let dropped = meta
        .lines()
        .find(|l| l.contains("\"dropped_records\""))
        .unwrap_or("")
        .trim()
        .to_string();

    println!("idle range_push        {idle_push:7.2} ns/call");
    println!("idle step              {idle_step:7.2} ns/call");
    println!("recording push+pop     {pair:7.2} ns/pair");
    println!("recording mark         {mark:7.2} ns/call");
    println!("1 M events recorded in {:.1} ms; stop-to-files {:.1} ms; trace_view.json {:.1} MB ({:.1} bytes/slice)",
        rec.as_secs_f64() * 1e3, export.as_secs_f64() * 1e3, tv as f64 / 1e6, tv as f64 / 500_000.0);
    println!("{dropped}");
    npuprof_shutdown();
}
