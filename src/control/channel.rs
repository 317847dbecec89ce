//! The files of the control channel, shared by the process (the watcher) and `npuprof trigger`.
//!
//! Everything here goes through a handle of `.control` ([`Dir`]): a name inside it is one component, never
//! followed if it is a symlink, never opened blocking (a FIFO put in place of a command file is refused at
//! once instead of hanging the drain thread), and read with a size cap.
//!
//! Trust: `.control` is used only when it is a directory of its own (not a symlink) owned by the process's
//! effective uid and writable by no one else (group and others have no `w`). A command file is run only when
//! it is a regular file owned by that uid. Anything else is refused, and the process says why: in its log,
//! and in its answer file, which `npuprof trigger` reads.

use crate::dir::{Dir, Kind, Stat};
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub const DIR_NAME: &str = ".control";
/// Mode of a `.control` the process creates.
pub const DIR_MODE: u32 = 0o700;
/// A command (`start`, `stop`) or an answer (a status and a directory path) is small; a bigger file is
/// refused unread.
pub const MAX_FILE: u64 = 8192;

pub fn dir(root: &Path) -> PathBuf {
    root.join(DIR_NAME)
}

pub fn cmd_name(pid: u32) -> String {
    format!("{pid}.cmd")
}

pub fn ack_name(pid: u32) -> String {
    format!("{pid}.ack")
}

/// Why `.control` is not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirRefusal {
    /// A symlink, or anything else that is not a directory.
    NotOwnDir,
    /// Owned by `uid`, not by the process's `want`.
    Owner { uid: u32, want: u32 },
    /// Group or others may write into it (`mode`).
    Writable { mode: u32 },
    /// It cannot be created or opened.
    Io(String),
}

impl fmt::Display for DirRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirRefusal::NotOwnDir => write!(f, "not a directory of its own (a symlink or a file)"),
            DirRefusal::Owner { uid, want } => {
                write!(f, "owned by uid {uid}, not by uid {want} (the process's)")
            }
            DirRefusal::Writable { mode } => {
                write!(f, "writable by group or others (mode {mode:04o})")
            }
            DirRefusal::Io(e) => write!(f, "unusable: {e}"),
        }
    }
}

/// Why a command file is not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdRefusal {
    Symlink,
    Directory,
    /// A FIFO, socket or device.
    NotRegular,
    /// Owned by `uid`, not by the process's `want`.
    Owner {
        uid: u32,
        want: u32,
    },
    TooLarge {
        size: u64,
    },
    Unreadable(io::ErrorKind),
}

impl fmt::Display for CmdRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdRefusal::Symlink => write!(f, "a symlink, not a command file"),
            CmdRefusal::Directory => write!(f, "a directory, not a command file"),
            CmdRefusal::NotRegular => write!(f, "not a regular file (a FIFO, socket or device)"),
            CmdRefusal::Owner { uid, want } => write!(
                f,
                "command file owned by uid {uid}, not by uid {want} (the process's): only uid {want} \
                 can trigger this process"
            ),
            CmdRefusal::TooLarge { size } => write!(
                f,
                "{size} bytes, more than a command file holds ({MAX_FILE} at most)"
            ),
            CmdRefusal::Unreadable(k) => write!(f, "unreadable: {}", io::Error::from(*k)),
        }
    }
}

/// A `.control` the process may use: a directory, owned by `owner`, not writable by group or others.
pub fn check_dir(st: &Stat, owner: u32) -> Result<(), DirRefusal> {
    if st.kind != Kind::Dir {
        return Err(DirRefusal::NotOwnDir);
    }
    if st.uid != owner {
        return Err(DirRefusal::Owner {
            uid: st.uid,
            want: owner,
        });
    }
    if st.mode & 0o022 != 0 {
        return Err(DirRefusal::Writable { mode: st.mode });
    }
    Ok(())
}

/// Opens `.control` through the handle `r` of the results root (creating it with mode 0700 when `create`),
/// and checks it is one the process running as `owner` uses.
pub fn open_dir(r: &Dir, owner: u32, create: bool) -> Result<Dir, DirRefusal> {
    let io = |e: io::Error| DirRefusal::Io(e.to_string());
    let d = match create {
        true => match r.mkdir(DIR_NAME, DIR_MODE) {
            Ok(d) => Ok(d),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => r.open_dir(DIR_NAME),
            Err(e) => Err(e),
        },
        false => r.open_dir(DIR_NAME),
    };
    let d = match d {
        Ok(d) => d,
        // O_NOFOLLOW|O_DIRECTORY: ELOOP for a symlink, ENOTDIR for a file.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
            return Err(DirRefusal::NotOwnDir)
        }
        Err(e) => return Err(io(e)),
    };
    check_dir(&d.stat().map_err(io)?, owner)?;
    Ok(d)
}

