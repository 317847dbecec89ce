//! What profiling costs a serving loop (issue 21): loop throughput with profiling off, idle (configured,
//! not started) and recording, as ratios measured in one run, rounds alternating the modes. Two loops: a C
//! loop of 4 threads (benches/serving.c, thread 0 calls npuprof_step) and the example server's Python worker
//! loop (benches/serving.py), each at a realistic rate (1 k steps/s of 20 ranges: 20 k ranges/s) and a
//! stress rate (100 k ranges/s). The work in each range is fixed CPU work, calibrated with profiling off to
//! the rate. Also the npuprof-drain thread's wake-ups and CPU time, and the records dropped (a full ring).
//! Writes target/npuprof-bench/serving.json for benches/report.
//!
//! Recording against idle is measured in one process, in pairs of 1 s windows (benches/serving.c and .py, mode
//! `ab`): separate processes vary by a few percent on this VM, more than the cost measured. Idle against
//! off needs separate processes (a disabled library is configured so from its start).
//!
//! `cargo bench --bench serving` (NPUPROF_SERVING_ROUNDS: pairs, default 11; NPUPROF_SERVING_SECONDS: each
//! off and idle run, default 2).

mod support;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use support::common;

/// Runs one child; its RESULT json, plus the profile's dropped records when it recorded.
fn child(cmd: &mut Command, mode: &str, dir: &Path) -> Value {
    if mode == "off" {
        cmd.env_remove("VLLM_TORCH_PROFILER_DIR");
    } else {
        cmd.env("VLLM_TORCH_PROFILER_DIR", dir);
    }
    let o = cmd
        .env("NPUPROF_LOG", "error")
        .env("NPUPROF_BACKEND", "host")
        .output()
        .unwrap();
    let mut v = support::result_line(&o, mode);
    if mode == "ab" {
        // Every recording window's profile: its records and the records a full ring dropped.
        let (mut dropped, mut recorded) = (0, 0);
        for w in common::workers(dir) {
            let m = common::json(&w.join("profiler_metadata.json"));
            dropped += m["npuprof"]["dropped_records"]["ring_full"]
                .as_u64()
                .unwrap_or(0);
            recorded += m["npuprof"]["recorded_records"].as_u64().unwrap_or(0);
        }
        v["dropped"] = dropped.into();
        v["recorded"] = recorded.into();
    }
    v
}

/// A command for (mode, iterations of work per range, seconds, rounds of `ab`).
type MakeCmd = Box<dyn Fn(&str, u64, f64, u32) -> Command>;

