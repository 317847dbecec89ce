//! Finding and running CANN's `msprof --export=on` (export thread only).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `msprof` on PATH (as torch_npu looks it up), else in the toolkit's `tools/profiler/bin`.
pub fn find_msprof() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exe = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("msprof");
            if exe(&p) {
                return Some(p);
            }
        }
    }
    for var in ["ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH"] {
        if let Some(home) = std::env::var_os(var) {
            let p = Path::new(&home).join("tools/profiler/bin/msprof");
            if exe(&p) {
                return Some(p);
            }
        }
    }
    None
}

pub(super) enum RunError {
    Spawn(String),
    Failed(String),
    Timeout(u64),
}

/// Runs `msprof --export=on --output=<prof>` with its output in `log`, killed after `timeout`. msprof starts
/// in the worker directory we hold open (`fchdir(cwd)` in the child) and gets `prof` relative to it, so it
/// works on the directory npuprof created even if someone renamed or replaced its name in the root (a
/// `/proc/self/fd/N` path would name the child's own descriptors, and msprof rejects symlinked paths).
pub(super) fn run_msprof(
    msprof: &Path,
    cwd: std::os::fd::RawFd,
    prof: &Path,
    log: &Path,
    timeout: Duration,
) -> std::result::Result<(), RunError> {
    let out = std::fs::File::create(log)
        .map_err(|e| RunError::Spawn(format!("{}: {e}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(|e| RunError::Spawn(e.to_string()))?;
    let mut arg = std::ffi::OsString::from("--output=");
    arg.push(prof.as_os_str());
    use std::os::unix::process::CommandExt;
    // A relative program path (a relative PATH entry) must not be looked up in the directory we chdir to.
    let mut cmd =
        Command::new(std::path::absolute(msprof).unwrap_or_else(|_| msprof.to_path_buf()));
    // SAFETY: fchdir is async-signal-safe and touches only the child's own state; `cwd` is a directory
    // descriptor the parent keeps open until the child is waited for (it is inherited across fork).
    unsafe {
        cmd.pre_exec(move || {
            if libc::fchdir(cwd) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd
        // Its own process group: a timeout kills msprof and whatever it started (the real one is a script
        // that runs Python), not only the direct child.
        .process_group(0)
        .arg("--export=on")
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| RunError::Spawn(format!("cannot run {}: {e}", msprof.display())))?;
    let t0 = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(RunError::Failed(format!("{st}: {}", tail.join(" | "))));
            }
            Ok(None) if t0.elapsed() >= timeout => {
                // SAFETY: kill(2) on the child's own process group (its pid, see `process_group(0)`).
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout(timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(RunError::Failed(e.to_string())),
        }
    }
}
