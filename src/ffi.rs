//! The C ABI: every exported `npuprof_*` function. Each one checks its pointers, runs the safe core inside
//! `catch_unwind` (a panic becomes `NPUPROF_ERR_INTERNAL` and one log line, never an unwind into C), and
//! turns errors into status codes with one clear log line. No logic lives here.
//!
//! The hot entry points test the recording state before entering the panic boundary: that test is one
//! relaxed atomic load, which cannot unwind, and keeping it outside lets an idle call skip the boundary's
//! frame setup entirely (the difference between ~1.3x and ~2.9x an empty call, see benches/).

use crate::error::{Error, Status};
use crate::record::{self, names};
use crate::session;
use std::ffi::{c_char, c_int, CStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};

mod options;

#[inline(always)]
fn guard<T>(what: &'static str, on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(|| {
        crate::fault::point(what);
        f()
    })) {
        Ok(v) => v,
        Err(p) => {
            report_panic(what, p);
            on_panic
        }
    }
}

/// Logs a caught panic. Itself guarded: a panicking logger or a payload whose drop panics must not unwind
/// out of an `extern "C"` function either. The payload is dropped by `error::panic_message` (before: always
/// leaked, one message per caught panic, found by LeakSanitizer once the library itself was instrumented);
/// only the payload of a drop that panicked is leaked, since dropping it could panic again.
#[cold]
#[inline(never)]
fn report_panic(what: &str, p: Box<dyn std::any::Any + Send>) {
    let msg = crate::error::panic_message(p);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        log::error!("internal error in {what} (caught, the host is unaffected): {msg}");
        set_last_error(what, &format!("internal error (caught): {msg}"));
    }));
}

thread_local! {
    /// The message of this thread's last failed call (`npuprof_last_error`). Set on error paths only.
    static LAST_ERROR: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn status(what: &str, r: Result<(), Error>) -> c_int {
    match r {
        Ok(()) => Status::Ok as c_int,
        Err(e) => {
            match e.status {
                Status::Io | Status::Backend | Status::Internal => log::error!("{what}: {}", e.msg),
                _ => log::warn!("{what}: {}", e.msg),
            }
            set_last_error(what, &e.msg);
            e.status as c_int
        }
    }
}

fn set_last_error(what: &str, msg: &str) {
    let _ = LAST_ERROR.try_with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            l.clear();
            l.push_str(what);
            l.push_str(": ");
            l.push_str(msg);
        }
    });
}

/// Copies `bytes` into `buf` (NUL-terminated, truncated to `len`); returns `bytes.len()`.
///
/// # Safety
/// `buf` must be NULL or valid for `len` bytes of writes.
unsafe fn copy_out(bytes: &[u8], buf: *mut c_char, len: usize) -> usize {
    if !buf.is_null() && len > 0 {
        let n = bytes.len().min(len - 1);
        // SAFETY: buf is valid for `len` bytes and n + 1 <= len (caller contract); the source is a live
        // slice that cannot overlap caller memory.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    bytes.len()
}

/// The calling thread's last error message (see the header).
///
/// # Safety
/// `buf` must be NULL or valid for `len` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn npuprof_last_error(buf: *mut c_char, len: usize) -> usize {
    guard("npuprof_last_error", 0, || {
        let msg = LAST_ERROR
            .try_with(|l| l.try_borrow().map(|s| s.clone()).unwrap_or_default())
            .unwrap_or_default();
        // SAFETY: forwarded caller contract.
        unsafe { copy_out(msg.as_bytes(), buf, len) }
    })
}

/// Begins a profile now (the runtime's `POST /start_profile`).
#[no_mangle]
pub extern "C" fn npuprof_start() -> c_int {
    guard("npuprof_start", Status::Internal as c_int, || {
        status("npuprof_start", session::start())
    })
}

