//! Demo: a fake tensor-parallel inference server whose two worker processes load libnpuprof.so with
//! `dlopen` and call it exactly like a runtime: scheduler steps, model ranges on several threads, and the
//! two trigger logics.
//!
//!   worker 0 (new logic): POST /start_profile at step 3, POST /stop_profile at step 9
//!   worker 1 (old logic): PROFILER_TOKEN_THRESHOLD=256, PROFILER_STOP_STEP=4 (starts at the first prefill)
//!
//! Run: `cargo build --release && cargo run --release --example demo`
//! Results: `$VLLM_TORCH_PROFILER_DIR` (default ./profiling), one `*_ascend_ms` directory per worker.
//! The library is `$NPUPROF_LIBRARY`, else libnpuprof.so next to this example's target directory.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

struct Api {
    start: extern "C" fn() -> c_int,
    stop: extern "C" fn() -> c_int,
    step: extern "C" fn(u64) -> c_int,
    intern: unsafe extern "C" fn(*const c_char) -> u32,
    push: extern "C" fn(u32),
    pop: extern "C" fn(),
    mark: extern "C" fn(u32),
    flush: extern "C" fn() -> c_int,
    output_dir: unsafe extern "C" fn(*mut c_char, usize) -> usize,
    strerror: extern "C" fn(c_int) -> *const c_char,
}

fn library() -> PathBuf {
    if let Some(p) = std::env::var_os("NPUPROF_LIBRARY") {
        return p.into();
    }
    // target/<profile>/examples/demo -> target/<profile>/libnpuprof.so
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("libnpuprof.so")
}

fn load() -> Api {
    let lib = library();
    let c = CString::new(lib.to_str().expect("utf-8 path")).unwrap();
    // SAFETY: dlopen/dlsym with valid C strings; the symbols have the signatures of include/npuprof.h.
    unsafe {
        let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if h.is_null() {
            let e = CStr::from_ptr(libc::dlerror()).to_string_lossy();
            eprintln!(
                "cannot load {}: {e}\nbuild it first: cargo build --release",
                lib.display()
            );
            std::process::exit(2);
        }
        let sym = |n: &str| -> *mut c_void {
            let cn = CString::new(n).unwrap();
            let p = libc::dlsym(h, cn.as_ptr());
            assert!(!p.is_null(), "missing symbol {n}");
            p
        };
        Api {
            start: std::mem::transmute::<*mut c_void, extern "C" fn() -> c_int>(sym(
                "npuprof_start",
            )),
            stop: std::mem::transmute::<*mut c_void, extern "C" fn() -> c_int>(sym("npuprof_stop")),
            step: std::mem::transmute::<*mut c_void, extern "C" fn(u64) -> c_int>(sym(
                "npuprof_step",
            )),
            intern: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*const c_char) -> u32>(
                sym("npuprof_intern"),
            ),
            push: std::mem::transmute::<*mut c_void, extern "C" fn(u32)>(sym("npuprof_range_push")),
            pop: std::mem::transmute::<*mut c_void, extern "C" fn()>(sym("npuprof_range_pop")),
            mark: std::mem::transmute::<*mut c_void, extern "C" fn(u32)>(sym("npuprof_mark")),
            flush: std::mem::transmute::<*mut c_void, extern "C" fn() -> c_int>(sym(
                "npuprof_flush",
            )),
            output_dir: std::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(*mut c_char, usize) -> usize,
            >(sym("npuprof_output_dir")),
            strerror: std::mem::transmute::<*mut c_void, extern "C" fn(c_int) -> *const c_char>(
                sym("npuprof_strerror"),
            ),
        }
    }
}

fn check(api: &Api, what: &str, rc: c_int) {
    if rc != 0 {
        // SAFETY: npuprof_strerror returns a static C string.
        let msg = unsafe { CStr::from_ptr((api.strerror)(rc)) }.to_string_lossy();
        eprintln!("{what}: {msg}");
    }
}

fn spin(us: u64) {
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_micros(us) {
        std::hint::spin_loop();
    }
}

