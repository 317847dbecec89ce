//! Finding CANN's `PROF_*` directories and msprof's output files of one kind.

use crate::dir::Dir;
use std::fs::File;
use std::io::Read;
use std::time::{Duration, Instant};

pub(super) fn is_prof_dir(name: &str) -> bool {
    // ^PROF_\d+_\d+_[0-9a-zA-Z]+ (torch_npu's ProfilerPathManager.get_cann_path)
    let mut it = name.strip_prefix("PROF_").map(|r| r.splitn(3, '_'));
    let Some(parts) = it.as_mut() else {
        return false;
    };
    let (Some(a), Some(b), Some(c)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|x| x.is_ascii_digit());
    digits(a) && digits(b) && !c.is_empty() && c.bytes().all(|x| x.is_ascii_alphanumeric())
}

/// CANN's `PROF_*` directories in the worker directory (names, sorted). A `PROF_*` symlink (or anything
/// but a directory) is never taken for one: entries are checked with `fstatat(AT_SYMLINK_NOFOLLOW)`.
pub(super) fn prof_dirs(dir: &Dir) -> Vec<String> {
    let mut v: Vec<String> = dir
        .names(MAX_NAMES)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| {
            is_prof_dir(n)
                && matches!(dir.stat_at(n), Ok(Some(st)) if st.kind == crate::dir::Kind::Dir)
        })
        .collect();
    v.sort();
    v
}

/// At most this many names are listed in msprof's output directory (a hostile tree may hold millions).
const MAX_NAMES: usize = 100_000;

/// Output files of one kind (`op_summary`, `msprof`...) in export order (slices by index, then by name),
/// listed through the output directory's handle.
pub(super) fn outputs(dir: &Dir, kind: &str, ext: &str) -> Vec<String> {
    let mut v: Vec<(u64, String)> = dir
        .names(MAX_NAMES)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|name| {
            let rest = name.strip_prefix(kind)?.strip_prefix('_')?;
            if !name.ends_with(ext) {
                return None;
            }
            // `{kind}_{digits}...` or `{kind}_slice_{i}_{digits}...`; not `msprof_tx_...` & co.
            let (slice, rest) = match rest.strip_prefix("slice_") {
                Some(r) => {
                    let (i, r) = r.split_once('_')?;
                    (i.parse().ok()?, r)
                }
                None => (0, rest),
            };
            rest.starts_with(|c: char| c.is_ascii_digit())
                .then(|| (slice, name.clone()))
        })
        .collect();
    v.sort();
    v.into_iter().map(|x| x.1).collect()
}

/// An msprof output opened for reading through its directory's handle: never through a symlink, never
/// blocking on a FIFO or device (only regular files are opened), and read no further than its size when
/// opened (a process still appending to it is not followed).
pub(super) fn open_output(dir: &Dir, name: &str) -> Result<std::io::Take<File>, String> {
    let (f, st) = dir.open_file(name).map_err(|e| format!("{name}: {e}"))?;
    Ok(f.take(st.size))
}

/// A whole small output (`start_info`, the statistics CSVs), refused beyond `cap` bytes.
pub(super) fn read_small(dir: &Dir, name: &str, cap: u64) -> Result<Vec<u8>, String> {
    let (f, st) = dir.open_file(name).map_err(|e| format!("{name}: {e}"))?;
    if st.size > cap {
        return Err(format!(
            "{name}: {} bytes, more than the {cap} read into memory",
            st.size
        ));
    }
    // Reserved fallibly: a failed allocation is an error, never an abort.
    let mut v = Vec::new();
    v.try_reserve_exact(st.size as usize)
        .map_err(|_| format!("{name}: no memory for its {} bytes", st.size))?;
    f.take(st.size)
        .read_to_end(&mut v)
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(v)
}

/// When reading msprof's output must stop (the parse is bounded in time as msprof itself is).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(pub Instant);

impl Deadline {
    pub(crate) fn after(d: Duration) -> Deadline {
        Deadline(Instant::now() + d)
    }
    pub(crate) fn passed(self) -> bool {
        Instant::now() >= self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "directory system calls")]
    fn a_symlink_named_like_cann_output_is_not_taken_for_it() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("PROF_000001_20261206_abc")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), t.path().join("PROF_000002_20261206_abc"))
            .unwrap();
        assert_eq!(
            prof_dirs(&Dir::open(t.path()).unwrap()),
            ["PROF_000001_20261206_abc"]
        );
    }

    #[test]
    fn prof_dir_names() {
        assert!(is_prof_dir(
            "PROF_000001_20220729204439087_FMDBBBNDOAKFEOIA"
        ));
        assert!(!is_prof_dir("PROF_x_1_A"));
        assert!(!is_prof_dir("PROF_1_2_"));
        assert!(!is_prof_dir("PROF_1_2_a-b"));
        assert!(!is_prof_dir("xPROF_1_2_A"));
    }

    #[test]
    fn output_files_in_slice_order() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "op_summary_slice_1_20240101000000.csv",
            "op_summary_slice_0_20240101000000.csv",
            "op_statistic_20240101000000.csv",
            "msprof_20240101000000.json",
            "msprof_tx_20240101000000.json",
        ] {
            std::fs::write(d.path().join(n), "").unwrap();
        }
        let dir = Dir::open(d.path()).unwrap();
        let names = |k, e| outputs(&dir, k, e);
        assert_eq!(
            names("op_summary", ".csv"),
            [
                "op_summary_slice_0_20240101000000.csv",
                "op_summary_slice_1_20240101000000.csv"
            ]
        );
        assert_eq!(names("msprof", ".json"), ["msprof_20240101000000.json"]);
    }
}