/// Begins a profile with options (see the header); NULL is `npuprof_start`.
///
/// # Safety
/// `options` is NULL or valid for reads of the size its first field states; its strings are NULL or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn npuprof_start_with(options: *const options::RawOptions) -> c_int {
    guard("npuprof_start_with", Status::Internal as c_int, || {
        if options.is_null() {
            return status("npuprof_start_with", session::start());
        }
        // SAFETY: forwarded caller contract.
        let r = unsafe { options::read(options) }.and_then(|o| session::start_with(&o).map(drop));
        status("npuprof_start_with", r)
    })
}

/// Ends the running profile; files are written in the background.
#[no_mangle]
pub extern "C" fn npuprof_stop() -> c_int {
    guard("npuprof_stop", Status::Internal as c_int, || {
        status("npuprof_stop", session::stop())
    })
}

/// A scheduler step begins with `num_scheduled_tokens` tokens.
#[no_mangle]
pub extern "C" fn npuprof_step(num_scheduled_tokens: u64) -> c_int {
    if session::step_is_noop() {
        return Status::Ok as c_int;
    }
    step_guarded(num_scheduled_tokens)
}

#[inline(never)]
extern "C" fn step_guarded(num_scheduled_tokens: u64) -> c_int {
    guard("npuprof_step", Status::Internal as c_int, || {
        status("npuprof_step", session::step(num_scheduled_tokens))
    })
}

/// 1 while a profile is being recorded, else 0.
#[no_mangle]
pub extern "C" fn npuprof_is_running() -> c_int {
    guard("npuprof_is_running", 0, || session::is_running() as c_int)
}

/// A static description of `status` (never NULL).
#[no_mangle]
pub extern "C" fn npuprof_strerror(status: c_int) -> *const c_char {
    guard("npuprof_strerror", c"NPUPROF_ERR_UNKNOWN".as_ptr(), || {
        Status::describe(status).as_ptr()
    })
}

/// Copies the current or most recent worker directory into `buf` (NUL-terminated, truncated to `len`);
/// returns the full length (without NUL), 0 if there is none.
///
/// # Safety
/// `buf` must be NULL or valid for `len` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn npuprof_output_dir(buf: *mut c_char, len: usize) -> usize {
    guard("npuprof_output_dir", 0, || {
        let dir = session::output_dir();
        let bytes = dir.as_ref().map_or(&[][..], |d| d.as_os_str().as_bytes());
        // SAFETY: forwarded caller contract.
        unsafe { copy_out(bytes, buf, len) }
    })
}

/// Interns `name` (any bytes, NUL-terminated); returns a non-zero id, or 0 for NULL or "".
///
/// # Safety
/// `name` must be NULL or point to a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn npuprof_intern(name: *const c_char) -> u32 {
    guard("npuprof_intern", 0, || {
        if name.is_null() {
            return 0;
        }
        // SAFETY: non-NULL and NUL-terminated (caller contract).
        let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
        names::intern(bytes)
    })
}

/// Tells npuprof of a communication group: `comm_name` (the HCCL communicator's name, as the device
/// records name it), `group_name` (the framework's: `dp`, `tp`, ...), this process's rank in it and its
/// `n_ranks` global ranks. Written as `parallel_group_info` in `profiler_metadata.json`, and used for the
/// local ranks of `communication_matrix.json`.
///
/// # Safety
/// The names must be NULL or NUL-terminated; `global_ranks` NULL or valid for `n_ranks` reads.
#[no_mangle]
pub unsafe extern "C" fn npuprof_set_group(
    comm_name: *const c_char,
    group_name: *const c_char,
    group_rank: u32,
    global_ranks: *const u32,
    n_ranks: usize,
) -> c_int {
    use crate::device::groups::{self, GroupError, GroupInfo, MAX_NAME, MAX_RANKS};
    guard("npuprof_set_group", Status::Internal as c_int, || {
        // SAFETY: NULL or NUL-terminated (caller contract).
        let text = |p: *const c_char| (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) });
        let invalid = |why: &str| {
            status(
                "npuprof_set_group",
                Err(Error::new(Status::InvalidArgument, why)),
            )
        };
        let Some(name) = text(comm_name) else {
            return invalid("comm_name is NULL");
        };
        // Checked before anything is copied: a name is copied only when it is within the limit.
        let pg = text(group_name);
        if name.to_bytes().len() > MAX_NAME || pg.is_some_and(|n| n.to_bytes().len() > MAX_NAME) {
            return invalid("a name longer than 1024 bytes");
        }
        if n_ranks > MAX_RANKS || (n_ranks > 0 && global_ranks.is_null()) {
            return invalid("global_ranks is NULL or longer than 65536");
        }
        let ranks = if n_ranks == 0 {
            Vec::new()
        } else {
            // SAFETY: non-NULL and valid for `n_ranks` reads (caller contract), bounded above.
            unsafe { std::slice::from_raw_parts(global_ranks, n_ranks) }.to_vec()
        };
        let g = GroupInfo {
            name: name.to_string_lossy().into_owned(),
            pg_name: pg.map_or(String::new(), |n| n.to_string_lossy().into_owned()),
            group_rank,
            global_ranks: ranks,
        };
        match groups::set(g) {
            Ok(()) => Status::Ok as c_int,
            Err(GroupError::Invalid) => invalid(
                "an empty or over-long name (1024 bytes), or group_rank not below the number of ranks",
            ),
            Err(GroupError::Full) => invalid("1024 groups are known already"),
        }
    })
}

