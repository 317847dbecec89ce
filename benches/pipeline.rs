//! Drain, export, memory and scaling figures of the whole pipeline, through the C ABI of a dlopen'ed
//! libnpuprof.so. Each scenario runs in a child process of its own (the configuration is per process);
//! the parent collects one JSON line per child into target/npuprof-bench/pipeline.json and prints a table.
//!
//! * drain/T: T recording threads issue 4 M records in total as fast as they can while the drain moves them;
//!   throughput = records spooled / drain thread CPU time (the figure that says whether one drain keeps up).
//! * export/N: stop-to-files wall time for N host events (paced so none is dropped).
//! * memory: resident set after 2 M and after 20 M recorded events of one long profile.
//! * scaling/T: per-thread CPU time of a push+pop pair with T threads recording at once.

mod support;

use serde_json::{json, Value};
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

fn child(args: &[String]) -> Value {
    let api = load_instance("pipeline");
    let id = api.intern_str("layer");
    let scenario = args[0].as_str();
    let n: u64 = args[1].parse().unwrap();
    let meta = |api: &Npuprof| -> Value {
        let dir = api.output_dir_path();
        common::json(&dir.join("profiler_metadata.json"))["npuprof"].clone()
    };
    match scenario {
        "drain" => {
            let threads = n;
            let per_thread_pairs = 2_000_000 / threads;
            assert_eq!((api.start)(), 0);
            let t0 = Instant::now();
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    std::thread::spawn(move || {
                        for _ in 0..per_thread_pairs {
                            (api.push)(black_box(id));
                            (api.pop)();
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            let record_wall = t0.elapsed();
            assert_eq!((api.stop)(), 0);
            assert_eq!((api.flush)(), 0);
            let m = meta(&api);
            let recorded = m["recorded_records"].as_u64().unwrap();
            let cpu_ms = m["drain_cpu_ms"].as_f64().unwrap();
            json!({"scenario": "drain", "threads": threads, "issued": 2 * per_thread_pairs * threads,
                   "recorded": recorded, "dropped": m["dropped_records"]["ring_full"],
                   "drain_cpu_ms": cpu_ms, "record_wall_ms": record_wall.as_secs_f64() * 1e3,
                   "events_per_s": recorded as f64 / (cpu_ms / 1e3)})
        }
        "export" => {
            assert_eq!((api.start)(), 0);
            let chunk = 400_000u64;
            let mut left = n / 2;
            while left > 0 {
                let k = left.min(chunk / 2);
                for _ in 0..k {
                    (api.push)(black_box(id));
                    (api.pop)();
                }
                left -= k;
                // Pace to the drain (untimed): 2k records at 5 M/s.
                std::thread::sleep(Duration::from_nanos(2 * k * 200) + Duration::from_millis(2));
            }
            let t0 = Instant::now();
            assert_eq!((api.stop)(), 0);
            assert_eq!((api.flush)(), 0);
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let m = meta(&api);
            json!({"scenario": "export", "events": n, "recorded": m["recorded_records"],
                   "dropped": m["dropped_records"]["ring_full"], "stop_to_files_ms": ms,
                   "trace_view_bytes": m["trace_view_bytes"], "ms_per_million": ms * 1e6 / n as f64})
        }
        "memory" => {
            assert_eq!((api.start)(), 0);
            let mut rss = vec![];
            let mut done = 0u64;
            // After warm-up (2 M events: rings, buffers and the drain's scratch at their working size) and
            // after a 10x longer profile (20 M events).
            for target in [2_000_000u64, 5_000_000, 10_000_000, 15_000_000, 20_000_000] {
                while done < target {
                    for _ in 0..100_000 {
                        (api.push)(black_box(id));
                        (api.pop)();
                    }
                    done += 200_000;
                    std::thread::sleep(Duration::from_millis(40));
                }
                rss.push(rss_bytes());
            }
            assert_eq!((api.is_running)(), 1);
            // Abandon the profile (no export): only the memory during recording is measured here.
            json!({"scenario": "memory", "rss_at_2m": rss[0], "rss_at_20m": rss[4], "samples": rss,
                   "growth_bytes": rss[4] as i64 - rss[0] as i64})
        }
        "scaling" => {
            let threads = n;
            let pairs = 250_000u64;
            assert_eq!((api.start)(), 0);
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads as usize));
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    let b = barrier.clone();
                    std::thread::spawn(move || {
                        (api.push)(id); // register the ring outside the measurement
                        (api.pop)();
                        b.wait();
                        let c0 = thread_cpu_ns();
                        for _ in 0..pairs {
                            (api.push)(black_box(id));
                            (api.pop)();
                        }
                        (thread_cpu_ns() - c0) as f64 / pairs as f64
                    })
                })
                .collect();
            let per: Vec<f64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!((api.stop)(), 0);
            assert_eq!((api.flush)(), 0);
            let m = meta(&api);
            let mean = per.iter().sum::<f64>() / per.len() as f64;
            json!({"scenario": "scaling", "threads": threads, "ns_per_pair_cpu": mean,
                   "dropped": m["dropped_records"]["ring_full"]})
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let v = child(&args[i + 1..]);
        println!("RESULT {v}");
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    // `cargo test --benches` runs bench targets with --test-ish flags; only run under `cargo bench`.
    if !args.iter().any(|a| a == "--bench") {
        println!("pipeline: run with `cargo bench --bench pipeline`");
        return;
    }
    let lib = common::lib();
    let exe = std::env::current_exe().unwrap();
    let mut results = vec![];
    let only = std::env::var("NPUPROF_BENCH_ONLY").ok();
    let runs: Vec<(&str, u64, &str)> = vec![
        ("drain", 1, "65536"),
        ("drain", 2, "65536"),
        ("drain", 8, "16384"),
        ("export", 100_000, "16384"),
        ("export", 1_000_000, "16384"),
        ("export", 10_000_000, "16384"),
        ("memory", 0, "16384"),
    ];
    // Scaling is the noisiest figure on a shared 2-core VM: three runs of each, the report takes medians.
    let runs: Vec<(&str, u64, &str)> = runs
        .into_iter()
        .chain((0..3).flat_map(|_| {
            [
                ("scaling", 1, "16384"),
                ("scaling", 2, "16384"),
                ("scaling", 8, "16384"),
            ]
        }))
        .collect();
    for (scenario, n, buffer_kb) in runs {
        if only.as_deref().is_some_and(|o| o != scenario) {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let o = Command::new(&exe)
            .args(["--child", scenario, &n.to_string()])
            .env("VLLM_TORCH_PROFILER_DIR", tmp.path())
            .env("NPUPROF_BUFFER_KB", buffer_kb)
            .env("NPUPROF_MAX_DISK_MB", "100000")
            .env("NPUPROF_LOG", "warn")
            .env("NPUPROF_LIBRARY", &lib)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| {
                panic!(
                    "{scenario} {n} failed:\n{out}\n{}",
                    String::from_utf8_lossy(&o.stderr)
                )
            });
        let v: Value = serde_json::from_str(line).unwrap();
        println!("{scenario:>8} {n:>9}: {v}");
        results.push(v);
    }
    let path = results_dir().join("pipeline.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results).unwrap()).unwrap();
    println!("wrote {}", path.display());
}
