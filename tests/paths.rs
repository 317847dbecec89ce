//! Where results go, on a root other users can write to and with a careless caller: every file of a profile is
//! created and read through directory handles opened at start (a worker directory renamed away and replaced
//! by a symlink is never written through), a relative root survives a `chdir`, and every directory npuprof
//! creates has its documented mode whatever the umask.
//!
//! Each test runs its profile in a child process (this test binary again, one test, `PATHS_CHILD` set): the
//! configuration is read once per process.

mod common;
use npuprof::ffi::*;
use std::ffi::CStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const CHILD: &str = "PATHS_CHILD";

/// Runs test `name` of this binary in a child with `env` (plus `PATHS_CHILD=1`) and `cwd`; returns its stderr
/// after asserting it succeeded.
fn child(name: &str, cwd: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .current_dir(cwd)
        .env(CHILD, "1")
        .env("NPUPROF_LOG", "warn")
        .env("NPUPROF_BACKEND", "host")
        .env_remove("VLLM_TORCH_PROFILER_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(
        o.status.success(),
        "child {name} failed ({:?})\nstdout:\n{out}\nstderr:\n{err}",
        o.status
    );
    err
}

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

fn last_error() -> String {
    let mut buf = [0 as std::ffi::c_char; 1024];
    // SAFETY: a valid buffer of its length.
    unsafe { npuprof_last_error(buf.as_mut_ptr(), buf.len()) };
    // SAFETY: NUL-terminated by npuprof_last_error.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn output_dir() -> PathBuf {
    let mut buf = [0 as std::ffi::c_char; 4096];
    // SAFETY: a valid buffer of its length.
    let n = unsafe { npuprof_output_dir(buf.as_mut_ptr(), buf.len()) };
    assert!(n > 0 && n < buf.len());
    // SAFETY: NUL-terminated by npuprof_output_dir.
    PathBuf::from(
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// A few ranges named `name` on this thread.
fn record(name: &std::ffi::CStr, n: usize) {
    // SAFETY: a NUL-terminated name.
    let id = unsafe { npuprof_intern(name.as_ptr()) };
    for _ in 0..n {
        npuprof_range_push(id);
        npuprof_range_pop();
    }
}

fn assert_complete(dir: &Path, name: &str) {
    for f in [
        "profiler_info_0.json",
        "profiler_metadata.json",
        "ASCEND_PROFILER_OUTPUT/step_trace_time.csv",
        "ASCEND_PROFILER_OUTPUT/op_statistic.csv",
    ] {
        assert!(dir.join(f).is_file(), "{} missing", dir.join(f).display());
    }
    // Host-only (NPUPROF_BACKEND=host): no device tasks, no kernel_details.csv (as MindSpore at LevelNone).
    assert!(!dir
        .join("ASCEND_PROFILER_OUTPUT/kernel_details.csv")
        .exists());
    let t = common::trace(dir);
    assert!(
        !common::slices(&t, name).is_empty(),
        "no {name} slices in {}",
        dir.display()
    );
}

/// Every entry under `d` with its bytes (files) or target (symlinks), sorted.
fn snapshot(d: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.push((p.clone(), b"<dir>".to_vec()));
            out.extend(snapshot(&p));
        } else if t.is_symlink() {
            out.push((
                p.clone(),
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            ));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// Another user who can rename entries of the root renames our worker directory away while we record and
/// plants a symlink to a directory of their choosing (a root-only one, for a server running as root) under
/// its name, with a crafted spool and an output directory in it. Nothing is written into the target, the
/// crafted spool is not read, and the result is complete in the renamed directory.
#[test]
fn a_worker_directory_swapped_for_a_symlink_is_never_written_through() {
    if in_child() {
        let root = PathBuf::from(std::env::var_os("VLLM_TORCH_PROFILER_DIR").unwrap());
        let victim = PathBuf::from(std::env::var_os("VICTIM").unwrap());
        assert_eq!(npuprof_start(), 0, "{}", last_error());
        record(c"before_swap", 50);
        let dir = output_dir();
        // The drain moves the first records into the spool before the swap: a flush spools everything this
        // thread recorded before it returns (no sleep decides whether the spool holds them).
        assert_eq!(npuprof_flush(), 0, "{}", last_error());
        let spooled = std::fs::read(dir.join("FRAMEWORK/npuprof.spool")).unwrap();
        assert!(
            spooled.windows(11).any(|w| w == b"before_swap"),
            "the first records were not spooled before the swap ({} bytes)",
            spooled.len()
        );
        std::fs::rename(&dir, root.join("moved")).unwrap();
        std::os::unix::fs::symlink(&victim, &dir).unwrap();
        record(c"after_swap", 50);
        assert_eq!(npuprof_stop(), 0, "{}", last_error());
        assert_eq!(npuprof_flush(), 0, "{}", last_error());
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let victim = t.path().join("victim");
    std::fs::create_dir_all(victim.join("ASCEND_PROFILER_OUTPUT")).unwrap();
    std::fs::create_dir_all(victim.join("FRAMEWORK")).unwrap();
    std::fs::write(
        victim.join("FRAMEWORK/npuprof.spool"),
        b"crafted by the attacker",
    )
    .unwrap();
    std::fs::write(victim.join("keep"), b"root-only data").unwrap();
    let before = snapshot(&victim);
    child(
        "a_worker_directory_swapped_for_a_symlink_is_never_written_through",
        t.path(),
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.to_str().unwrap()),
            ("VICTIM", victim.to_str().unwrap()),
        ],
    );
    let after = snapshot(&victim);
    assert!(
        after == before,
        "the symlink's target was written to: {:?}",
        after.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    let moved = root.join("moved");
    // The crafted spool was not read (it would show as damage), ours was.
    let meta = common::json(&moved.join("profiler_metadata.json"));
    assert!(meta["npuprof"]["spool_damage"].is_null(), "{meta}");
    assert_complete(&moved, "before_swap");
    assert_complete(&moved, "after_swap");
    // The spool was read and removed through the handle: not left behind, not the attacker's.
    assert!(!moved.join("FRAMEWORK/npuprof.spool").exists());
}

/// `VLLM_TORCH_PROFILER_DIR=prof` (relative), and the process changes directory between start and stop: the
/// profile is written where it started, complete.
#[test]
fn a_relative_root_survives_a_chdir_between_start_and_stop() {
    if in_child() {
        assert_eq!(npuprof_start(), 0, "{}", last_error());
        record(c"relative", 20);
        std::env::set_current_dir(std::env::var_os("ELSEWHERE").unwrap()).unwrap();
        record(c"relative", 20);
        assert_eq!(npuprof_stop(), 0, "{}", last_error());
        assert_eq!(npuprof_flush(), 0, "{}", last_error());
        // The directory reported is absolute.
        assert!(output_dir().is_absolute(), "{}", output_dir().display());
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    child(
        "a_relative_root_survives_a_chdir_between_start_and_stop",
        &a,
        &[
            ("VLLM_TORCH_PROFILER_DIR", "prof"),
            ("ELSEWHERE", b.to_str().unwrap()),
        ],
    );
    let dirs: Vec<_> = std::fs::read_dir(a.join("prof"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert_complete(&dirs[0], "relative");
    assert_eq!(std::fs::read_dir(&b).unwrap().count(), 0);
}

/// A root that is a regular file: start fails with a message saying so.
#[test]
fn a_root_that_is_a_file_is_not_a_directory() {
    if in_child() {
        assert_ne!(npuprof_start(), 0);
        let e = last_error();
        assert!(e.contains("is not a directory"), "{e}");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("file");
    std::fs::write(&f, b"x").unwrap();
    child(
        "a_root_that_is_a_file_is_not_a_directory",
        t.path(),
        &[("VLLM_TORCH_PROFILER_DIR", f.to_str().unwrap())],
    );
    assert_eq!(std::fs::read(&f).unwrap(), b"x");
}

/// Every directory npuprof creates (the root and its missing parents, the worker directory, its
/// subdirectories) has mode 0750, whatever the umask narrows or leaves.
#[test]
fn created_directories_have_mode_0750_whatever_the_umask() {
    if in_child() {
        let mask = u32::from_str_radix(&std::env::var("UMASK").unwrap(), 8).unwrap();
        // SAFETY: umask has no memory effects.
        unsafe { libc::umask(mask as libc::mode_t) };
        assert_eq!(npuprof_start(), 0, "{}", last_error());
        record(c"mode", 5);
        assert_eq!(npuprof_stop(), 0, "{}", last_error());
        assert_eq!(npuprof_flush(), 0, "{}", last_error());
        return;
    }
    for umask in ["077", "022", "0"] {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("x/y/root");
        child(
            "created_directories_have_mode_0750_whatever_the_umask",
            t.path(),
            &[
                ("VLLM_TORCH_PROFILER_DIR", root.to_str().unwrap()),
                ("UMASK", umask),
                ("NPUPROF_KEEP_SPOOL", "1"),
            ],
        );
        let worker = std::fs::read_dir(&root)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        for d in [
            t.path().join("x"),
            t.path().join("x/y"),
            root.clone(),
            worker.clone(),
            worker.join("ASCEND_PROFILER_OUTPUT"),
            worker.join("FRAMEWORK"),
        ] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o750, "{} with umask {umask}: {mode:o}", d.display());
        }
    }
}

/// A root others can rename entries in (writable by group or others without the sticky bit, or owned by
/// another user): one warning naming the risk, however many profiles start. A sticky root of ours is fine.
#[test]
fn a_root_others_can_rename_in_gets_one_warning() {
    if in_child() {
        for _ in 0..2 {
            assert_eq!(npuprof_start(), 0, "{}", last_error());
            assert_eq!(npuprof_stop(), 0, "{}", last_error());
        }
        assert_eq!(npuprof_flush(), 0, "{}", last_error());
        return;
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let mut cases: Vec<(u32, Option<u32>, bool)> = vec![
        (0o777, None, true),
        (0o770, None, true),
        (0o1777, None, false),
        (0o755, None, false),
    ];
    if euid == 0 {
        // Owned by another user (who can rename anything in it, sticky or not).
        cases.push((0o1777, Some(65534), true));
    }
    for (mode, owner, warns) in cases {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("shared");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(mode)).unwrap();
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&root, Some(uid), None).unwrap();
        }
        let err = child(
            "a_root_others_can_rename_in_gets_one_warning",
            t.path(),
            &[("VLLM_TORCH_PROFILER_DIR", root.to_str().unwrap())],
        );
        let n = err.matches("can rename or replace").count();
        assert_eq!(
            n, warns as usize,
            "mode {mode:o} owner {owner:?}: {n} warnings\n{err}"
        );
    }
}

/// A root that is a symlink: followed when it belongs to us (or root), refused when another user owns it
/// (they could point it anywhere, e.g. at a root-only directory).
#[test]
fn a_root_symlink_is_followed_only_when_it_is_ours() {
    if in_child() {
        let ours = std::env::var("OURS").unwrap() == "1";
        if ours {
            assert_eq!(npuprof_start(), 0, "{}", last_error());
            assert_eq!(npuprof_stop(), 0, "{}", last_error());
            assert_eq!(npuprof_flush(), 0, "{}", last_error());
        } else {
            assert_ne!(npuprof_start(), 0);
            let e = last_error();
            assert!(e.contains("symlink owned by another user"), "{e}");
        }
        return;
    }
    for ours in [true, false] {
        if !ours && !common::root_or_skip("a symlink owned by another user") {
            continue;
        }
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        if !ours {
            std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
        }
        child(
            "a_root_symlink_is_followed_only_when_it_is_ours",
            t.path(),
            &[
                ("VLLM_TORCH_PROFILER_DIR", link.to_str().unwrap()),
                ("OURS", if ours { "1" } else { "0" }),
            ],
        );
        assert_eq!(
            std::fs::read_dir(&target).unwrap().count(),
            ours as usize,
            "ours={ours}"
        );
    }
}
