//! Reading the feature list of `aclprofGetSupportedFeatures[V2]` without trusting it.
//!
//! The call hands back a count and a pointer to a library-owned array. No header npuprof can see declares the
//! record (the `acl_prof.h` shipped in the torch-npu wheel declares neither the function nor the struct);
//! torch_npu (Ascend/pytorch `torch_npu/csrc/profiler/feature_mgr.h`; `FeatureMgr::FormatFeatureList` in
//! `feature_mgr.cpp` casts the pointer to `FeatureRecord*` and walks `size` records) declares its own copy:
//! `struct FeatureRecord { char featureName[64]; FeatureInfo info; virtual ~FeatureRecord(); }` with
//! `struct FeatureInfo { char compatibility[16], featureVersion[16], affectedComponent[16],
//! affectedComponentVersion[16], infoLog[128]; virtual ~FeatureInfo(); }`. MindSpore has a `FeatureMgr` of
//! its own (`plugin/device/ascend/hal/profiler/feature_mgr`, 2025) over the same call; its struct text was not
//! available to check. Both are polymorphic, so under the Itanium C++ ABI each starts with a vtable pointer:
//! 272 bytes per record ([`Layout::Cpp`]). A reference that lists only the fields implies 256 bytes
//! ([`Layout::Plain`]); a CANN built that way is recognised too.
//!
//! Safety: the count is capped at [`MAX_RECORDS`]; every byte is copied fault-safely (`backend::safe_copy`: `process_vm_readv` on our own
//! pid, so a bad pointer or a count larger than the array ends in `EFAULT`, never a segfault; each record must
//! validate (non-zero vtable pointers where the layout has them, every string NUL-terminated within its field
//! and printable, a non-empty name) under one layout for the whole list. Otherwise the list is ignored: the
//! profile uses only the portable options (no optional feature), with one warning per process and a note in
//! the profile's metadata.

use super::plan::Features;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

/// More records than any CANN lists (4 known names as of CANN 8.x): a larger count is not a feature list.
pub const MAX_RECORDS: usize = 64;

/// A layout's vtable pointer offsets, name field and five info string fields (offset, length).
type Fields = (&'static [usize], (usize, usize), [(usize, usize); 5]);

/// How a record is laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The C++ structs as torch_npu and MindSpore declare them: vptr, name\[64\], vptr, 4×\[16\], \[128\].
    Cpp,
    /// The fields alone: name\[64\], 4×\[16\], \[128\].
    Plain,
}

impl Layout {
    pub const fn size(self) -> usize {
        match self {
            Layout::Cpp => 272,
            Layout::Plain => 256,
        }
    }

    /// Offsets of the vtable pointers, the name, and the five info strings (offset, length).
    fn fields(self) -> Fields {
        match self {
            Layout::Cpp => (
                &[0, 72],
                (8, 64),
                [(80, 16), (96, 16), (112, 16), (128, 16), (144, 128)],
            ),
            Layout::Plain => (
                &[],
                (0, 64),
                [(64, 16), (80, 16), (96, 16), (112, 16), (128, 128)],
            ),
        }
    }
}

/// The text of a fixed-size C string field: NUL within the field and printable ASCII before it.
fn c_field(b: &[u8]) -> Option<&str> {
    let end = b.iter().position(|&c| c == 0)?;
    let s = &b[..end];
    s.iter()
        .all(|c| (0x20..0x7f).contains(c))
        .then(|| std::str::from_utf8(s).ok())
        .flatten()
}

/// The name of one record under `layout`, if the whole record looks like one.
pub fn record_name(rec: &[u8], layout: Layout) -> Option<String> {
    if rec.len() < layout.size() {
        return None;
    }
    let (vptrs, (no, nl), info) = layout.fields();
    for &v in vptrs {
        if rec[v..v + 8].iter().all(|&b| b == 0) {
            return None;
        }
    }
    let name = c_field(&rec[no..no + nl]).filter(|n| !n.is_empty())?;
    for (o, l) in info {
        c_field(&rec[o..o + l])?;
    }
    Some(name.to_string())
}

/// The names of `bytes` (`n` records as copied) under `l`, if every record validates.
pub fn decode(bytes: &[u8], n: usize, l: Layout) -> Option<Vec<String>> {
    if bytes.len() < n * l.size() {
        return None;
    }
    (0..n)
        .map(|i| record_name(&bytes[i * l.size()..(i + 1) * l.size()], l))
        .collect()
}

/// Copies `len` bytes at `addr` of our own address space (`crate::backend::safe_copy`): `Err(EFAULT)` where
/// any of them is unmapped, `Err(ENOSYS)` where no checked copy is possible (the list is then not read).
pub fn copy_own(addr: usize, len: usize) -> std::io::Result<Vec<u8>> {
    use crate::backend::safe_copy::{self, Copy};
    let mut buf = vec![0u8; len];
    match safe_copy::copy_own(addr, &mut buf) {
        Copy::Done => Ok(buf),
        Copy::Unreadable => Err(std::io::Error::from_raw_os_error(libc::EFAULT)),
        Copy::Unchecked => Err(std::io::Error::from_raw_os_error(libc::ENOSYS)),
    }
}

