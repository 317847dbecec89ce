//! Status codes shared by the C ABI and the safe core.
//!
//! The numeric values are part of the ABI (`enum npuprof_status` in `include/npuprof.h`) and never change.

use std::ffi::CStr;
use std::fmt;

/// `enum npuprof_status`, with the values fixed by the header.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    Disabled = 1,
    AlreadyRunning = 2,
    NotRunning = 3,
    InvalidArgument = 4,
    Io = 5,
    Backend = 6,
    Internal = 7,
    Busy = 8,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Ok,
        Status::Disabled,
        Status::AlreadyRunning,
        Status::NotRunning,
        Status::InvalidArgument,
        Status::Io,
        Status::Backend,
        Status::Internal,
        Status::Busy,
    ];

    /// The static, NUL-terminated description returned by `npuprof_strerror`.
    pub fn describe(code: i32) -> &'static CStr {
        let s: &'static [u8] = match code {
            0 => b"NPUPROF_OK: success\0",
            1 => b"NPUPROF_ERR_DISABLED: profiling is not enabled (VLLM_TORCH_PROFILER_DIR is unset or empty)\0",
            2 => b"NPUPROF_ERR_ALREADY_RUNNING: a profile is already being recorded\0",
            3 => b"NPUPROF_ERR_NOT_RUNNING: no profile is being recorded\0",
            4 => b"NPUPROF_ERR_INVALID_ARGUMENT: invalid argument\0",
            5 => b"NPUPROF_ERR_IO: a file or directory could not be created or written\0",
            6 => b"NPUPROF_ERR_BACKEND: the profiling backend failed\0",
            7 => b"NPUPROF_ERR_INTERNAL: internal error (caught panic or broken invariant)\0",
            8 => b"NPUPROF_ERR_BUSY: a control call re-entered on a thread already inside one (refused)\0",
            _ => b"NPUPROF_ERR_UNKNOWN: unknown status code\0",
        };
        // All literals above end in exactly one NUL and contain no other.
        CStr::from_bytes_with_nul(s).unwrap_or(c"NPUPROF_ERR_UNKNOWN")
    }
}

/// An error of the safe core: a status for the C caller and a message for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub msg: String,
}

impl Error {
    pub fn new(status: Status, msg: impl Into<String>) -> Self {
        Error {
            status,
            msg: msg.into(),
        }
    }
    pub fn io(what: &str, path: &std::path::Path, e: &std::io::Error) -> Self {
        Error::new(Status::Io, format!("{what} {}: {e}", path.display()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.status, self.msg)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// A caught panic's payload: its message, then the payload dropped without letting a panicking `Drop`
/// escape (such a payload is leaked instead; the only one that is).
pub fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    let msg = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    }))
    .unwrap_or_default();
    if let Err(again) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(p))) {
        std::mem::forget(again);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_message_and_unknown_is_not_null() {
        let mut seen = std::collections::HashSet::new();
        for s in Status::ALL {
            let m = Status::describe(s as i32).to_str().unwrap();
            assert!(m.starts_with("NPUPROF_"), "{m}");
            assert!(seen.insert(m));
        }
        for bad in [-1, 9, 1000, i32::MIN, i32::MAX] {
            assert!(Status::describe(bad).to_str().unwrap().contains("UNKNOWN"));
        }
    }
}
