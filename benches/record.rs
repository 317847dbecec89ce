//! The record path against its physical floor and against the Rust profilers people would otherwise use.
//!
//! Everything npuprof is called through the exported C ABI of a dlopen'ed libnpuprof.so, like a runtime
//! calls it; the floor is a separate C shared library behind the same boundary. Three private copies of
//! the library give the three states (disabled, idle, recording) their own configuration in one process, so
//! all figures come from one run on one machine and can be divided by each other.
//!
//! Recording runs in chunks: between chunks (untimed) the bench sleeps long enough for the drain to empty
//! the ring at 5 M records/s, so the timed loop measures recording, not the drop path. The figures go to
//! target/criterion (criterion's own files) and target/npuprof-bench/record.json (spool accounting).

mod support;

use criterion::Criterion;
use std::hint::black_box;
use std::time::{Duration, Instant};
use support::*;

/// Runs `iters` iterations of `body` in timed chunks of at most `chunk`, calling `between(n)` untimed after
/// each chunk of `n` iterations. Returns the timed total.
fn chunked(
    iters: u64,
    chunk: u64,
    mut body: impl FnMut(u64),
    mut between: impl FnMut(u64),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        let t = Instant::now();
        body(n);
        total += t.elapsed();
        between(n);
        left -= n;
    }
    total
}

