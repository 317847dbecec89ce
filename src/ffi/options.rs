//! `struct npuprof_start_options` as a caller hands it: read within the size it states, never past it, and
//! turned into the session's [`StartOptions`].

use crate::error::{Error, Status};
use crate::session::window::{StartOptions, MAX_TAG_BYTES};
use std::ffi::c_char;
use std::path::PathBuf;

/// The header's struct, this version.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawOptions {
    size: u32,
    reserved: u32,
    delay_steps: u64,
    num_steps: u64,
    max_seconds: u64,
    at_step: u64,
    output_dir: *const c_char,
    tag: *const c_char,
}

/// The header's "no delay / no limit", whatever the environment says.
const NONE: u64 = u64::MAX;
/// The largest `size` read: a caller's struct from a much newer header is still small.
const MAX_SIZE: usize = 4096;
/// The longest `output_dir` read (PATH_MAX).
const MAX_PATH: usize = 4096;

fn invalid(msg: String) -> Error {
    Error::new(Status::InvalidArgument, msg)
}

/// Reads the caller's struct: its `size` first, then that many bytes at most of what this version knows
/// (the rest keeps zero, "the environment's value"); bytes beyond this version's struct must be zero.
///
/// # Safety
/// `p` is valid for reads of the `size` bytes its first field states (the header's contract).
pub(super) unsafe fn read(p: *const RawOptions) -> Result<StartOptions, Error> {
    // SAFETY: every caller's struct begins with its u32 size (caller contract); read unaligned.
    let size = unsafe { std::ptr::read_unaligned(p.cast::<u32>()) } as usize;
    let ours = std::mem::size_of::<RawOptions>();
    // Every field after `size` and `reserved` is 8 bytes: a size that is not a multiple of 8 would cut one
    // (half a pointer read as a pointer).
    if !(8..=MAX_SIZE).contains(&size) || size % 8 != 0 {
        return Err(invalid(format!(
            "npuprof_start_options.size is {size}: set it to sizeof(struct npuprof_start_options) \
             (a multiple of 8 from 8 to {MAX_SIZE}; this library's is {ours})"
        )));
    }
    let mut bytes = [0u8; std::mem::size_of::<RawOptions>()];
    let n = size.min(ours);
    // SAFETY: the caller's struct is valid for `size` >= n bytes; `bytes` holds `ours` >= n.
    unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>(), bytes.as_mut_ptr(), n) };
    for i in ours..size {
        // SAFETY: i < size, within the caller's struct.
        if unsafe { *p.cast::<u8>().add(i) } != 0 {
            return Err(invalid(format!(
                "npuprof_start_options has fields this library ({}) does not know set (byte {i} of {size} \
                 is not zero): update libnpuprof.so or leave them zero",
                env!("CARGO_PKG_VERSION")
            )));
        }
    }
    // SAFETY: RawOptions is plain integers and pointers, valid for any bytes; read unaligned from the copy.
    let raw: RawOptions = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if raw.reserved != 0 {
        return Err(invalid("npuprof_start_options.reserved must be 0".into()));
    }
    let bound = |v: u64| match v {
        0 => None,
        NONE => Some(0),
        n => Some(n),
    };
    // SAFETY: NULL or a NUL-terminated string (caller contract); read at most the bound plus one byte.
    let output_dir = unsafe { c_string(raw.output_dir, MAX_PATH, "output_dir") }?;
    // SAFETY: as above.
    let tag = unsafe { c_string(raw.tag, MAX_TAG_BYTES, "tag") }?;
    let tag = match tag {
        None => None,
        Some(t) => Some(String::from_utf8(t).map_err(|_| {
            invalid(
                "npuprof_start_options.tag is not UTF-8 (letters, digits, '.', '_', '-')".into(),
            )
        })?),
    };
    Ok(StartOptions {
        delay_steps: bound(raw.delay_steps),
        max_steps: bound(raw.num_steps),
        max_seconds: bound(raw.max_seconds),
        at_step: (raw.at_step != 0 && raw.at_step != NONE).then_some(raw.at_step),
        output_dir: output_dir.map(|b| {
            use std::os::unix::ffi::OsStringExt;
            PathBuf::from(std::ffi::OsString::from_vec(b))
        }),
        tag,
    })
}

/// The bytes of a NUL-terminated string of at most `max` bytes; `None` for NULL.
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string.
unsafe fn c_string(s: *const c_char, max: usize, what: &str) -> Result<Option<Vec<u8>>, Error> {
    if s.is_null() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for i in 0..=max {
        // SAFETY: every byte before the terminating NUL is readable; we stop at the NUL.
        let b = unsafe { *s.add(i) } as u8;
        if b == 0 {
            return Ok(Some(out));
        }
        out.push(b);
    }
    Err(invalid(format!(
        "npuprof_start_options.{what} is longer than {max} bytes"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> RawOptions {
        RawOptions {
            size: std::mem::size_of::<RawOptions>() as u32,
            reserved: 0,
            delay_steps: 0,
            num_steps: 0,
            max_seconds: 0,
            at_step: 0,
            output_dir: std::ptr::null(),
            tag: std::ptr::null(),
        }
    }

    #[test]
    fn zero_is_the_environment_and_none_is_no_bound() {
        let mut o = opts();
        o.num_steps = 10;
        o.max_seconds = NONE;
        // SAFETY: a whole struct of this version.
        let s = unsafe { read(&o) }.unwrap();
        assert_eq!(s.delay_steps, None);
        assert_eq!(s.max_steps, Some(10));
        assert_eq!(s.max_seconds, Some(0));
        assert_eq!(s.at_step, None);
    }

    #[test]
    fn an_older_callers_struct_is_read_only_as_far_as_its_size() {
        let mut o = opts();
        o.num_steps = 7;
        o.max_seconds = 9;
        // The caller's header ended after num_steps: max_seconds is not its, and is not read.
        o.size = 24;
        // SAFETY: the struct is whole; only 24 bytes are read.
        let s = unsafe { read(&o) }.unwrap();
        assert_eq!((s.max_steps, s.max_seconds), (Some(7), None));
    }

    #[test]
    fn a_newer_callers_struct_needs_its_unknown_fields_zero() {
        #[repr(C)]
        struct Newer {
            o: RawOptions,
            extra: u64,
        }
        let mut n = Newer {
            o: opts(),
            extra: 0,
        };
        n.o.size = std::mem::size_of::<Newer>() as u32;
        // SAFETY: `n` is valid for its stated size.
        assert!(unsafe { read(&n.o) }.is_ok());
        n.extra = 1;
        // SAFETY: as above.
        let e = unsafe { read(&n.o) }.unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(e.msg.contains("does not know"), "{}", e.msg);
    }

    #[test]
    fn bad_sizes_and_long_strings_are_named_errors() {
        for size in [4, 44, 4104] {
            let mut o = opts();
            o.size = size;
            // SAFETY: a whole struct; sizes past it are refused before any byte beyond the first 4 is read.
            let e = unsafe { read(&o) }.unwrap_err();
            assert!(e.msg.contains(&format!("size is {size}")), "{}", e.msg);
        }
        let mut o = opts();
        let long = std::ffi::CString::new("t".repeat(MAX_TAG_BYTES + 1)).unwrap();
        o.tag = long.as_ptr();
        // SAFETY: a whole struct and a NUL-terminated string.
        assert!(unsafe { read(&o) }
            .unwrap_err()
            .msg
            .contains("tag is longer"));
    }
}
