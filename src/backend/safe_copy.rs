//! Copying bytes a vendor library points at, without trusting the pointer: memory that is not mapped (a
//! dangling name, an array shorter than its count) must give an error, never a crash of the host.
//!
//! Two ways, both leaving the access to the kernel, which fails with `EFAULT` instead of faulting:
//! * `process_vm_readv` on our own pid: one system call per copy.
//! * Where that is refused (`ENOSYS`: some kernels and qemu-user; `EPERM`: seccomp filters), `write` from the
//!   source into a pipe of the calling thread, then `read` back: the kernel validates the source as it copies.
//!
//! Only if neither is possible (no pipe can be made) is the answer [`Copy::Unchecked`], and the caller decides
//! (read directly, capped, with one warning; or give up). Under Miri (no system calls) it is always
//! `Unchecked`. Never on the record path: vendor callbacks and backend starts only.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

/// The outcome of [`copy_own`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Copy {
    /// Every byte was copied.
    Done,
    /// Some byte is not readable memory.
    Unreadable,
    /// No checked copy is possible here.
    Unchecked,
}

/// `process_vm_readv` was refused once: use the pipe from then on.
static NO_VM_READV: AtomicBool = AtomicBool::new(false);

/// Bytes moved through the pipe at a time (at most PIPE_BUF, so a write is never split).
const PIPE_CHUNK: usize = 4096;

/// A pipe of this thread (close-on-exec, non-blocking), made on first use and closed at thread exit.
struct Pipe {
    r: libc::c_int,
    w: libc::c_int,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: both descriptors were opened by `pipe2` for this value and are closed once.
        unsafe {
            libc::close(self.r);
            libc::close(self.w);
        }
    }
}

thread_local! {
    static PIPE: RefCell<Option<Pipe>> = const { RefCell::new(None) };
}

/// Copies `dst.len()` bytes at address `src` of this process into `dst`.
pub(crate) fn copy_own(src: usize, dst: &mut [u8]) -> Copy {
    if cfg!(miri) {
        return Copy::Unchecked;
    }
    if dst.is_empty() {
        return Copy::Done;
    }
    if !NO_VM_READV.load(Ordering::Relaxed) {
        match vm_readv(src, dst) {
            Some(c) => return c,
            None => NO_VM_READV.store(true, Ordering::Relaxed),
        }
    }
    PIPE.try_with(|p| through_pipe(&mut p.borrow_mut(), src, dst))
        .unwrap_or(Copy::Unchecked)
}

/// `None`: the call is refused here.
fn vm_readv(src: usize, dst: &mut [u8]) -> Option<Copy> {
    let local = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    let remote = libc::iovec {
        iov_base: src as *mut libc::c_void,
        iov_len: dst.len(),
    };
    // SAFETY: the kernel writes at most `dst.len()` bytes into `dst` (ours) and reads the remote range with its
    // own fault handling: an unmapped address is an error return, never a fault in this process.
    let got = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if got == dst.len() as isize {
        return Some(Copy::Done);
    }
    if got >= 0 {
        return Some(Copy::Unreadable);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EPERM) => None,
        _ => Some(Copy::Unreadable),
    }
}

fn through_pipe(slot: &mut Option<Pipe>, src: usize, dst: &mut [u8]) -> Copy {
    if slot.is_none() {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid out-array of two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Copy::Unchecked;
        }
        *slot = Some(Pipe {
            r: fds[0],
            w: fds[1],
        });
    }
    let Some(p) = slot.as_ref() else {
        return Copy::Unchecked;
    };
    let mut done = 0;
    while done < dst.len() {
        let n = PIPE_CHUNK.min(dst.len() - done);
        // SAFETY: `write` only reads from the source range, and the kernel validates it (EFAULT, or a short
        // count, where it is not mapped); the pipe is ours and empty before each write.
        let wrote = unsafe { libc::write(p.w, (src.wrapping_add(done)) as *const libc::c_void, n) };
        if wrote <= 0 {
            return Copy::Unreadable;
        }
        let wrote = wrote as usize;
        // Always take back what went in, so the pipe is empty for the next copy.
        let mut got = 0;
        while got < wrote {
            // SAFETY: reads into `dst`, ours, within its length (`done + wrote <= dst.len()`).
            let r = unsafe { libc::read(p.r, dst[done + got..].as_mut_ptr().cast(), wrote - got) };
            if r <= 0 {
                // Cannot happen for bytes just written to our own pipe; never reuse a pipe in doubt.
                *slot = None;
                return Copy::Unreadable;
            }
            got += r as usize;
        }
        if wrote < n {
            return Copy::Unreadable;
        }
        done += n;
    }
    Copy::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A readable page followed by an inaccessible one.
    fn guarded() -> (usize, usize) {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: an anonymous private mapping of two pages, never unmapped by this test.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        assert_eq!(
            // SAFETY: the second page of the mapping above.
            unsafe { libc::mprotect(p.cast::<u8>().add(page).cast(), page, libc::PROT_NONE) },
            0
        );
        (p as usize, page)
    }

    #[test]
    #[cfg_attr(miri, ignore = "system calls")]
    fn both_ways_copy_readable_bytes_and_refuse_unmapped_ones() {
        let (base, page) = guarded();
        // SAFETY: the first page is readable and writable.
        unsafe { std::ptr::write_bytes(base as *mut u8, b'x', page) };
        let mut pipe = None;
        for use_pipe in [false, true] {
            let mut copy = |src: usize, dst: &mut [u8]| {
                if use_pipe {
                    through_pipe(&mut pipe, src, dst)
                } else {
                    vm_readv(src, dst).unwrap_or(Copy::Unchecked)
                }
            };
            let mut buf = vec![0u8; 64];
            let c = copy(base + page - 64, &mut buf);
            if c == Copy::Unchecked {
                continue; // process_vm_readv refused here (qemu-user): the pipe is tried next
            }
            assert_eq!(c, Copy::Done);
            assert!(buf.iter().all(|&b| b == b'x'));
            // Crossing into the inaccessible page, and wholly inside it.
            assert_eq!(copy(base + page - 8, &mut buf), Copy::Unreadable);
            assert_eq!(copy(base + page, &mut buf), Copy::Unreadable);
            assert_eq!(copy(16, &mut buf), Copy::Unreadable);
            // And the next copy is still right (the pipe holds nothing stale).
            let mut big = vec![0u8; 3 * PIPE_CHUNK / 2];
            assert_eq!(
                copy(base, &mut big[..page.min(3 * PIPE_CHUNK / 2)]),
                Copy::Done
            );
            assert!(big[..page.min(3 * PIPE_CHUNK / 2)]
                .iter()
                .all(|&b| b == b'x'));
        }
        let mut buf = [0u8; 8];
        assert_eq!(copy_own(base, &mut buf), Copy::Done);
        assert_eq!(copy_own(base + page, &mut buf), Copy::Unreadable);
    }
}
