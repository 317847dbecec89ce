//! Shared by the benches: the floor library and independent instances of libnpuprof.so, all loaded with
//! dlopen and called through function pointers, as a runtime calls them.
#![allow(dead_code)]

#[path = "../../tests/common/mod.rs"]
pub(crate) mod common;

use std::ffi::{c_char, c_int, c_void, CString};
use std::path::Path;

unsafe fn open(path: &Path) -> *mut c_void {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!h.is_null(), "dlopen {}", path.display());
    h
}

unsafe fn sym<T: Copy>(h: *mut c_void, name: &str) -> T {
    let c = CString::new(name).unwrap();
    // SAFETY: the caller names a symbol whose type is T (a function pointer of the same size).
    let p = unsafe { libc::dlsym(h, c.as_ptr()) };
    assert!(!p.is_null(), "dlsym {name}");
    // SAFETY: the caller names a symbol whose type is T, and `p` is not null.
    unsafe { std::mem::transmute_copy(&p) }
}

#[derive(Clone, Copy)]
pub(crate) struct Floor {
    pub empty: extern "C" fn(),
    pub clock: extern "C" fn() -> u64,
    pub record: extern "C" fn(u32),
}

pub(crate) fn load_floor() -> Floor {
    let so = common::build_c(
        "libnpuprof_floor.so",
        &["benches/floor.c"],
        &[],
        &["-shared", "-fPIC", "-O2"],
    );
    // SAFETY: the symbols of benches/floor.c with these signatures.
    unsafe {
        let h = open(&so);
        Floor {
            empty: sym(h, "floor_empty"),
            clock: sym(h, "floor_clock"),
            record: sym(h, "floor_record"),
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Npuprof {
    pub start: extern "C" fn() -> c_int,
    pub stop: extern "C" fn() -> c_int,
    pub step: extern "C" fn(u64) -> c_int,
    pub is_running: extern "C" fn() -> c_int,
    pub intern: unsafe extern "C" fn(*const c_char) -> u32,
    pub push: extern "C" fn(u32),
    pub pop: extern "C" fn(),
    pub mark: extern "C" fn(u32),
    pub flush: extern "C" fn() -> c_int,
    pub shutdown: extern "C" fn() -> c_int,
    pub output_dir: unsafe extern "C" fn(*mut c_char, usize) -> usize,
}

impl Npuprof {
    pub(crate) fn intern_str(&self, s: &str) -> u32 {
        let c = CString::new(s).unwrap();
        // SAFETY: valid C string.
        unsafe { (self.intern)(c.as_ptr()) }
    }

    pub(crate) fn output_dir_path(&self) -> std::path::PathBuf {
        let mut buf = vec![0 as c_char; 4096];
        // SAFETY: buf has 4096 bytes.
        let n = unsafe { (self.output_dir)(buf.as_mut_ptr(), buf.len()) };
        let bytes: Vec<u8> = buf[..n].iter().map(|&c| c as u8).collect();
        std::path::PathBuf::from(String::from_utf8(bytes).unwrap())
    }
}

/// A private copy of libnpuprof.so (its own globals, its own configuration) loaded with dlopen. The
/// configuration is read from the environment at the instance's first call.
pub(crate) fn load_instance(tag: &str) -> Npuprof {
    let lib = common::lib();
    let dir = common::target_dir().join("bench-libs");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(format!("libnpuprof_{tag}.so"));
    std::fs::copy(&lib, &copy).unwrap();
    // SAFETY: the exported functions of include/npuprof.h with these signatures.
    unsafe {
        let h = open(&copy);
        Npuprof {
            start: sym(h, "npuprof_start"),
            stop: sym(h, "npuprof_stop"),
            step: sym(h, "npuprof_step"),
            is_running: sym(h, "npuprof_is_running"),
            intern: sym(h, "npuprof_intern"),
            push: sym(h, "npuprof_range_push"),
            pop: sym(h, "npuprof_range_pop"),
            mark: sym(h, "npuprof_mark"),
            flush: sym(h, "npuprof_flush"),
            shutdown: sym(h, "npuprof_shutdown"),
            output_dir: sym(h, "npuprof_output_dir"),
        }
    }
}

/// CPU time of the calling thread in ns.
pub(crate) fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Resident set size of this process in bytes.
pub(crate) fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Where the benches leave their machine-readable results for `benches/report`.
pub(crate) fn results_dir() -> std::path::PathBuf {
    let d = common::target_dir().parent().unwrap().join("npuprof-bench");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The `RESULT {json}` line a bench child prints, parsed; panics with the child's output (and `what`) when
/// it printed none.
pub(crate) fn result_line(o: &std::process::Output, what: &str) -> serde_json::Value {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "{what} failed:\n{out}\n{}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
    serde_json::from_str(line).unwrap()
}
