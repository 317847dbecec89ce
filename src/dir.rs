//! Directory handles: every file of a profile is created and read relative to a directory opened once,
//! never by re-resolving a path name. A results root shared with other users (`/tmp`, a team's NFS
//! directory) lets them rename entries between two of our calls; a handle keeps pointing at the directory we
//! opened, and every name passed here is one path component that is never followed if it is a symlink.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An open directory (`O_DIRECTORY`), the anchor of `*at` calls.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// What is at a name inside a directory (`fstatat(AT_SYMLINK_NOFOLLOW)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// FIFO, socket, device.
    Other,
}

/// One entry's facts, from `fstat`/`fstatat`.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub kind: Kind,
    pub uid: u32,
    pub mode: u32,
    pub size: u64,
    /// Device and inode: the identity of the entry (is a name still the directory we opened?).
    pub dev: u64,
    pub ino: u64,
}

impl Stat {
    fn from(st: &libc::stat) -> Stat {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        };
        Stat {
            kind,
            uid: st.st_uid,
            mode: st.st_mode & 0o7777,
            size: st.st_size.max(0) as u64,
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

fn cstr(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// One path component: not empty, no `/`, not `.` or `..`.
fn component(name: &str) -> io::Result<CString> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single file name"),
        ));
    }
    cstr(OsStr::new(name))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;

