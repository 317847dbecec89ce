//! Finding and opening a CANN library, shared by the CANN backends (aclprof's `acl::load`, MSPTI), at the
//! first `npuprof_start` (never at load time).
//!
//! Order: the copy the runtime already loaded (`RTLD_NOLOAD`), then `$ASCEND_HOME_PATH/lib64`,
//! `$ASCEND_TOOLKIT_HOME/lib64`, then the loader's search path. Always `RTLD_LAZY | RTLD_LOCAL` (our lookups
//! never leak symbols into the process namespace); the callers never close what they open.

use std::path::Path;

fn open_flags(extra: i32) -> i32 {
    libc::RTLD_LAZY | libc::RTLD_LOCAL | extra
}

/// Opens `name` by the documented search order (the process's copy, `$ASCEND_HOME_PATH/lib64`,
/// `$ASCEND_TOOLKIT_HOME/lib64`, the loader path), `RTLD_LAZY | RTLD_LOCAL`; returns how it was found, or
/// every place tried. Shared by the CANN backends.
pub(crate) fn open_library(name: &str) -> Result<(libloading::os::unix::Library, String), String> {
    use libloading::os::unix::Library;
    // SAFETY: (this and the `Library::open` calls below) opening a CANN library runs its constructors, which is
    // what every CANN user does; RTLD_NOLOAD never loads anything new.
    if let Ok(l) = unsafe { Library::open(Some(name), open_flags(libc::RTLD_NOLOAD)) } {
        return Ok((l, format!("{name} (already loaded by the process)")));
    }
    let mut tried = vec![format!("{name} not already loaded")];
    for var in ["ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"] {
        let Some(home) = std::env::var_os(var) else {
            tried.push(format!("${var} unset"));
            continue;
        };
        let p = Path::new(&home).join("lib64").join(name);
        if !p.exists() {
            tried.push(format!("{} (${var}): no such file", p.display()));
            continue;
        }
        // SAFETY: as above: a CANN library's constructors run, as for every CANN user.
        match unsafe { Library::open(Some(&p), open_flags(0)) } {
            Ok(l) => return Ok((l, p.display().to_string())),
            Err(e) => tried.push(format!("{}: {e}", p.display())),
        }
    }
    // SAFETY: as above: a CANN library's constructors run, as for every CANN user.
    match unsafe { Library::open(Some(name), open_flags(0)) } {
        Ok(l) => Ok((l, format!("{name} (loader search path)"))),
        Err(e) => {
            tried.push(format!("loader search path: {e}"));
            Err(format!("cannot open {name}: {}", tried.join("; ")))
        }
    }
}
