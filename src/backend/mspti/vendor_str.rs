//! Reading the strings MSPTI's records point at (kernel, API, marker and communication names) without
//! trusting the pointer: a dangling pointer, or a name with no NUL before inaccessible memory, must not
//! crash the host.
//!
//! Each string is copied fault-safely (`crate::backend::safe_copy`: `process_vm_readv` on our own pid, else
//! through a pipe), in chunks that never cross a 256-byte boundary (so never a page boundary): a chunk in
//! memory that is not mapped or not readable fails with `EFAULT` instead of a segfault. The copy stops at the NUL, at an unreadable chunk (the name is then
//! unreadable and counted), or at [`NAME_CAP`] bytes (the name is cut there and counted). This runs in the
//! completion callback (an MSPTI thread), never on the record path; pointers already read once in the same
//! buffer are not read again.
//!
//! Where no checked copy is possible at all (no pipe can be made), nothing can check a pointer: the bytes
//! are then read directly, still capped at [`NAME_CAP`] (one warning says so). Under Miri
//! (no system calls) the direct read is used too.
//!
//! Interning never waits for the name table while a fork is in progress (npuprof's prepare handler holds its
//! lock, and a vendor fork handler may complete a buffer): a name that cannot be interned then is recorded
//! as [`SKIPPED`] and counted (`names_skipped_during_fork`).

use super::counts::{Count, Counts};
use crate::record::names;
use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Longest name kept, in bytes.
pub(super) const NAME_CAP: usize = 1024;
/// The name given to a record whose name could not be read.
pub(super) const UNREADABLE: &[u8] = b"[npuprof: unreadable name]";
/// The name given to a record whose name could not be interned during a fork.
pub(super) const SKIPPED: &[u8] = b"[npuprof: name not read during a fork]";
/// The id of [`SKIPPED`] (interned by [`init`], outside any fork); 0 before.
static SKIPPED_ID: AtomicU32 = AtomicU32::new(0);

/// Interns the placeholder names (at MSPTI's setup, before any callback).
pub(super) fn init() {
    SKIPPED_ID.store(names::intern(SKIPPED), Ordering::Release);
}

/// `names::intern`, giving up while a fork is in progress.
fn intern(counts: &Counts, b: &[u8]) -> u32 {
    names::try_intern(b, crate::process::forking).unwrap_or_else(|| {
        counts.add(Count::NamesSkippedInFork, 1);
        SKIPPED_ID.load(Ordering::Acquire)
    })
}
const CHUNK: usize = 256;
const CACHE: usize = 64;

/// `process_vm_readv` is unavailable here: read directly (see the module comment).
static UNCHECKED: AtomicBool = AtomicBool::new(cfg!(miri));

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Name<'a> {
    Whole(&'a [u8]),
    /// The first [`NAME_CAP`] bytes of a longer name.
    Cut(&'a [u8]),
    Unreadable,
}

/// Copies bytes at `src` into `dst`: `Some(true)` copied, `Some(false)` not readable, `None` no checked copy
/// here (`crate::backend::safe_copy`).
fn checked_copy(_pid: libc::pid_t, src: usize, dst: &mut [u8]) -> Option<bool> {
    use crate::backend::safe_copy::{self, Copy};
    if UNCHECKED.load(Ordering::Relaxed) {
        return None;
    }
    match safe_copy::copy_own(src, dst) {
        Copy::Done => Some(true),
        Copy::Unreadable => Some(false),
        Copy::Unchecked => {
            if !UNCHECKED.swap(true, Ordering::Relaxed) && !cfg!(miri) {
                log::warn!(
                    "no checked copy is possible here (neither process_vm_readv nor a pipe): MSPTI's name \
                     pointers are read unchecked (capped at {NAME_CAP} bytes)"
                );
            }
            None
        }
    }
}

/// The NUL-terminated string at `p`, read into `out`.
pub(super) fn read(pid: libc::pid_t, p: *const c_char, out: &mut [u8; NAME_CAP]) -> Name<'_> {
    let start = p as usize;
    let mut len = 0;
    while len < NAME_CAP {
        let at = start.wrapping_add(len);
        let n = (CHUNK - at % CHUNK).min(NAME_CAP - len);
        let chunk = &mut out[len..len + n];
        match checked_copy(pid, at, chunk) {
            Some(true) => {}
            Some(false) => return Name::Unreadable,
            None => {
                let src = (p as *const u8).wrapping_add(len);
                for (i, b) in chunk.iter_mut().enumerate() {
                    // SAFETY: unchecked (see the module comment): MSPTI vouches that the string is
                    // NUL-terminated; the read stops at the NUL or at the cap.
                    *b = unsafe { *src.add(i) };
                    if *b == 0 {
                        break;
                    }
                }
            }
        }
        if let Some(z) = chunk.iter().position(|&b| b == 0) {
            return Name::Whole(&out[..len + z]);
        }
        len += n;
    }
    Name::Cut(&out[..NAME_CAP])
}