/// Untimed pause for the drain: `records` at 5 M records/s, plus a poll period. Spins rather than sleeps
/// so the measuring core stays awake (a sleeping core comes back slower, which made chunks bimodal).
fn let_drain_catch_up(records: u64) {
    let until = Instant::now() + Duration::from_nanos(records * 200) + Duration::from_millis(2);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// `iters` recorded push+pop pairs on the recording instance, timed in chunks the drain can keep up with.
fn npuprof_pairs(rec: &Npuprof, rid: u32, iters: u64) -> Duration {
    chunked(
        iters,
        200_000,
        |n| {
            for _ in 0..n {
                (rec.push)(black_box(rid));
                (rec.pop)();
            }
        },
        |n| let_drain_catch_up(2 * n),
    )
}

struct KeepFrames(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl fastrace::collector::Reporter for KeepFrames {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        self.0
            .fetch_add(spans.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let floor = load_floor();

    // Three instances, each configured at its first call.
    std::env::set_var("NPUPROF_LOG", "warn");
    std::env::remove_var("VLLM_TORCH_PROFILER_DIR");
    let disabled = load_instance("disabled");
    black_box((disabled.step)(0));
    std::env::set_var("VLLM_TORCH_PROFILER_DIR", tmp.path().join("idle"));
    let idle = load_instance("idle");
    black_box((idle.step)(0));
    std::env::set_var("VLLM_TORCH_PROFILER_DIR", tmp.path().join("rec"));
    // 16 MiB rings (1 M records) and no disk cap: the bench never stops this profile (no export of
    // gigabytes at the end; the spool is removed with the temp dir).
    std::env::set_var("NPUPROF_BUFFER_KB", "16384");
    std::env::set_var("NPUPROF_MAX_DISK_MB", "10000000");
    let rec = load_instance("rec");

    let did = disabled.intern_str("layer");
    let iid = idle.intern_str("layer");
    let rid = rec.intern_str("layer");
    assert_eq!((rec.start)(), 0);

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30);

    // Calls of a few ns are measured 16 to an iteration (the loop and timer overhead would otherwise be a
    // large part of them); the report divides by 16.
    macro_rules! x16 {
        ($e:expr) => {{
            $e;
            $e;
            $e;
            $e;
            $e;
            $e;
            $e;
            $e;
            $e;
            $e;
            $e;
            $e;
            $e;
            $e;
            $e;
            $e;
        }};
    }
    {
        let mut g = c.benchmark_group("floor");
        g.bench_function("empty_call_x16", |b| b.iter(|| x16!((floor.empty)())));
        g.bench_function("clock", |b| b.iter(|| black_box((floor.clock)())));
        g.bench_function("record", |b| b.iter(|| (floor.record)(black_box(7))));
        g.bench_function("record_pair", |b| {
            b.iter(|| {
                (floor.record)(black_box(7));
                (floor.record)(black_box(8));
            })
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("disabled");
        g.bench_function("step_x16", |b| {
            b.iter(|| x16!(black_box((disabled.step)(black_box(128)))))
        });
        g.bench_function("range_push_x16", |b| {
            b.iter(|| x16!((disabled.push)(black_box(did))))
        });
        g.finish();
        let mut g = c.benchmark_group("idle");
        g.bench_function("step_x16", |b| {
            b.iter(|| x16!(black_box((idle.step)(black_box(128)))))
        });
        g.bench_function("range_push_x16", |b| {
            b.iter(|| x16!((idle.push)(black_box(iid))))
        });
        g.finish();
    }

    let issued = std::cell::Cell::new(0u64);
    {
        let mut g = c.benchmark_group("recording");
        g.bench_function("push_pop", |b| {
            b.iter_custom(|iters| {
                issued.set(issued.get() + 2 * iters);
                npuprof_pairs(&rec, rid, iters)
            })
        });
        g.bench_function("mark", |b| {
            b.iter_custom(|iters| {
                issued.set(issued.get() + iters);
                chunked(
                    iters,
                    400_000,
                    |n| {
                        for _ in 0..n {
                            (rec.mark)(black_box(rid));
                        }
                    },
                    let_drain_catch_up,
                )
            })
        });
        g.bench_function("step", |b| {
            b.iter_custom(|iters| {
                issued.set(issued.get() + iters);
                chunked(
                    iters,
                    400_000,
                    |n| {
                        for _ in 0..n {
                            (rec.step)(black_box(128));
                        }
                    },
                    let_drain_catch_up,
                )
            })
        });
        g.finish();
    }
    assert_eq!(
        (rec.is_running)(),
        1,
        "the recording instance must still record"
    );

    // Peers: a named range open/close on the calling thread, data kept for export.
    {
        let mut g = c.benchmark_group("peer_pair");
        g.bench_function("npuprof", |b| {
            b.iter_custom(|iters| {
                issued.set(issued.get() + 2 * iters);
                npuprof_pairs(&rec, rid, iters)
            })
        });

        {
            use tracing_subscriber::prelude::*;
            let (chrome, guard) = tracing_chrome::ChromeLayerBuilder::new()
                .file(tmp.path().join("tracing-chrome.json"))
                .build();
            let subscriber = tracing_subscriber::registry().with(chrome);
            tracing::subscriber::with_default(subscriber, || {
                g.bench_function("tracing_chrome", |b| {
                    b.iter_custom(|iters| {
                        chunked(
                            iters,
                            100_000,
                            |n| {
                                for _ in 0..n {
                                    let span = tracing::info_span!("layer");
                                    let e = span.enter();
                                    black_box(&e);
                                }
                            },
                            // Let the writer thread keep up (its channel is unbounded).
                            |n| std::thread::sleep(Duration::from_nanos(n * 300)),
                        )
                    })
                });
            });
            drop(guard);
        }

        {
            puffin::set_scopes_on(true);
            let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let kept = frames.clone();
            let sink = puffin::GlobalProfiler::lock().add_sink(Box::new(move |frame| {
                kept.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                black_box(frame);
            }));
            let ran = std::cell::Cell::new(false);
            g.bench_function("puffin", |b| {
                b.iter_custom(|iters| {
                    ran.set(true);
                    chunked(
                        iters,
                        10_000,
                        |n| {
                            for _ in 0..n {
                                puffin::profile_scope!("layer");
                            }
                        },
                        |_| puffin::GlobalProfiler::lock().new_frame(),
                    )
                })
            });
            puffin::GlobalProfiler::lock().remove_sink(sink);
            puffin::set_scopes_on(false);
            // The sink got data (when this bench was not filtered out).
            assert!(!ran.get() || frames.load(std::sync::atomic::Ordering::Relaxed) > 0);
        }

        {
            use fastrace::prelude::*;
            let reported = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            fastrace::set_reporter(
                KeepFrames(reported.clone()),
                fastrace::collector::Config::default(),
            );
            let ran = std::cell::Cell::new(false);
            g.bench_function("fastrace", |b| {
                b.iter_custom(|iters| {
                    ran.set(true);
                    let mut root = Some(Span::root("root", SpanContext::random()));
                    let mut guard = root.as_ref().map(|r| r.set_local_parent());
                    let t = chunked(
                        iters,
                        1_000,
                        |n| {
                            for _ in 0..n {
                                let s = LocalSpan::enter_with_local_parent("layer");
                                black_box(&s);
                            }
                        },
                        |_| {
                            // Submit what was collected and start a new trace (untimed).
                            guard.take();
                            root.take();
                            root = Some(Span::root("root", SpanContext::random()));
                            guard = root.as_ref().map(|r| r.set_local_parent());
                        },
                    );
                    drop(guard);
                    drop(root);
                    t
                })
            });
            fastrace::flush();
            assert!(!ran.get() || reported.load(std::sync::atomic::Ordering::Relaxed) > 0);
        }
        g.finish();
    }
    c.final_summary();

    // Spool accounting: what reached the spool vs what was issued (untimed; waits for the drain).
    std::thread::sleep(Duration::from_millis(500));
    let spool = rec.output_dir_path().join("FRAMEWORK/npuprof.spool");
    let spool_bytes = std::fs::metadata(&spool).map(|m| m.len()).unwrap_or(0);
    let out = format!(
        "{{\"issued_records\": {}, \"spool_bytes\": {spool_bytes}, \"still_recording\": {}}}\n",
        issued.get(),
        (rec.is_running)() == 1
    );
    std::fs::write(results_dir().join("record.json"), out).unwrap();
    // The recording profile is abandoned on purpose: its spool holds every record of the timed loops
    // (gigabytes), and stopping it would write a trace many times that size. Its temp dir and spool go away
    // here, and the process ends without running `atexit` handlers: the instance's exit hook would otherwise
    // finish the profile in the removed directory, and its failed export logged an ERROR line.
    drop(tmp);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit has no preconditions; criterion's files and record.json are written and closed above.
    unsafe { libc::_exit(0) }
}
