//! Drain, export, memory and scaling figures of the whole pipeline, through the C ABI of a dlopen'ed
//! libnpuprof.so. Each scenario runs in a child process of its own (the configuration is per process);
//! the parent collects one JSON line per child into target/npuprof-bench/pipeline.json and prints a table.
//!
//! * drain/T: T recording threads issue 4 M records in total as fast as they can while the drain moves them;
//!   throughput = records spooled / drain thread CPU time (the figure that says whether one drain keeps up).
//! * export/N: stop-to-files wall time for N host events (paced so none is dropped).
//! * memory: resident set after 2 M and after 20 M recorded events of one long profile.
//! * scaling/T: per-thread CPU time of a push+pop pair with T threads recording at once.
//! * acl/N: the aclprof backend's share of stop-to-files for N device tasks: reading msprof's op_summary
//!   (level1 columns; "parse"), then streaming its timeline (4 events per task) into trace_view.json and
//!   writing kernel_details.csv, Overlap Analysis and step_trace_time.csv ("write"). msprof's own export
//!   time is CANN's, not measured here.
//! * mspti/N, mspti-db/N: MSPTI stop-to-files for N kernels with 2 API records each, the text files only
//!   (`NPUPROF_EXPORT_TYPE=text`) and with the database (`text,db`): the difference is the database's cost.
//!   `stop_to_files_cpu_ms`: the process's CPU time over the same span (all its threads), the steadier
//!   figure on a busy machine.

mod support;

use serde_json::{json, Value};
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// A synthetic `mindstudio_profiler_output/` of `n` tasks on 3 streams, as msprof writes it.
fn write_msprof_output(dir: &std::path::Path, n: u64) {
    use std::io::Write;
    const PMU: &str = "aicore_time(us),aic_total_cycles,aic_mac_time(us),aic_mac_ratio,aic_scalar_time(us),\
aic_scalar_ratio,aic_mte1_time(us),aic_mte1_ratio,aic_mte2_time(us),aic_mte2_ratio,aic_fixpipe_time(us),\
aic_fixpipe_ratio,aic_icache_miss_rate,aiv_time(us),aiv_total_cycles,aiv_vec_time(us),aiv_vec_ratio,\
aiv_scalar_time(us),aiv_scalar_ratio,aiv_mte2_time(us),aiv_mte2_ratio,aiv_mte3_time(us),aiv_mte3_ratio,\
aiv_icache_miss_rate,cube_utilization(%)";
    std::fs::create_dir_all(dir).unwrap();
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(dir.join("op_summary_20260101000000.csv")).unwrap(),
    );
    writeln!(csv, "Device_id,Model ID,Task ID,Stream ID,Op Name,OP Type,OP State,Task Type,Task Start Time(us),\
Task Duration(us),Task Wait Time(us),Block Num,Mix Block Num,HF32 Eligible,Input Shapes,Input Data Types,\
Input Formats,Output Shapes,Output Data Types,Output Formats,Context ID,{PMU}").unwrap();
    let t0: u64 = 1_767_225_600_000_000_000;
    let start = |i: u64| t0 + i * 2_000;
    for i in 0..n {
        let s = start(i);
        writeln!(csv, "0,4294967295,{i},{},MatMul_{i},MatMul,dynamic,AI_CORE,{}.{:03}\t,1.500,0.500,24,0,NO,\
\"\"\"8,1024;1024,1024\"\"\",FLOAT16;FLOAT16,ND;ND,\"\"\"8,1024\"\"\",FLOAT16,ND,N/A,1.5,2700,0.5,0.3,0.2,0.1,0.1,\
0.1,0.4,0.2,0.1,0.1,0.01,1.5,2700,0.5,0.3,0.2,0.1,0.1,0.1,0.1,0.1,0.01,40.0", i % 3, s / 1000, s % 1000).unwrap();
    }
    drop(csv);
    let mut js = std::io::BufWriter::new(
        std::fs::File::create(dir.join("msprof_20260101000000.json")).unwrap(),
    );
    let (hw, cann) = ((1u64 << 10) | (14 << 5), (1u64 << 10) | (7 << 5) | 31);
    write!(js, "[{{\"name\":\"process_name\",\"pid\":{hw},\"tid\":0,\"ph\":\"M\",\"args\":{{\"name\":\"Ascend Hardware\"}}}},\
{{\"name\":\"process_name\",\"pid\":{cann},\"tid\":0,\"ph\":\"M\",\"args\":{{\"name\":\"CANN\"}}}}").unwrap();
    for i in 0..n {
        let s = start(i);
        let api = s - 1_000;
        let id = (i + 1) << 32;
        write!(js, ",{{\"name\":\"Node@launch\",\"pid\":{cann},\"tid\":7,\"ts\":\"{}.{:03}\",\"dur\":0.5,\"ph\":\"X\",\
\"args\":{{\"Thread Id\":7,\"Mode\":\"launch\",\"level\":\"node\",\"id\":\"0\",\"item_id\":\"MatMul_{i}\",\"connection_id\":{}}}}}\
,{{\"name\":\"HostToDevice{id}\",\"pid\":{cann},\"tid\":7,\"ph\":\"s\",\"cat\":\"HostToDevice\",\"id\":\"{id}\",\"ts\":\"{}.{:03}\"}}\
,{{\"name\":\"MatMul_{i}\",\"pid\":{hw},\"tid\":{},\"ts\":\"{}.{:03}\",\"dur\":1.5,\"ph\":\"X\",\"args\":{{\"Model Id\":4294967295,\
\"Task Type\":\"AI_CORE\",\"Physic Stream Id\":{},\"Task Id\":{i},\"Batch Id\":0,\"Subtask Id\":4294967295,\"connection_id\":{}}}}}\
,{{\"name\":\"HostToDevice{id}\",\"pid\":{hw},\"tid\":{},\"ph\":\"f\",\"cat\":\"HostToDevice\",\"id\":\"{id}\",\"ts\":\"{}.{:03}\",\"bp\":\"e\"}}",
            api / 1000, api % 1000, i + 1, api / 1000, api % 1000, i % 3, s / 1000, s % 1000, i % 3, i + 1, i % 3,
            s / 1000, s % 1000).unwrap();
    }
    write!(js, "]").unwrap();
}