/// Interns the names of one buffer's records: each pointer is read once per buffer.
pub struct Names<'a> {
    pid: libc::pid_t,
    counts: &'a Counts,
    cache: [(usize, u32); CACHE],
    scratch: [u8; NAME_CAP],
}

impl<'a> Names<'a> {
    pub fn new(counts: &'a Counts) -> Names<'a> {
        Names {
            // Taken per buffer, so a forked child reads its own memory.
            pid: if cfg!(miri) {
                0
            } else {
                // SAFETY: getpid has no preconditions.
                unsafe { libc::getpid() }
            },
            counts,
            cache: [(0, 0); CACHE],
            scratch: [0; NAME_CAP],
        }
    }

    /// The name id for `p` (0 for NULL or an empty name).
    pub fn id(&mut self, p: *const c_char) -> u32 {
        let key = p as usize;
        if key == 0 {
            return 0;
        }
        let slot = (key >> 3) % CACHE;
        if self.cache[slot].0 == key {
            return self.cache[slot].1;
        }
        let id = match read(self.pid, p, &mut self.scratch) {
            Name::Whole(b) => intern(self.counts, b),
            Name::Cut(b) => {
                self.counts.add(Count::NamesTruncated, 1);
                intern(self.counts, b)
            }
            Name::Unreadable => {
                self.counts.add(Count::NamesUnreadable, 1);
                return intern(self.counts, UNREADABLE);
            }
        };
        if id != SKIPPED_ID.load(Ordering::Relaxed) {
            self.cache[slot] = (key, id);
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_up_to_the_nul_or_the_cap() {
        let mut out = [0u8; NAME_CAP];
        let pid = if cfg!(miri) {
            0
        } else {
            // SAFETY: getpid has no preconditions.
            unsafe { libc::getpid() }
        };
        assert_eq!(
            read(pid, c"MatMul".as_ptr(), &mut out),
            Name::Whole(b"MatMul")
        );
        assert_eq!(read(pid, c"".as_ptr(), &mut out), Name::Whole(b""));
        let mut long = vec![b'x'; 3000];
        long.push(0);
        let Name::Cut(b) = read(pid, long.as_ptr().cast(), &mut out) else {
            panic!("not cut")
        };
        assert_eq!(b.len(), NAME_CAP);
        // Crossing 256-byte chunks with the NUL in a later one.
        let mut mid = vec![b'y'; 700];
        mid.push(0);
        assert_eq!(
            read(pid, mid[3..].as_ptr().cast(), &mut out),
            Name::Whole(&mid[3..700])
        );
    }

    #[cfg(not(miri))]
    #[test]
    fn dangling_and_unterminated_names_are_unreadable_not_fatal() {
        // SAFETY: sysconf, mmap and mprotect with valid arguments; the mapping is only read through `read`.
        unsafe {
            let pg = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let p = libc::mmap(
                std::ptr::null_mut(),
                2 * pg,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            ) as *mut u8;
            assert_ne!(p as *mut libc::c_void, libc::MAP_FAILED);
            std::ptr::write_bytes(p, b'A', pg);
            assert_eq!(libc::mprotect(p.add(pg).cast(), pg, libc::PROT_NONE), 0);
            let pid = libc::getpid();
            let mut out = [0u8; NAME_CAP];
            assert_eq!(read(pid, p.add(pg).cast(), &mut out), Name::Unreadable);
            assert_eq!(
                read(pid, p.add(pg - 100).cast(), &mut out),
                Name::Unreadable
            );
            assert_eq!(read(pid, 16 as *const c_char, &mut out), Name::Unreadable);
            let counts = Counts::default();
            let mut n = Names::new(&counts);
            let bad = n.id(p.add(pg).cast());
            assert_eq!(
                n.id(p.add(pg).cast()),
                bad,
                "unreadable names are not cached"
            );
            assert_eq!(counts.get(Count::NamesUnreadable), 2);
            assert_eq!(names::get(bad), Some(UNREADABLE));
            libc::munmap(p.cast(), 2 * pg);
        }
    }
}
