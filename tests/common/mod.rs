//! Helpers for the integration tests: locate the built library, build C programs with the `cc` crate, run
//! them with a clean environment, and read results.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

mod check;
#[allow(unused_imports)] // Each test binary uses some of the helpers.
pub(crate) use check::{
    advisor_frequency, check_communication, check_profile, check_profile_no_cluster,
    compare_memory, consumer, perfetto_check, perfetto_python, recipes,
};

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` next to the repository, where the project's sibling tools may live (a lone clone has none:
/// nothing may need it).
pub(crate) fn shared() -> PathBuf {
    repo().join("../shared")
}

/// target/<profile>/ of this test binary.
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The cdylib, freshly built. `cargo test` builds only the rlib for integration tests, so the first call in
/// each test binary runs `cargo build --lib` for this profile (a no-op when it is up to date).
/// `NPUPROF_TEST_LIB` replaces it with a given file: run-tests' wheel section runs the C tests against the
/// library inside the aarch64 wheel.
pub(crate) fn lib() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| match std::env::var_os("NPUPROF_TEST_LIB") {
            Some(p) => PathBuf::from(p),
            None => build_lib(false),
        })
        .clone()
}

/// A second copy of the library built with `--features fault-injection` (in target/faults/), for the
/// reliability tests' injected panics (`NPUPROF_TEST_FAULTS`).
pub(crate) fn lib_faults() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_lib(true)).clone()
}

fn build_lib(faults: bool) -> PathBuf {
    if sanitize() {
        return build_lib_asan(faults);
    }
    // target/<profile>/, or target/<triple>/<profile>/ when cross-building (aarch64 under qemu); the
    // target directory itself may be anything (`--target-dir target/asan`).
    let dir = target_dir();
    let profile = dir.file_name().unwrap().to_string_lossy().into_owned();
    let (target, host) = (env!("NPUPROF_BUILD_TARGET"), env!("NPUPROF_BUILD_HOST"));
    let cross = target != host;
    let mut root = dir.parent().unwrap().to_path_buf();
    if cross {
        root = root.parent().unwrap().to_path_buf();
    }
    if faults {
        root = repo().join("target/faults");
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo())
        .args(["build", "--lib", "--quiet", "--target-dir"])
        .arg(&root);
    if profile != "debug" {
        cmd.args(["--profile", &profile]);
    }
    if cross {
        cmd.args(["--target", target]);
    }
    if faults {
        cmd.args(["--features", "fault-injection"]);
    }
    let o = cmd.output().expect("run cargo build --lib");
    assert!(
        o.status.success(),
        "cargo build --lib failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut out = root;
    if cross {
        out = out.join(target);
    }
    let p = out.join(&profile).join("libnpuprof.so");
    assert!(p.exists(), "{} not built", p.display());
    p
}

/// Whether this test can act as another user (chown to uid 65534, run a process as it): only as root.
/// Without root the caller skips that part, saying so in one loud line; in CI (`CI` set, which runs as
/// root: `.ci/run`, `run-tests`) a missing root fails the test instead, so the foreign-owner checks never
/// pass there by being skipped.
pub(crate) fn root_or_skip(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} needs root, and CI must run the tests as root"
    );
    eprintln!("SKIP ({what} needs root; CI runs it as root)");
    false
}

/// The library itself instrumented with AddressSanitizer (nightly `-Zsanitizer=address`, as `run-tests`'
/// TSan section builds it), for the C clients of `run-tests`' sanitizer section (`NPUPROF_TEST_SANITIZE`):
/// a heap overflow, use after free or leak in npuprof is then reported, not only in the clients and fakes.
/// The runtime is the client's (gcc's libasan, linked by `-fsanitize=address`): a cdylib does not link one,
/// and its instrumentation calls only `__asan_*` entry points that runtime exports. Built into
/// target/asan-lib/ (target/asan-faults/ with `--features fault-injection`); native x86_64 only.
fn build_lib_asan(faults: bool) -> PathBuf {
    let triple = env!("NPUPROF_BUILD_TARGET");
    assert_eq!(
        triple,
        env!("NPUPROF_BUILD_HOST"),
        "the sanitizer section runs natively"
    );
    let root = repo().join(if faults {
        "target/asan-faults"
    } else {
        "target/asan-lib"
    });
    // The rustup proxy, not $CARGO (this test's own toolchain, which may be stable).
    let mut cmd = Command::new("cargo");
    cmd.current_dir(repo())
        .args([
            "+nightly",
            "build",
            "--lib",
            "--quiet",
            "--target",
            triple,
            "--target-dir",
        ])
        .arg(&root)
        // DT_NEEDED on gcc's libasan: a process that gets the library through LD_PRELOAD without being
        // built with ASan (the `sh` of a client's system(), a CLI) loads the runtime with it at startup.
        .env("RUSTFLAGS", "-Zsanitizer=address -Clink-arg=-lasan")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTUP_TOOLCHAIN");
    if faults {
        cmd.args(["--features", "fault-injection"]);
    }
    let o = cmd.output().expect("run cargo +nightly build --lib");
    assert!(
        o.status.success(),
        "cargo +nightly build --lib (ASan) failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let p = root.join(triple).join("debug/libnpuprof.so");
    assert!(p.exists(), "{} not built", p.display());
    p
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Compiles C sources into an executable under target/<profile>/ctests/ with the target's C compiler.
pub(crate) fn build_c(name: &str, sources: &[&str], defines: &[&str], extra: &[&str]) -> PathBuf {
    let _g = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = target_dir().join("ctests").join(name);
    // `name` may hold a subdirectory (`bench-mspti/libmspti.so`): create it too, not only ctests/.
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    // The target's C compiler (aarch64-linux-gnu-gcc when cross-building), chosen by the cc crate.
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .target(env!("NPUPROF_BUILD_TARGET"))
        .host(env!("NPUPROF_BUILD_HOST"))
        .opt_level(1)
        .debug(true)
        .warnings(true)
        .get_compiler();
    let mut cmd = compiler.to_command();
    cmd.arg("-std=gnu99")
        .arg("-Wall")
        .arg("-Werror")
        .arg(format!("-I{}", repo().join("include").display()))
        .arg("-o")
        .arg(&out);
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    for s in sources {
        cmd.arg(repo().join(s));
    }
    cmd.args(extra).arg("-lpthread").arg("-ldl");
    if sanitize() {
        // `run-tests`' sanitizer section: every C client and fake vendor library with AddressSanitizer and
        // UndefinedBehaviorSanitizer, any report fatal.
        cmd.args([
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer",
        ]);
        // The programs it starts without ASan (sh, the fake msprof) inherit LD_PRELOAD with the runtime
        // (the library is instrumented too): they get no leak check, this program keeps its own. Programs
        // only: in a fake library its constructor would call setenv when the library is dlopen'ed, while
        // other threads may read the environment.
        if !extra.contains(&"-shared") {
            cmd.arg(repo().join("tests/c/asan_children.c"));
        }
    }
    let o = cmd.output().expect("run C compiler");
    assert!(
        o.status.success(),
        "C build of {name} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The C client, built once per test binary per link mode.
pub(crate) fn client(dlopen: bool) -> PathBuf {
    static PRELOAD: OnceLock<PathBuf> = OnceLock::new();
    static DLOPEN: OnceLock<PathBuf> = OnceLock::new();
    let bin = std::env::current_exe()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    if dlopen {
        DLOPEN
            .get_or_init(|| {
                build_c(
                    &format!("client_dlopen_{bin}"),
                    &["tests/c/client.c"],
                    &["NPUPROF_TEST_DLOPEN"],
                    &[],
                )
            })
            .clone()
    } else {
        PRELOAD
            .get_or_init(|| {
                build_c(
                    &format!("client_preload_{bin}"),
                    &["tests/c/client.c"],
                    &[],
                    &[],
                )
            })
            .clone()
    }
}

/// `NPUPROF_TEST_SANITIZE=1`: the C code of the tests is built with ASan + UBSan.
/// tests/c/window.c (the scripted client of capture windows and `trigger --all`), built once per test binary.
#[allow(dead_code)]
pub(crate) fn window_client() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_c("window_client", &["tests/c/window.c"], &[], &[]))
        .clone()
}

pub(crate) fn sanitize() -> bool {
    std::env::var_os("NPUPROF_TEST_SANITIZE").is_some_and(|v| v != "0")
}

/// Clears `cmd`'s environment but for what every child of a test needs from ours: PATH/HOME/LANG/TMPDIR,
/// QEMU_LD_PREFIX (the aarch64 sysroot when the tests run under qemu-user through binfmt_misc) and the
/// sanitizers' options.
pub(crate) fn clean_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear();
    for k in [
        "PATH",
        "HOME",
        "LANG",
        "TMPDIR",
        "QEMU_LD_PREFIX",
        "ASAN_OPTIONS",
        "UBSAN_OPTIONS",
        "LSAN_OPTIONS",
    ] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd
}

/// Runs `prog` with only [`clean_env`]'s variables from our environment plus `env`.
pub(crate) fn run(prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(prog);
    clean_env(cmd.args(args));
    for (k, v) in env {
        cmd.env(k, v);
    }
    asan_preload(&mut cmd);
    cmd.output().expect("spawn")
}

/// In the sanitizer section, puts gcc's ASan runtime first in `cmd`'s `LD_PRELOAD` when it preloads the
/// (ASan-instrumented) library: the client has the runtime first already, but a program it starts without
/// ASan (the `sh` of `system()`) inherits `LD_PRELOAD`, and the runtime must come before libc there too
/// (loaded only as the library's dependency, after libc, its interceptors find nothing: SEGV at pc 0).
pub(crate) fn asan_preload(cmd: &mut Command) {
    if !sanitize() {
        return;
    }
    let preload = cmd
        .get_envs()
        .find(|(k, _)| *k == "LD_PRELOAD")
        .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
    if let Some(p) = preload.filter(|p| !p.is_empty()) {
        cmd.env("LD_PRELOAD", format!("{}:{p}", asan_runtime().display()));
    }
}

/// gcc's ASan runtime (`gcc -print-file-name=libasan.so`), the one the C clients link.
fn asan_runtime() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let o = Command::new("cc")
            .arg("-print-file-name=libasan.so")
            .output()
            .expect("cc -print-file-name");
        let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        assert!(
            p.is_absolute() && p.exists(),
            "no libasan.so: {}",
            p.display()
        );
        p.canonicalize().unwrap()
    })
    .clone()
}

/// Runs `cmd` (its environment already set) with stdout/stderr captured in files and no stdin, killing it if
/// it has not ended after `limit`: a hang fails the test, with what the child printed, instead of hanging
/// the suite.
pub(crate) fn run_guarded(cmd: &mut Command, limit: std::time::Duration) -> ClientRun {
    run_guarded_releasing(cmd, limit, None)
}

/// [`run_guarded`], creating the file `release.1` once the child's stderr contains `release.0` (a handshake:
/// a `hold@` fault point waiting for that file ends when the library has said what the test waits for,
/// whatever the timing).
pub(crate) fn run_guarded_releasing(
    cmd: &mut Command,
    limit: std::time::Duration,
    release: Option<(&str, &Path)>,
) -> ClientRun {
    use std::time::Instant;
    let tmp = tempfile::tempdir().unwrap();
    let (out_p, err_p) = (tmp.path().join("out"), tmp.path().join("err"));
    cmd.stdout(std::fs::File::create(&out_p).unwrap())
        .stderr(std::fs::File::create(&err_p).unwrap())
        .stdin(std::process::Stdio::null());
    asan_preload(cmd);
    let mut child = cmd.spawn().expect("spawn the client");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some((needle, file)) = release {
            if !file.exists()
                && std::fs::read_to_string(&err_p)
                    .unwrap_or_default()
                    .contains(needle)
            {
                std::fs::write(file, b"").unwrap();
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the client hung (killed after {} s)\nstdout:\n{}\nstderr:\n{}",
                limit.as_secs(),
                std::fs::read_to_string(&out_p).unwrap_or_default(),
                std::fs::read_to_string(&err_p).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: std::fs::read(&out_p).unwrap(),
        stderr: std::fs::read(&err_p).unwrap(),
    };
    ClientRun {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        out,
    }
}

pub(crate) struct ClientRun {
    pub out: Output,
    pub stdout: String,
    pub stderr: String,
}

impl ClientRun {
    pub(crate) fn value(&self, key: &str) -> Option<String> {
        self.stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .next_back()
    }
    pub(crate) fn values(&self, key: &str) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .collect()
    }
    pub(crate) fn dir(&self) -> PathBuf {
        PathBuf::from(self.value("DIR").expect("DIR printed"))
    }
    /// Exit 0, no FAIL line, and the library really loaded: a client whose LD_PRELOAD failed says
    /// `NOT_PRELOADED=1` (tests/c/client.c), and a run that proves nothing must not pass.
    pub(crate) fn assert_ok(&self) {
        assert!(
            self.out.status.success()
                && !self
                    .stdout
                    .lines()
                    .any(|l| l.starts_with("FAIL ") || l.starts_with("NOT_PRELOADED=")),
            "client failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.out.status,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs the C client scenario, loading the library by dlopen or LD_PRELOAD.
pub(crate) fn run_client(dlopen: bool, scenario: &[&str], env: &[(&str, &str)]) -> ClientRun {
    run_client_with(&lib(), dlopen, scenario, env)
}

/// [`run_client`] with another copy of the library (e.g. [`lib_faults`]).
pub(crate) fn run_client_with(
    lib: &Path,
    dlopen: bool,
    scenario: &[&str],
    env: &[(&str, &str)],
) -> ClientRun {
    let lib_s = lib.to_str().unwrap().to_string();
    let mut args = vec![lib_s.as_str()];
    args.extend_from_slice(scenario);
    let mut env: Vec<(&str, &str)> = env.to_vec();
    if !dlopen {
        env.push(("LD_PRELOAD", lib_s.as_str()));
    }
    let mut cmd = Command::new(client(dlopen));
    clean_env(cmd.args(&args));
    for (k, v) in &env {
        cmd.env(k, v);
    }
    // Generous: only a hang reaches it.
    let r = run_guarded(&mut cmd, std::time::Duration::from_secs(300));
    // Whatever the scenario expects afterwards (a crash, a kill), the library must have been loaded the
    // way the test says: a silently failed LD_PRELOAD fails every preload test here.
    let link = r.value("LINK");
    assert_eq!(
        link.as_deref(),
        Some(if dlopen { "dlopen" } else { "preload" }),
        "the client did not load the library by {}\nstdout:\n{}\nstderr:\n{}",
        if dlopen { "dlopen" } else { "LD_PRELOAD" },
        r.stdout,
        r.stderr
    );
    r
}

pub(crate) fn trace(dir: &Path) -> Vec<Value> {
    let p = dir.join("ASCEND_PROFILER_OUTPUT/trace_view.json");
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let v: Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    v.as_array().expect("top-level array").clone()
}

pub(crate) fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// A minimal CSV reader that handles quoted fields (with doubled quotes, commas, newlines).
pub(crate) fn csv(p: &Path) -> Vec<Vec<String>> {
    let s = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut rows = vec![];
    let mut row = vec![];
    let mut f = String::new();
    let mut q = false;
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match (q, c) {
            (true, '"') if it.peek() == Some(&'"') => {
                f.push('"');
                it.next();
            }
            (true, '"') => q = false,
            (true, c) => f.push(c),
            (false, '"') => q = true,
            (false, ',') => row.push(std::mem::take(&mut f)),
            (false, '\n') => {
                row.push(std::mem::take(&mut f));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => f.push(c),
        }
    }
    if !f.is_empty() || !row.is_empty() {
        row.push(f);
        rows.push(row);
    }
    rows
}

pub(crate) fn slices<'a>(t: &'a [Value], name: &str) -> Vec<&'a Value> {
    t.iter()
        .filter(|e| e["ph"] == "X" && e["name"] == name)
        .collect()
}

pub(crate) fn step_names(t: &[Value]) -> Vec<String> {
    let mut v: Vec<(f64, String)> = t
        .iter()
        .filter(|e| {
            e["ph"] == "X"
                && e["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("ProfilerStep#"))
        })
        .map(|e| (ts_us(e), e["name"].as_str().unwrap().to_string()))
        .collect();
    v.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    v.into_iter().map(|x| x.1).collect()
}

/// `ts` in integer ns, parsed from the decimal string (f64 cannot hold epoch us to the ns).
pub(crate) fn ts_ns(e: &Value) -> i128 {
    decimal_ns(e["ts"].as_str().expect("ts is a string"))
}

fn decimal_ns(s: &str) -> i128 {
    let (a, b) = s.split_once('.').expect("3 decimals");
    assert_eq!(b.len(), 3, "{s}");
    a.parse::<i128>().unwrap() * 1000 + b.parse::<i128>().unwrap()
}

/// `dur` in integer ns (a decimal string with 3 decimals, like `ts`).
pub(crate) fn dur_ns(e: &Value) -> i128 {
    decimal_ns(e["dur"].as_str().expect("dur is a string"))
}

/// Slices on each (pid, tid) nest properly, checked exactly in ns (as Perfetto imports string times).
pub(crate) fn assert_proper_nesting(t: &[Value]) {
    type Lanes = std::collections::BTreeMap<(u64, u64), Vec<(i128, i128, String)>>;
    let mut by: Lanes = Default::default();
    for e in t.iter().filter(|e| e["ph"] == "X") {
        by.entry((e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap()))
            .or_default()
            .push((ts_ns(e), ts_ns(e) + dur_ns(e), e["name"].to_string()));
    }
    for (k, mut v) in by {
        v.sort_by_key(|x| (x.0, -x.1));
        let mut stack: Vec<(i128, i128, String)> = vec![];
        for s in v {
            while stack.last().is_some_and(|p| p.1 <= s.0) {
                stack.pop();
            }
            if let Some(p) = stack.last() {
                assert!(s.1 <= p.1, "{k:?}: {s:?} overlaps {p:?}");
            }
            stack.push(s);
        }
    }
}

pub(crate) fn ts_us(e: &Value) -> f64 {
    e["ts"].as_str().expect("ts is a string").parse().unwrap()
}

pub(crate) fn dur_us(e: &Value) -> f64 {
    dur_ns(e) as f64 / 1000.0
}

/// The worker directories (`*_ascend_ms`) directly under `root`, sorted.
pub(crate) fn workers(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with("_ascend_ms"));
    v.sort();
    v
}

/// msprof-analyze for the full checker: $NPUPROF_MSPROF_ANALYZE or ./.venv/bin/msprof-analyze.
pub(crate) fn msprof_analyze() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NPUPROF_MSPROF_ANALYZE") {
        return Some(PathBuf::from(p));
    }
    let p = repo().join(".venv/bin/msprof-analyze");
    p.exists().then_some(p)
}

/// The README demo (`examples/demo.rs`), built for this profile when missing.
#[allow(dead_code)]
pub(crate) fn demo_exe() -> PathBuf {
    let p = target_dir().join("examples/demo");
    if !p.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let o = std::process::Command::new(cargo)
            .current_dir(repo())
            .args(["build", "--quiet", "--example", "demo"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    p
}