fn worker(rank: u32) {
    let api = load();
    let id = |s: &str| {
        let c = CString::new(s).unwrap();
        // SAFETY: valid C string.
        unsafe { (api.intern)(c.as_ptr()) }
    };
    let (fwd, embed, attn, mlp, sample) = (
        id("model_forward"),
        id("embedding"),
        id("attention"),
        id("mlp"),
        id("sampler"),
    );
    let (detok, kv) = (id("detokenize"), id("kv_cache_swap_out"));
    // A detokenizer thread with its own ranges, as the runtime's output processor has: it handles each
    // step's output, and the scheduler waits for it before the next step (so every step of a profile has
    // the detokenizer's work in it, however the threads are scheduled).
    let (outputs, to_detok) = std::sync::mpsc::sync_channel::<u64>(0);
    let (done, detok_done) = std::sync::mpsc::sync_channel::<()>(0);
    let helper = {
        let (push, pop, mark) = (api.push, api.pop, api.mark);
        std::thread::Builder::new()
            .name("detokenizer".into())
            .spawn(move || {
                for _step in to_detok {
                    push(detok);
                    spin(150);
                    pop();
                    mark(kv);
                    if done.send(()).is_err() {
                        break;
                    }
                }
            })
            .unwrap()
    };
    for step in 1..=12u64 {
        // Step 2 and 7 are prefills (many tokens), the others decode steps.
        let tokens = if step == 2 || step == 7 {
            512
        } else {
            8 * rank as u64 + 16
        };
        if rank == 0 && step == 3 {
            check(&api, "start_profile", (api.start)());
        }
        if rank == 0 && step == 9 {
            check(&api, "stop_profile", (api.stop)());
        }
        check(&api, "step", (api.step)(tokens));
        (api.push)(fwd);
        (api.push)(embed);
        spin(100);
        (api.pop)();
        for _layer in 0..4 {
            (api.push)(attn);
            spin(if tokens > 100 { 600 } else { 150 });
            (api.pop)();
            (api.push)(mlp);
            spin(200);
            (api.pop)();
        }
        (api.push)(sample);
        spin(80);
        (api.pop)();
        (api.pop)();
        outputs.send(step).unwrap();
        detok_done.recv().unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(outputs);
    helper.join().unwrap();
    check(&api, "flush", (api.flush)());
    let mut buf = vec![0 as c_char; 4096];
    // SAFETY: buf has 4096 bytes.
    let n = unsafe { (api.output_dir)(buf.as_mut_ptr(), buf.len()) };
    let dir = if n > 0 {
        // SAFETY: NUL-terminated by npuprof_output_dir.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    } else {
        "(none)".into()
    };
    println!("worker {rank}: {dir}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--worker") {
        worker(args[i + 1].parse().expect("rank"));
        return;
    }
    let root = std::env::var_os("VLLM_TORCH_PROFILER_DIR").unwrap_or_else(|| "./profiling".into());
    let exe = std::env::current_exe().unwrap();
    let lib = library();
    if !lib.exists() {
        eprintln!(
            "{} not found: run `cargo build --release` first (or set NPUPROF_LIBRARY)",
            lib.display()
        );
        std::process::exit(2);
    }
    println!(
        "npuprof demo: 2 workers, results under {}",
        PathBuf::from(&root).display()
    );
    let kids: Vec<_> = (0..2u32)
        .map(|rank| {
            let mut c = Command::new(&exe);
            c.args(["--worker", &rank.to_string()])
                .env("VLLM_TORCH_PROFILER_DIR", &root)
                .env("NPUPROF_LIBRARY", &lib)
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string());
            if rank == 1 {
                c.env("PROFILER_TOKEN_THRESHOLD", "256")
                    .env("PROFILER_STOP_STEP", "4");
            } else {
                c.env_remove("PROFILER_TOKEN_THRESHOLD");
            }
            c.spawn().expect("spawn worker")
        })
        .collect();
    let mut ok = true;
    for mut k in kids {
        ok &= k.wait().map(|s| s.success()).unwrap_or(false);
    }
    println!(
        "open ASCEND_PROFILER_OUTPUT/trace_view.json of each worker in https://ui.perfetto.dev"
    );
    std::process::exit(if ok { 0 } else { 1 });
}