/// Reads the small file `name` in `d` if it is a regular file owned by `owner`: `Ok(None)` when nothing is
/// there. Never follows a symlink, never blocks on a FIFO, never reads more than [`MAX_FILE`] bytes.
pub fn read_small(d: &Dir, name: &str, owner: u32) -> Result<Option<String>, CmdRefusal> {
    let (f, st) = match d.open_file(name) {
        Ok(x) => x,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        // Refused: say what it is (only for the message; nothing was read).
        Err(e) => {
            return match d.stat_at(name) {
                Ok(None) => Ok(None),
                Ok(Some(st)) => Err(match st.kind {
                    Kind::Symlink => CmdRefusal::Symlink,
                    Kind::Dir => CmdRefusal::Directory,
                    Kind::Other => CmdRefusal::NotRegular,
                    // Typically EACCES: a mode-0600 file of another user (root writing for us).
                    Kind::File if st.uid != owner => CmdRefusal::Owner {
                        uid: st.uid,
                        want: owner,
                    },
                    Kind::File => CmdRefusal::Unreadable(e.kind()),
                }),
                Err(_) => Err(CmdRefusal::Unreadable(e.kind())),
            };
        }
    };
    if st.uid != owner {
        return Err(CmdRefusal::Owner {
            uid: st.uid,
            want: owner,
        });
    }
    if st.size > MAX_FILE {
        return Err(CmdRefusal::TooLarge { size: st.size });
    }
    let mut buf = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CmdRefusal::Unreadable(e.kind()))?;
    if buf.len() as u64 > MAX_FILE {
        // It grew after the fstat.
        return Err(CmdRefusal::TooLarge {
            size: buf.len() as u64,
        });
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Writes `bytes` as `name` in `d` atomically: a new file (`O_EXCL`, mode 0600, never through a planted
/// link) named after the writer's pid, renamed into place within the same handle.
pub fn write_small(d: &Dir, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = format!("{name}.{}.tmp", std::process::id());
    let _ = d.unlink(&tmp);
    let mut f = d.create_new(&tmp, 0o600)?;
    let w = f.write_all(bytes);
    drop(f);
    if let Err(e) = w.and_then(|()| d.rename(&tmp, name)) {
        let _ = d.unlink(&tmp);
        return Err(e);
    }
    Ok(())
}

/// The process's answer to one command file, in `<pid>.ack`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Done; the worker directory.
    Done(String),
    /// The command ran and failed: `npuprof_status` and message.
    Failed { status: i32, msg: String },
    /// The command file was not trusted and was not run: why.
    Refused(String),
    /// A start that waits for step `at` (the process is at step `now`); its outcome replaces this answer.
    Armed { at: u64, now: u64 },
}

const REFUSED: &str = "refused";
const ARMED: &str = "armed";

impl Answer {
    /// One line: `0 <dir>`, `<status> <message>` or `refused <why>`.
    pub fn line(&self) -> String {
        match self {
            Answer::Done(d) => format!("0 {d}\n"),
            Answer::Failed { status, msg } => format!("{status} {msg}\n"),
            Answer::Refused(why) => format!("{REFUSED} {why}\n"),
            Answer::Armed { at, now } => format!("{ARMED} {at} {now}\n"),
        }
    }

    pub fn parse(s: &str) -> Answer {
        let s = s.trim();
        let (head, rest) = s.split_once(' ').unwrap_or((s, ""));
        match (head, head.parse::<i32>()) {
            (REFUSED, _) => Answer::Refused(rest.to_string()),
            (ARMED, _) => {
                let mut n = rest.split(' ').map(|v| v.parse::<u64>().ok());
                match (n.next().flatten(), n.next().flatten()) {
                    (Some(at), Some(now)) => Answer::Armed { at, now },
                    _ => Answer::Failed {
                        status: -1,
                        msg: format!("unreadable answer {s:?}"),
                    },
                }
            }
            (_, Ok(0)) => Answer::Done(rest.to_string()),
            (_, Ok(status)) => Answer::Failed {
                status,
                msg: rest.to_string(),
            },
            (_, Err(_)) => Answer::Failed {
                status: -1,
                msg: format!("unreadable answer {s:?}"),
            },
        }
    }
}

/// Why `npuprof trigger` cannot send a command.
#[derive(Debug)]
pub enum SendError {
    /// No `.control` (or no root): the process is not watching.
    NotWatching,
    /// There is a `.control`, but the process does not use it (or it cannot be opened).
    Refused(DirRefusal),
}

/// `npuprof trigger`'s end: `root/.control` as it exists (never created here), checked as the processes
/// check it (so a refused channel is reported at once, with its reason, instead of waiting for an answer
/// that cannot come).
pub fn open_existing(root: &Path, owner: u32) -> Result<Dir, SendError> {
    // By name, only to tell "not there" from the rest; the channel itself is used through the handle.
    if std::fs::symlink_metadata(dir(root)).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Err(SendError::NotWatching);
    }
    // The root as the administrator typed it (a symlink there is followed); nothing below it is.
    let r = Dir::open_follow(root)
        .map_err(|e| SendError::Refused(DirRefusal::Io(format!("{}: {e}", root.display()))))?;
    open_dir(&r, owner, false).map_err(SendError::Refused)
}