/// CPU time (user + system) of the whole process so far, ms: with other work on the machine, the CPU a
/// stop-to-files took says more than its wall time (the export's threads wait for a core).
fn process_cpu_ms() -> f64 {
    // SAFETY: getrusage(2) fills the zeroed struct we own; RUSAGE_SELF is always valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

/// acl/N: parse + write of N device tasks (see the module doc).
fn acl_child(n: u64) -> Value {
    use npuprof::backend::acl::export::parse_output;
    use npuprof::device::DeviceResult;
    use npuprof::export::{csv, overlap::Overlap, trace_view::TraceWriter};
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("mindstudio_profiler_output");
    write_msprof_output(&src, n);
    let t0 = Instant::now();
    let mut r = DeviceResult::default();
    parse_output(&src, 0, 0, &mut r).unwrap();
    let parse = t0.elapsed();
    assert_eq!(r.kernels.len() as u64, n);
    let t1 = Instant::now();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let out = npuprof::layout::Place::open(&out).unwrap();
    let first = r.kernels.list[0].start_ns;
    let steps: Vec<csv::StepSpan> = (0..10)
        .map(|k| csv::StepSpan {
            step: k + 1,
            start_ns: first + k * n / 10 * 2_000,
            end_ns: first + (k + 1) * n / 10 * 2_000,
        })
        .collect();
    csv::kernel_details(
        &out,
        "kernel_details.csv",
        &r.kernels,
        r.kernel_header.as_deref(),
        false,
        &steps,
        u64::MAX,
    )
    .unwrap();
    let o = Overlap::new(&r.kernels);
    csv::step_trace_time(&out, "step_trace_time.csv", 0, &steps, (0, 0), Some(&o)).unwrap();
    let mut tw = TraceWriter::create(&out, "trace_view.json", u64::MAX).unwrap();
    if let Some(lanes) = r.timeline.take() {
        let (st, err) = lanes.write(&mut tw);
        assert_eq!(err, None);
        assert_eq!(st.events, 4 * n);
    }
    for &(a, b) in &o.computing {
        tw.complete(1, 0, "\"Computing\"", a, b - a, "overlap", "")
            .unwrap();
    }
    tw.finish().unwrap();
    let write = t1.elapsed();
    json!({"scenario": "acl", "tasks": n, "parse_ms": parse.as_secs_f64() * 1e3,
           "write_ms": write.as_secs_f64() * 1e3})
}

/// The child's NPUPROF_TRACE_FORMAT (as the runs table set it).
fn trace_format() -> String {
    std::env::var("NPUPROF_TRACE_FORMAT").unwrap_or_else(|_| "json".into())
}

fn child(args: &[String]) -> Value {
    if args[0] == "acl" {
        return acl_child(args[1].parse().unwrap());
    }
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
            // SAFETY: as in the MSPTI scenario: sync(2) before the clock starts.
            unsafe { libc::sync() };
            let t0 = Instant::now();
            assert_eq!((api.stop)(), 0);
            assert_eq!((api.flush)(), 0);
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let m = meta(&api);
            json!({"scenario": "export", "events": n, "recorded": m["recorded_records"],
                   "dropped": m["dropped_records"]["ring_full"], "stop_to_files_ms": ms,
                   "trace_view_bytes": m["trace_view_bytes"], "trace_files": m["trace_files"],
                   "slices": m["slices"], "format": trace_format(),
                   "ms_per_million": ms * 1e6 / n as f64})
        }
        "mspti" | "mspti-kernels" | "mspti-db" => {
            // N kernel launches through the fake libmspti.so (each: an API record and a kernel record with one
            // correlation id), paced so the pool never runs dry (untimed); then stop-to-files.
            type Launch = extern "C" fn(*const std::ffi::c_char, *const std::ffi::c_char, u32, u64);
            assert_eq!((api.start)(), 0);
            let c = std::ffi::CString::new("libmspti.so").unwrap();
            // SAFETY: looks up the fake npuprof already loaded (RTLD_NOLOAD) and its test-only export.
            let launch: Launch = unsafe {
                let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
                assert!(!h.is_null(), "libmspti.so not loaded");
                let f = libc::dlsym(h, c"fake_mspti_launch".as_ptr());
                assert!(!f.is_null());
                std::mem::transmute::<*mut libc::c_void, Launch>(f)
            };
            let names: Vec<std::ffi::CString> = (0..64)
                .map(|i| std::ffi::CString::new(format!("Kernel_{i}")).unwrap())
                .collect();
            for i in 0..n {
                launch(
                    names[(i % 64) as usize].as_ptr(),
                    c"KERNEL_AICORE".as_ptr(),
                    (i % 4) as u32,
                    1_000,
                );
                if i % 50_000 == 49_999 {
                    std::thread::sleep(Duration::from_millis(30));
                }
            }
            // Untimed: the dirty pages of earlier scenarios (up to a GB) are on disk before the clock starts.
            // SAFETY: sync(2) has no arguments and cannot fail.
            unsafe { libc::sync() };
            let (t0, cpu0) = (Instant::now(), process_cpu_ms());
            assert_eq!((api.stop)(), 0);
            assert_eq!((api.flush)(), 0);
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let cpu_ms = process_cpu_ms() - cpu0;
            let dir = api.output_dir_path();
            let m = common::json(&dir.join("profiler_metadata.json"));
            let d = m["device"].clone();
            json!({"scenario": "mspti", "api": scenario != "mspti-kernels", "kernels": n, "stop_to_files_ms": ms,
                   "stop_to_files_cpu_ms": cpu_ms, "format": trace_format(),
                   "trace_files": m["npuprof"]["trace_files"], "slices": m["npuprof"]["slices"],
                   "database": m["npuprof"]["database"],
                   "device_tasks": d["device_tasks"], "records": d["mspti_records"],
                   "trace_view_bytes": m["npuprof"]["trace_view_bytes"],
                   "dropped": d["mspti_records_dropped"], "denied": d["mspti_buffers_denied_pool_empty"]})
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
    // (scenario, n, NPUPROF_BUFFER_KB, NPUPROF_TRACE_FORMAT): the trace formats side by side, one after the
    // other in the same run (issue 21: bytes per slice and stop-to-files, JSON vs protobuf).
    let runs: Vec<(&str, u64, &str, &str)> = vec![
        ("drain", 1, "65536", "json"),
        ("drain", 2, "65536", "json"),
        ("drain", 8, "16384", "json"),
        ("export", 100_000, "16384", "json"),
        ("export", 1_000_000, "16384", "json"),
        ("export", 1_000_000, "16384", "perfetto"),
        ("export", 10_000_000, "16384", "json"),
        ("export", 10_000_000, "16384", "perfetto"),
        ("memory", 0, "16384", "json"),
        ("acl", 100_000, "16384", "json"),
        ("acl", 1_000_000, "16384", "json"),
        ("mspti", 100_000, "16384", "json"),
        ("mspti", 1_000_000, "16384", "json"),
        ("mspti", 1_000_000, "16384", "perfetto"),
        ("mspti-kernels", 1_000_000, "16384", "json"),
        ("mspti-db", 1_000_000, "16384", "json"),
    ];
    // Scaling is the noisiest figure on a shared 2-core VM: three runs of each, the report takes medians.
    let runs: Vec<(&str, u64, &str, &str)> = runs
        .into_iter()
        .chain((0..3).flat_map(|_| {
            [
                ("scaling", 1, "16384", "json"),
                ("scaling", 2, "16384", "json"),
                ("scaling", 8, "16384", "json"),
            ]
        }))
        .collect();
    for (scenario, n, buffer_kb, format) in runs {
        if only.as_deref().is_some_and(|o| !scenario.starts_with(o)) {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(&exe);
        if scenario.starts_with("mspti") {
            let so = common::build_c(
                "bench-mspti/libmspti.so",
                &["tests/c/fake_mspti.c"],
                &["NDEBUG"],
                &["-shared", "-fPIC", "-O2", "-Wl,-soname,libmspti.so"],
            );
            cmd.env("NPUPROF_BACKEND", "mspti")
                .env("LD_LIBRARY_PATH", so.parent().unwrap())
                .env("NPUPROF_MSPTI_BUFFERS", "32")
                .env(
                    "NPUPROF_MSPTI_API",
                    if scenario == "mspti-kernels" {
                        "0"
                    } else {
                        "1"
                    },
                )
                .env(
                    "NPUPROF_EXPORT_TYPE",
                    if scenario == "mspti-db" {
                        "text,db"
                    } else {
                        "text"
                    },
                );
        }
        let o = cmd
            .args(["--child", scenario, &n.to_string()])
            .env("VLLM_TORCH_PROFILER_DIR", tmp.path())
            .env("NPUPROF_BUFFER_KB", buffer_kb)
            .env("NPUPROF_MAX_DISK_MB", "100000")
            .env("NPUPROF_TRACE_FORMAT", format)
            .env("NPUPROF_LOG", "warn")
            .env("NPUPROF_LIBRARY", &lib)
            .output()
            .unwrap();
        let v = support::result_line(&o, &format!("{scenario} {n}"));
        println!("{scenario:>8} {n:>9} {format:>8}: {v}");
        results.push(v);
    }
    let path = results_dir().join("pipeline.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results).unwrap()).unwrap();
    println!("wrote {}", path.display());
}