impl Dir {
    /// Opens a directory by path, never through a symlink at its last component.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = cstr(path.as_os_str())?;
        // SAFETY: `c` is a valid NUL-terminated string; the flags open no file for writing.
        let fd = check(unsafe { libc::open(c.as_ptr(), DIR_FLAGS) })?;
        Ok(Dir {
            // SAFETY: `fd` is a descriptor we just opened and own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Opens a directory by path, following a symlink at its last component too (for paths an administrator
    /// configured, e.g. the parents of the results root).
    pub fn open_follow(path: &Path) -> io::Result<Dir> {
        let c = cstr(path.as_os_str())?;
        // SAFETY: `c` is a valid NUL-terminated string; the flags open no file for writing.
        let fd = check(unsafe { libc::open(c.as_ptr(), DIR_FLAGS & !libc::O_NOFOLLOW) })?;
        Ok(Dir {
            // SAFETY: `fd` is a descriptor we just opened and own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Opens the subdirectory `name` (never through a symlink).
    pub fn open_dir(&self, name: &str) -> io::Result<Dir> {
        let c = component(name)?;
        // SAFETY: a valid directory descriptor and a NUL-terminated single component.
        let fd = check(unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), DIR_FLAGS) })?;
        Ok(Dir {
            // SAFETY: `fd` is a descriptor we just opened and own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Creates the subdirectory `name` with `mode` (EEXIST for anything already there, symlinks too), and
    /// sets the mode exactly (the umask would otherwise narrow it).
    pub fn mkdir(&self, name: &str, mode: u32) -> io::Result<Dir> {
        let c = component(name)?;
        // SAFETY: a valid directory descriptor and a NUL-terminated single component.
        check(unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })?;
        let d = self.open_dir(name)?;
        self.check_ours(name, &d)?;
        // SAFETY: a valid descriptor of the directory we just created.
        check(unsafe { libc::fchmod(d.fd.as_raw_fd(), mode as libc::mode_t) })?;
        Ok(d)
    }

    /// The directory just opened as `name` is the one we made, not one another user swapped in between
    /// `mkdirat` and `openat` (possible where others may rename entries here): it must belong to the uid our
    /// creations get. That is our euid, except where the filesystem maps it (root on a root-squashed NFS
    /// export): then a probe file, created here with `O_EXCL` and so certainly ours, tells which uid.
    fn check_ours(&self, name: &str, d: &Dir) -> io::Result<()> {
        let got = d.stat()?.uid;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if got == euid {
            return Ok(());
        }
        let probe = format!(".npuprof-owner-probe-{}", std::process::id());
        let want = self
            .create_new(&probe, 0o600)
            .and_then(|f| stat_file(&f).map(|st| st.uid));
        let _ = self.unlink(&probe);
        match want {
            Ok(uid) if uid == got => Ok(()),
            Ok(uid) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{name} was replaced between its creation and its opening: it belongs to uid {got}, \
                     not to uid {uid} (another user can rename entries in this directory)"
                ),
            )),
            Err(e) => Err(e),
        }
    }

    /// Creates the new file `name` (`O_EXCL`, `O_NOFOLLOW`), for writing.
    pub fn create_new(&self, name: &str, mode: u32) -> io::Result<File> {
        let c = component(name)?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: a valid directory descriptor and a NUL-terminated single component.
        let fd = check(unsafe {
            libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint)
        })?;
        // SAFETY: `fd` is a descriptor we just opened and own.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Opens the existing regular file `name` for reading: never through a symlink, never blocking on a
    /// FIFO or device (opened `O_NONBLOCK`, then `fstat`ed: anything but a regular file is refused).
    pub fn open_file(&self, name: &str) -> io::Result<(File, Stat)> {
        let c = component(name)?;
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        // SAFETY: a valid directory descriptor and a NUL-terminated single component.
        let fd = check(unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) })?;
        // SAFETY: `fd` is a descriptor we just opened and own.
        let f = unsafe { File::from_raw_fd(fd) };
        let st = fstat(f.as_raw_fd())?;
        if st.kind != Kind::File {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name} is not a regular file"),
            ));
        }
        // Back to blocking reads for a regular file (O_NONBLOCK has no effect on them, but be plain).
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_RDONLY) };
        Ok((f, st))
    }

    /// What is at `name`, without following a symlink. `Ok(None)` when nothing is there.
    pub fn stat_at(&self, name: &str) -> io::Result<Option<Stat>> {
        let c = component(name)?;
        // SAFETY: zeroed plain-old-data out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid directory descriptor, a NUL-terminated component and a valid out-parameter.
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        match check(rc) {
            Ok(_) => Ok(Some(Stat::from(&st))),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// This directory's own facts.
    pub fn stat(&self) -> io::Result<Stat> {
        fstat(self.fd.as_raw_fd())
    }

    /// Renames `from` to `to`, both inside this directory (replacing `to`).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (a, b) = (component(from)?, component(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid directory descriptors and NUL-terminated single components.
        check(unsafe { libc::renameat(fd, a.as_ptr(), fd, b.as_ptr()) }).map(drop)
    }

    /// Removes the file (or symlink) `name`.
    pub fn unlink(&self, name: &str) -> io::Result<()> {
        let c = component(name)?;
        // SAFETY: a valid directory descriptor and a NUL-terminated single component.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
    }

    /// Removes the empty subdirectory `name`.
    pub fn rmdir(&self, name: &str) -> io::Result<()> {
        let c = component(name)?;
        // SAFETY: a valid directory descriptor and a NUL-terminated single component.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })
            .map(drop)
    }

    /// Removes everything inside this directory (not the directory itself), never following a symlink:
    /// a symlink is removed, not what it points to. Subdirectories deeper than `depth` are left (an error).
    pub fn clear(&self, depth: u32) -> io::Result<()> {
        let mut first_err = None;
        for name in self.names(1 << 20)? {
            let r = match self.stat_at(&name) {
                Ok(Some(st)) if st.kind == Kind::Dir => {
                    if depth == 0 {
                        Err(io::Error::other("directory tree too deep"))
                    } else {
                        self.open_dir(&name)
                            .and_then(|d| d.clear(depth - 1))
                            .and_then(|()| self.rmdir(&name))
                    }
                }
                Ok(Some(_)) => self.unlink(&name),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Names in this directory (not `.` or `..`), at most `max` of them (a hostile tree may hold millions).
    pub fn names(&self, max: usize) -> io::Result<Vec<String>> {
        // fdopendir takes ownership of its descriptor: give it a duplicate.
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own.
        let dup = check(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        // SAFETY: `dup` is ours; on success the DIR owns it, on failure we close it.
        let dirp = unsafe { libc::fdopendir(dup) };
        if dirp.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: `dup` is still ours after a failed fdopendir.
            unsafe { libc::close(dup) };
            return Err(e);
        }
        // SAFETY: a fresh DIR stream positioned anywhere: start from the beginning.
        unsafe { libc::rewinddir(dirp) };
        let mut out = Vec::new();
        while out.len() < max {
            // SAFETY: `dirp` is a valid open DIR stream, used by this thread only.
            let ent = unsafe { libc::readdir(dirp) };
            if ent.is_null() {
                break;
            }
            // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
            let b = name.to_bytes();
            if b != b"." && b != b".." {
                out.push(String::from_utf8_lossy(b).into_owned());
            }
        }
        // SAFETY: closes the stream (and `dup`) exactly once.
        unsafe { libc::closedir(dirp) };
        Ok(out)
    }

    /// A path that names this very directory while the handle is open (`/proc/self/fd/N`), for a vendor
    /// library or tool that only takes path names: the kernel resolves it to the directory we opened, not
    /// to whatever now has its old name.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
        })
    }
}

