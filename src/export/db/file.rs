//! A SQLite database written into a directory we hold a handle of: created as `name.tmp` with `O_EXCL`
//! through the handle, opened by SQLite through `/proc/self/fd/N` of the file we created, filled in one
//! transaction, checked to be the file we created, synced, and renamed into place in the same directory only
//! when complete (a reader never sees half a database; a failure leaves none).
//!
//! SQLite opens by path: the path it is given is the file we created, by its descriptor. Our file is then
//! checked to hold what SQLite wrote (its size is SQLite's page count × page size), so rows that went
//! anywhere else (someone renamed the directory while SQLite resolved the path) are never committed.

use crate::error::{Error, Result};
use crate::layout::Place;
use rusqlite::Connection;
use std::fs::File;
use std::os::fd::AsRawFd;

/// An open, uncommitted database file.
pub(super) struct DbFile {
    pub(super) conn: Connection,
    file: File,
    dir: crate::dir::Dir,
    tmp: String,
    name: String,
    pub(super) shown: std::path::PathBuf,
    /// The most bytes the file may have when committed ([`DbFile::limit`]).
    room: u64,
    committed: bool,
    /// Last field: dropped after the connection is closed.
    _in_use: crate::process::SqliteInUse,
}

/// A SQLite error as npuprof's error, naming the file.
pub(super) fn sql_error(what: &str, at: &std::path::Path, e: rusqlite::Error) -> Error {
    Error::io(what, at, &std::io::Error::other(e.to_string()))
}

impl DbFile {
    /// Creates `name.tmp` in `at` and opens it for writing, its transaction begun.
    pub(super) fn create(at: &Place, name: &str) -> Result<DbFile> {
        let tmp = format!("{name}.tmp");
        let shown = at.shown(name);
        let in_use = crate::process::SqliteInUse::enter().ok_or_else(|| {
            Error::new(
                crate::error::Status::Io,
                format!(
                    "{} is not written: this process was forked while its parent wrote a database, and a \
                     forked child cannot use SQLite then (its internal locks may be held by a thread the \
                     child does not have)",
                    shown.display()
                ),
            )
        })?;
        // A stray `.tmp` of an earlier export of this very result (it crashed) is ours to replace.
        let _ = at.dir.unlink(&tmp);
        let file = at.create_new(&tmp)?;
        let dir = at
            .dir
            .try_clone()
            .map_err(|e| Error::io("cannot use", &at.path, &e))?;
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let conn = Connection::open(&path).map_err(|e| sql_error("cannot open", &shown, e))?;
        // No journal: the file is new and private until the rename, and a failure discards it whole.
        conn.execute_batch(
            "PRAGMA page_size=65536; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA locking_mode=EXCLUSIVE; \
             PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16384; BEGIN",
        )
        .map_err(|e| sql_error("cannot set up", &shown, e))?;
        Ok(DbFile {
            conn,
            file,
            dir,
            tmp,
            name: name.to_string(),
            shown,
            room: u64::MAX,
            committed: false,
            _in_use: in_use,
        })
    }

    /// Commits the transaction, checks that our file holds the database, syncs it and renames it into place.
    pub(super) fn commit(mut self) -> Result<()> {
        let shown = self.shown.clone();
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| sql_error("cannot commit", &shown, e))?;
        let pages: i64 = self
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(|e| sql_error("cannot read", &shown, e))?;
        let page: i64 = self
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(|e| sql_error("cannot read", &shown, e))?;
        let conn = std::mem::replace(
            &mut self.conn,
            Connection::open_in_memory().map_err(|e| sql_error("cannot close", &shown, e))?,
        );
        conn.close()
            .map_err(|(_, e)| sql_error("cannot close", &shown, e))?;
        let size = crate::dir::stat_file(&self.file)
            .map_err(|e| Error::io("cannot stat", &shown, &e))?
            .size;
        if size > self.room {
            return Err(Error::new(
                crate::error::Status::Io,
                format!(
                    "{} would take {size} bytes, over its share of NPUPROF_MAX_DISK_MB ({} bytes)",
                    shown.display(),
                    self.room
                ),
            ));
        }
        if size != (pages * page) as u64 {
            return Err(Error::io(
                "the database went elsewhere than the file created for it",
                &shown,
                &std::io::Error::other(format!("{size} bytes, {pages} pages of {page}")),
            ));
        }
        self.file
            .sync_data()
            .map_err(|e| Error::io("cannot sync", &shown, &e))?;
        self.dir
            .rename(&self.tmp, &self.name)
            .map_err(|e| Error::io("cannot rename into", &shown, &e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for DbFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.dir.unlink(&self.tmp);
        }
    }
}

impl DbFile {
    /// Keeps the database within `room` bytes: an insert beyond it fails (`SQLITE_FULL`), and a file
    /// already larger (pages written before the limit) is not committed.
    pub(super) fn limit(&mut self, room: u64) -> rusqlite::Result<()> {
        self.room = room;
        let page: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = (room / page.max(512) as u64).clamp(1, i32::MAX as u64);
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
    }
}