/// Why a list was ignored.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    TooMany(usize),
    /// The count and the OS error (`EFAULT`: the array is shorter than the count, or not mapped).
    Unreadable(usize, i32),
    Malformed(usize),
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::TooMany(n) => write!(f, "it claims {n} records (more than {MAX_RECORDS})"),
            Rejected::Unreadable(n, e) => {
                write!(
                    f,
                    "its {n} records cannot all be read ({})",
                    std::io::Error::from_raw_os_error(*e)
                )
            }
            Rejected::Malformed(n) => write!(
                f,
                "its {n} records are neither 272-byte C++ FeatureRecords nor 256-byte plain records \
                 (a name or field without its NUL, or unprintable)"
            ),
        }
    }
}

/// Reads the list CANN handed back (`size` records at `data`).
pub fn read(size: usize, data: *const c_void) -> Result<(Layout, Vec<String>), Rejected> {
    if size > MAX_RECORDS {
        return Err(Rejected::TooMany(size));
    }
    if size == 0 {
        return Ok((Layout::Cpp, Vec::new()));
    }
    // Each layout copies what it needs, record by record (a Plain list is shorter than a Cpp one).
    let mut bytes = Vec::with_capacity(size * Layout::Cpp.size());
    let mut last_err = None;
    for l in [Layout::Cpp, Layout::Plain] {
        bytes.clear();
        let mut ok = true;
        for i in 0..size {
            match copy_own(data as usize + i * l.size(), l.size()) {
                Ok(b) => bytes.extend_from_slice(&b),
                Err(e) => {
                    last_err = Some(e.raw_os_error().unwrap_or(libc::EFAULT));
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            if let Some(names) = decode(&bytes, size, l) {
                return Ok((l, names));
            }
        }
    }
    Err(match last_err {
        Some(e) => Rejected::Unreadable(size, e),
        None => Rejected::Malformed(size),
    })
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// The feature list, or no feature with a note (logged as a warning once per process) when it looks wrong.
pub fn features(size: usize, data: *const c_void) -> (Features, Option<String>) {
    match read(size, data) {
        Ok((layout, names)) => {
            if layout == Layout::Plain {
                log::debug!("aclprofGetSupportedFeatures: 256-byte records (no vtable pointers)");
            }
            (
                Features {
                    names,
                    queried: true,
                },
                None,
            )
        }
        Err(why) => {
            let note = format!(
                "the feature list of aclprofGetSupportedFeatures was ignored: {why}; only the portable \
                 options are used (no AICORE_SHAPE, MemoryAccess or ATTR)"
            );
            if !WARNED.swap(true, Ordering::Relaxed) {
                log::warn!("{note}");
            }
            (Features::default(), Some(note))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(layout: Layout, name: &str) -> Vec<u8> {
        let mut r = vec![0u8; layout.size()];
        let (vptrs, (no, _), info) = layout.fields();
        for &v in vptrs {
            r[v..v + 8].copy_from_slice(&0x7f00_1234_5678u64.to_le_bytes());
        }
        r[no..no + name.len()].copy_from_slice(name.as_bytes());
        for ((o, _), s) in info.iter().zip(["1", "1", "all", "all", "fake feature"]) {
            r[*o..*o + s.len()].copy_from_slice(s.as_bytes());
        }
        r
    }

    fn list(layout: Layout, names: &[&str]) -> Vec<u8> {
        names.iter().flat_map(|n| record(layout, n)).collect()
    }

    #[test]
    fn both_layouts_decode_and_are_told_apart() {
        let names = ["ATTR", "MemoryAccess", "AICORE_SHAPE", "X"];
        for l in [Layout::Cpp, Layout::Plain] {
            for n in 1..=names.len() {
                let b = list(l, &names[..n]);
                let got = read(n, b.as_ptr().cast()).unwrap();
                assert_eq!(got.0, l, "{l:?} {n}");
                assert_eq!(got.1, names[..n], "{l:?} {n}");
            }
        }
    }

    #[test]
    fn bad_lists_are_rejected_not_read_past() {
        let b = list(Layout::Cpp, &["ATTR"]);
        assert_eq!(read(65, b.as_ptr().cast()), Err(Rejected::TooMany(65)));
        // A null or unmapped pointer: EFAULT, not a segfault.
        assert!(matches!(
            read(2, std::ptr::null()),
            Err(Rejected::Unreadable(2, _))
        ));
        let mut bad = b.clone();
        bad[8..72].fill(b'A'); // no NUL in the name field
        assert_eq!(read(1, bad.as_ptr().cast()), Err(Rejected::Malformed(1)));
        let mut bad = b;
        bad[9] = 0x01; // unprintable
        assert_eq!(read(1, bad.as_ptr().cast()), Err(Rejected::Malformed(1)));
    }
}