/// `npuprof trigger`'s end of the channel to process `pid`, which runs as `owner`.
pub struct Client {
    dir: Dir,
    pid: u32,
    owner: u32,
}

impl Client {
    /// Opens `root/.control` and checks it as the process does (so a refused channel is reported at once,
    /// with its reason, instead of waiting for an answer that cannot come).
    pub fn open(root: &Path, pid: u32, owner: u32) -> Result<Client, SendError> {
        let dir = open_existing(root, owner)?;
        Ok(Client { dir, pid, owner })
    }

    /// Writes the command (after removing a stale answer).
    pub fn send(&self, cmd: &str) -> io::Result<()> {
        let _ = self.dir.unlink(&ack_name(self.pid));
        write_small(&self.dir, &cmd_name(self.pid), cmd.as_bytes())
    }

    /// The process's answer, once it is there (then removed, unless it is `armed`: the process replaces that
    /// one with the outcome only while it is there).
    pub fn answer(&self) -> Option<Answer> {
        let name = ack_name(self.pid);
        let a = Answer::parse(&read_small(&self.dir, &name, self.owner).ok()??);
        if !matches!(a, Answer::Armed { .. }) {
            let _ = self.dir.unlink(&name);
        }
        Some(a)
    }

    /// Takes back a command nobody answered, and stops waiting for an outcome (a late one is not written).
    pub fn withdraw(&self) {
        let _ = self.dir.unlink(&cmd_name(self.pid));
        let _ = self.dir.unlink(&ack_name(self.pid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip() {
        for a in [
            Answer::Done("/r/w_1_ascend_ms".into()),
            Answer::Failed {
                status: 2,
                msg: "a profile is already recording".into(),
            },
            Answer::Refused(CmdRefusal::Owner { uid: 0, want: 7 }.to_string()),
            Answer::Armed { at: 120, now: 97 },
        ] {
            assert_eq!(Answer::parse(&a.line()), a);
        }
        assert!(matches!(
            Answer::parse("x"),
            Answer::Failed { status: -1, .. }
        ));
    }

    #[test]
    fn small_files_are_capped_and_must_be_owned() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        write_small(&d, "a", b"start").unwrap();
        assert_eq!(read_small(&d, "a", me).unwrap().as_deref(), Some("start"));
        assert_eq!(
            read_small(&d, "a", me + 1),
            Err(CmdRefusal::Owner {
                uid: me,
                want: me + 1
            })
        );
        write_small(&d, "big", &vec![b'x'; MAX_FILE as usize + 1]).unwrap();
        assert_eq!(
            read_small(&d, "big", me),
            Err(CmdRefusal::TooLarge { size: MAX_FILE + 1 })
        );
        assert_eq!(read_small(&d, "none", me), Ok(None));
        d.mkdir("sub", 0o700).unwrap();
        assert_eq!(read_small(&d, "sub", me), Err(CmdRefusal::Directory));
        std::os::unix::fs::symlink(t.path().join("a"), t.path().join("l")).unwrap();
        assert_eq!(read_small(&d, "l", me), Err(CmdRefusal::Symlink));
        // No temporary file is left behind.
        let mut names = d.names(10).unwrap();
        names.sort();
        assert_eq!(names, ["a", "big", "l", "sub"]);
    }
}