/// Opens a range named by `name_id` on the calling thread (no-op unless recording).
#[no_mangle]
pub extern "C" fn npuprof_range_push(name_id: u32) {
    if record::is_recording() {
        range_push_guarded(name_id);
    }
}

#[inline(never)]
extern "C" fn range_push_guarded(name_id: u32) {
    guard("npuprof_range_push", (), || record::range_push(name_id))
}

/// Closes the innermost open range of the calling thread (no-op unless recording).
#[no_mangle]
pub extern "C" fn npuprof_range_pop() {
    if record::is_recording() {
        range_pop_guarded();
    }
}

#[inline(never)]
extern "C" fn range_pop_guarded() {
    guard("npuprof_range_pop", (), record::range_pop)
}

/// An instant event named by `name_id` on the calling thread (no-op unless recording).
#[no_mangle]
pub extern "C" fn npuprof_mark(name_id: u32) {
    if record::is_recording() {
        mark_guarded(name_id);
    }
}

#[inline(never)]
extern "C" fn mark_guarded(name_id: u32) {
    guard("npuprof_mark", (), || record::mark(name_id))
}

/// Blocks until every stopped profile's files are completely written.
#[no_mangle]
pub extern "C" fn npuprof_flush() -> c_int {
    guard("npuprof_flush", Status::Internal as c_int, || {
        if session::config().profiler_dir.is_none() {
            return Status::Ok as c_int;
        }
        status("npuprof_flush", session::flush())
    })
}

/// Stops if running, flushes and ends the background threads; later calls start them again.
#[no_mangle]
pub extern "C" fn npuprof_shutdown() -> c_int {
    guard("npuprof_shutdown", Status::Internal as c_int, || {
        status("npuprof_shutdown", session::shutdown())
    })
}

/// The library version ("MAJOR.MINOR.PATCH").
#[no_mangle]
pub extern "C" fn npuprof_version() -> *const c_char {
    const V: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    guard("npuprof_version", c"unknown".as_ptr(), || V.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::report_panic;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static DROPS: AtomicUsize = AtomicUsize::new(0);

    /// A panic payload that counts its drops, and panics in its drop when asked.
    struct Payload(bool);
    impl Drop for Payload {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
            if self.0 {
                panic!("a payload whose drop panics");
            }
        }
    }

    /// A caught panic's payload is freed (it was leaked, once per caught panic), and one whose drop panics
    /// still never unwinds out of the boundary.
    #[test]
    fn a_caught_panic_payload_is_dropped_and_a_panicking_drop_stays_inside() {
        let before = DROPS.load(Ordering::SeqCst);
        report_panic("test", Box::new(Payload(false)));
        assert_eq!(DROPS.load(Ordering::SeqCst), before + 1);
        report_panic("test", Box::new(Payload(true)));
        assert_eq!(DROPS.load(Ordering::SeqCst), before + 2);
    }
}
