//! Who the worker is: its name (`NPUPROF_WORKER_NAME` made a directory name, else the host name and pid), its
//! rank and its device, and the variables that gave them.

use super::env::Reader;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// The longest `NPUPROF_WORKER_NAME` in bytes: the directory name `{worker}_{17 digits}_ascend_ms` must fit
/// `NAME_MAX` (255 bytes).
pub const MAX_WORKER_NAME_BYTES: usize = 255 - 1 - 17 - crate::layout::SUFFIX.len();

/// Who this worker is: its name, rank and device, and the variables that gave them.
pub(super) struct Identity {
    pub(super) worker_name: Option<String>,
    pub(super) rank: u32,
    pub(super) rank_source: &'static str,
    pub(super) device_id: u32,
    pub(super) device_source: &'static str,
}

pub(super) fn identity(r: &mut Reader) -> Identity {
    let worker_name = r
        .raw("NPUPROF_WORKER_NAME")
        .and_then(|v| worker_name(r, &v));
    let (rank, rank_var) = r.first_u32(&["NPUPROF_RANK", "RANK", "LOCAL_RANK"]);
    let (device_id, device_var) = r.first_u32(&["NPUPROF_DEVICE", "LOCAL_RANK"]);
    Identity {
        worker_name,
        rank,
        rank_source: rank_var.unwrap_or("default"),
        device_id,
        device_source: device_var.unwrap_or("default"),
    }
}

/// `NPUPROF_WORKER_NAME`, made a plain directory name (one warning for each change), or `None` (one warning)
/// when it cannot be one.
fn worker_name(r: &mut Reader, v: &OsString) -> Option<String> {
    const VAR: &str = "NPUPROF_WORKER_NAME";
    const DEFAULT: &str = "{hostname}_{pid}";
    if v.to_str().is_none() {
        r.warn(VAR, v, "not valid UTF-8", DEFAULT);
        return None;
    }
    let s = String::from_utf8_lossy(v.as_bytes());
    let mut clean = sanitize_component(s.trim());
    if clean.is_empty() || clean == "." || clean == ".." {
        r.warn(VAR, v, "not usable as a directory name", DEFAULT);
        return None;
    }
    // A leading dot would hide the result (and could name `.control`): replaced, like `/`.
    if clean.starts_with('.') {
        clean.replace_range(..1, "_");
    }
    if clean.len() > MAX_WORKER_NAME_BYTES {
        r.warn(
            VAR,
            v,
            &format!(
                "{} bytes long, more than a directory name can hold ({MAX_WORKER_NAME_BYTES} bytes \
                 with the timestamp and suffix)",
                clean.len()
            ),
            DEFAULT,
        );
        return None;
    }
    if clean != s {
        r.warn(VAR, v, "not a plain directory name", format!("\"{clean}\""));
    }
    Some(clean)
}

/// Replaces what cannot appear in one path component (and what would confuse msprof-analyze's
/// `name.split('_')` parsing of the timestamp, which only cares about the last three fields).
pub fn sanitize_component(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '/' || c == '\0' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `len - 1` bytes, leaving room for a terminating NUL that
    // gethostname may omit on truncation; the last byte stays 0.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let s = String::from_utf8_lossy(&buf[..end]).into_owned();
    if s.is_empty() {
        "localhost".into()
    } else {
        s
    }
}