struct Loop {
    name: &'static str,
    threads: u32,
    cmd: MakeCmd,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Iterations per range that make `lp` run `target` ranges/s with profiling off: two short runs, a line
/// through them (a range costs a fixed overhead plus the work).
fn calibrate(lp: &Loop, target: f64, dir: &Path) -> u64 {
    let rate = |iters: u64| {
        child(&mut (lp.cmd)("off", iters, 1.0, 0), "off", dir)["ranges_per_s"]
            .as_f64()
            .unwrap()
    };
    let (a, b) = (200u64, 2_000u64);
    let (ta, tb) = (1.0 / rate(a), 1.0 / rate(b));
    let per_iter = ((tb - ta) / (b - a) as f64).max(1e-12);
    let fixed = ta - per_iter * a as f64;
    (((1.0 / target) - fixed) / per_iter).max(1.0) as u64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("serving: run with `cargo bench --bench serving`");
        return;
    }
    let ab_rounds: u32 = std::env::var("NPUPROF_SERVING_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    let window_s = 1.0;
    let cross_rounds = 3;
    let seconds: f64 = std::env::var("NPUPROF_SERVING_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let lib = common::lib();
    let exe = common::build_c(
        "bench-serving/serving",
        &["benches/serving.c"],
        &[],
        &["-std=gnu11", "-O2"],
    );
    let script = common::repo().join("benches/serving.py");
    let c_loop = {
        let (exe, lib) = (exe.clone(), lib.clone());
        Loop {
            name: "C loop, 4 threads",
            threads: 4,
            cmd: Box::new(move |mode, iters, secs, rounds| {
                let mut c = Command::new(&exe);
                c.arg(&lib)
                    .args([mode, "4", "20", &iters.to_string(), &secs.to_string()]);
                if mode == "ab" {
                    c.arg(rounds.to_string());
                }
                c
            }),
        }
    };
    let py_loop = {
        let lib = lib.clone();
        Loop {
            name: "Python worker loop (examples/vllm_server.py)",
            threads: 1,
            cmd: Box::new(move |mode, iters, secs, rounds| {
                // 9 layers: execute_model, model_forward and 9 x (attention, mlp) = 20 ranges a step; the
                // work is in the 18 layer ranges.
                let mut c = Command::new("python3");
                c.arg(&script)
                    .args([mode, "9", &(iters * 20 / 18).to_string(), &secs.to_string()])
                    .env("NPUPROF_LIBRARY", &lib);
                if mode == "ab" {
                    c.arg(rounds.to_string());
                }
                c
            }),
        }
    };
    let mut results = vec![];
    for lp in [&c_loop, &py_loop] {
        for (rate_name, target) in [("realistic", 20_000.0), ("stress", 100_000.0)] {
            let tmp = tempfile::tempdir().unwrap();
            let iters = calibrate(lp, target, tmp.path());
            // Off against idle: separate processes (the library disabled has to be configured so from
            // the start), alternating.
            let mut cross: Vec<[Value; 2]> = vec![];
            for _ in 0..cross_rounds {
                cross.push(
                    ["off", "idle"]
                        .map(|m| child(&mut (lp.cmd)(m, iters, seconds, 0), m, tmp.path())),
                );
            }
            let idle_over_off = median(
                cross
                    .iter()
                    .map(|r| {
                        r[1]["ranges_per_s"].as_f64().unwrap()
                            / r[0]["ranges_per_s"].as_f64().unwrap()
                    })
                    .collect(),
            );
            // Recording against idle: pairs of windows in one process.
            let ab = child(
                &mut (lp.cmd)("ab", iters, window_s, ab_rounds),
                "ab",
                tmp.path(),
            );
            let v = json!({"loop": lp.name, "threads": lp.threads, "rate": rate_name, "target_ranges_per_s": target,
                           "iters": iters, "ab_rounds": ab_rounds, "window_s": window_s,
                           "cross_rounds": cross_rounds, "cross_seconds": seconds,
                           "idle_ranges_per_s": ab["idle_ranges_per_s"],
                           "idle_over_off": idle_over_off, "rec_over_idle": ab["rec_over_idle"],
                           "rec_over_idle_rounds": ab["ratios"],
                           "drain_wakeups_per_s": ab["drain_wakeups_per_s"],
                           "drain_cpu_ms_per_s": ab["drain_cpu_ms_per_s"],
                           "dropped": ab["dropped"], "recorded": ab["recorded"], "cross": cross});
            println!(
                "{} {rate_name}: idle {:.0} ranges/s; recording/idle {:.4} (paired, {ab_rounds} rounds), idle/off {:.4}; drain {:.0} wake-ups/s, {:.2} ms CPU/s; dropped {}",
                lp.name, v["idle_ranges_per_s"].as_f64().unwrap_or(0.0), v["rec_over_idle"].as_f64().unwrap_or(0.0),
                idle_over_off, v["drain_wakeups_per_s"].as_f64().unwrap_or(0.0),
                v["drain_cpu_ms_per_s"].as_f64().unwrap_or(0.0), v["dropped"]
            );
            results.push(v);
        }
    }
    let path = support::results_dir().join("serving.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results).unwrap()).unwrap();
    println!("wrote {}", path.display());
}
