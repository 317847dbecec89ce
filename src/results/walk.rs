//! Finding results (`*_ascend_ms` directories) under the directories named on the command line, through
//! directory handles: a symlink is never followed (two `-> .` links once made a walk of 2^40 paths), a
//! directory that cannot be opened or listed is a problem naming it (never silently skipped), and the depth
//! and the entries read per directory are bounded.

use crate::dir::{Dir, Kind};
use std::path::{Path, PathBuf};

/// Directories below a root searched for results (a results root holds them one or two levels down).
pub const MAX_DEPTH: usize = 32;
/// Entries read from one directory.
pub const MAX_ENTRIES: usize = 100_000;

use crate::layout::SUFFIX as RESULT_SUFFIX;

/// Opens a directory named on the command line. This one path is resolved as the user typed it (a root
/// reached through a symlink the user chose is fine); nothing below it is.
pub fn open_arg(arg: &Path) -> Result<Dir, String> {
    let real = std::fs::canonicalize(arg).map_err(|e| format!("{}: {e}", arg.display()))?;
    Dir::open(&real).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTDIR) => format!("{}: not a directory", arg.display()),
        _ => format!("{}: cannot open ({e})", arg.display()),
    })
}

/// What a walk met besides results.
#[derive(Default)]
pub struct Walk {
    pub results: usize,
    /// Directories that could not be searched (each names the directory and why).
    pub problems: Vec<String>,
}

/// The names in `d` (shown as `path`), sorted, at most [`MAX_ENTRIES`]; a problem when listing fails or
/// stops at the bound.
pub fn list(d: &Dir, path: &Path, problems: &mut Vec<String>) -> Vec<String> {
    match d.names(MAX_ENTRIES + 1) {
        Ok(mut v) => {
            if v.len() > MAX_ENTRIES {
                v.truncate(MAX_ENTRIES);
                problems.push(format!(
                    "{}: more than {MAX_ENTRIES} entries: only the first {MAX_ENTRIES} were read",
                    path.display()
                ));
            }
            v.sort();
            v
        }
        Err(e) => {
            problems.push(format!("{}: cannot list ({e})", path.display()));
            Vec::new()
        }
    }
}

/// What is at `name` in `d`, without following it. `None` (after a problem, for a name that is not UTF-8
/// and so cannot be opened again) when nothing can be said.
pub fn kind(d: &Dir, path: &Path, name: &str, problems: &mut Vec<String>) -> Option<Kind> {
    match d.stat_at(name) {
        Ok(Some(st)) => Some(st.kind),
        // Gone since it was listed, or a name that is not UTF-8 (listed lossily, so not found again).
        Ok(None) if name.contains('\u{fffd}') => {
            problems.push(format!(
                "{}: a name that is not UTF-8: not read",
                path.join(name).display()
            ));
            None
        }
        Ok(None) => None,
        Err(e) => {
            problems.push(format!("{}: {e}", path.join(name).display()));
            None
        }
    }
}

/// Calls `f` with each result under each directory in `args` (or the directory itself when it is one), in
/// order.
pub fn results(args: &[&str], mut f: impl FnMut(&Path, &Dir)) -> Walk {
    let mut w = Walk::default();
    for a in args {
        let path = Path::new(a);
        match open_arg(path) {
            Err(e) => w.problems.push(e),
            Ok(d) if is_result(a) => {
                w.results += 1;
                f(path, &d);
            }
            Ok(d) => visit(&d, path, 0, &mut w, &mut f),
        }
    }
    w
}

fn is_result(name: &str) -> bool {
    name.trim_end_matches('/').ends_with(RESULT_SUFFIX)
}

fn visit(d: &Dir, path: &Path, depth: usize, w: &mut Walk, f: &mut dyn FnMut(&Path, &Dir)) {
    for name in list(d, path, &mut w.problems) {
        if name == crate::control::DIR_NAME {
            continue;
        }
        // Symlinks, files, FIFOs: not searched.
        if kind(d, path, &name, &mut w.problems) != Some(Kind::Dir) {
            continue;
        }
        let p: PathBuf = path.join(&name);
        let sub = match d.open_dir(&name) {
            Ok(s) => s,
            Err(e) => {
                w.problems
                    .push(format!("{}: cannot open directory ({e})", p.display()));
                continue;
            }
        };
        if is_result(&name) {
            w.results += 1;
            f(&p, &sub);
        } else if depth < MAX_DEPTH {
            visit(&sub, &p, depth + 1, w, f);
        } else {
            w.problems.push(format!(
                "{}: more than {MAX_DEPTH} levels down: not searched",
                p.display()
            ));
        }
    }
}