impl AsRawFd for Dir {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn fstat(fd: RawFd) -> io::Result<Stat> {
    // SAFETY: zeroed plain-old-data out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid out-parameter.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(Stat::from(&st))
}

/// `fstat` of an open file.
pub fn stat_file(f: &File) -> io::Result<Stat> {
    fstat(f.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_handle_keeps_its_directory_when_the_name_is_swapped_for_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let root = Dir::open(t.path()).unwrap();
        let w = root.mkdir("w", 0o750).unwrap();
        assert_eq!(w.stat().unwrap().mode, 0o750);
        // Someone renames our directory away and plants a symlink to another one under its name.
        std::fs::create_dir(t.path().join("victim")).unwrap();
        std::fs::rename(t.path().join("w"), t.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(t.path().join("victim"), t.path().join("w")).unwrap();
        w.create_new("f", 0o640)
            .unwrap()
            .write_all(b"data")
            .unwrap();
        assert!(t.path().join("moved/f").exists());
        assert!(!t.path().join("victim/f").exists());
        // And the symlinked name is never opened as our directory again.
        assert!(root.open_dir("w").is_err());
        assert!(root.mkdir("w", 0o750).is_err());
        assert!(Dir::open(&t.path().join("w")).is_err());
        // Only when asked to (a path an administrator typed or configured).
        let via_link = Dir::open_follow(&t.path().join("w")).unwrap();
        via_link.create_new("g", 0o640).unwrap();
        assert!(t.path().join("victim/g").exists());
    }

    #[test]
    #[cfg_attr(miri, ignore = "directory system calls")]
    fn a_directory_swapped_in_after_mkdir_is_refused_by_owner() {
        let t = tempfile::tempdir().unwrap();
        let root = Dir::open(t.path()).unwrap();
        let mine = root.mkdir("mine", 0o750).unwrap();
        assert!(root.check_ours("mine", &mine).is_ok());
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            // chown below needs root: required in CI (which runs as root), skipped loudly elsewhere.
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the tests as root"
            );
            eprintln!("SKIP (another user's directory needs root; CI runs it as root)");
            return;
        }
        // What an attacker would have put in place between our mkdirat and openat: their own directory.
        std::fs::create_dir(t.path().join("theirs")).unwrap();
        std::os::unix::fs::chown(t.path().join("theirs"), Some(65534), Some(65534)).unwrap();
        let theirs = root.open_dir("theirs").unwrap();
        let e = root.check_ours("theirs", &theirs).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("uid 65534"), "{e}");
        // The probe file is gone.
        let mut names = root.names(10).unwrap();
        names.sort();
        assert_eq!(names, ["mine", "theirs"]);
    }

    #[test]
    fn files_are_read_only_when_regular_and_never_through_links_or_fifos() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        d.create_new("a", 0o640).unwrap().write_all(b"x").unwrap();
        let (mut f, st) = d.open_file("a").unwrap();
        assert_eq!((st.kind, st.size), (Kind::File, 1));
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "x");
        std::os::unix::fs::symlink(t.path().join("a"), t.path().join("l")).unwrap();
        assert!(d.open_file("l").is_err());
        let fifo = CString::new(t.path().join("p").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        // Returns at once (O_NONBLOCK), refused as not a regular file.
        assert!(d.open_file("p").is_err());
        assert_eq!(d.stat_at("p").unwrap().unwrap().kind, Kind::Other);
        assert_eq!(d.stat_at("l").unwrap().unwrap().kind, Kind::Symlink);
        assert!(d.stat_at("none").unwrap().is_none());
        assert!(d.create_new("../x", 0o640).is_err());
        assert!(d.create_new("a", 0o640).is_err());
        let mut names = d.names(10).unwrap();
        names.sort();
        assert_eq!(names, ["a", "l", "p"]);
        assert_eq!(d.names(1).unwrap().len(), 1);
        d.rename("a", "b").unwrap();
        d.unlink("b").unwrap();
        assert!(d.stat_at("b").unwrap().is_none());
    }
}
