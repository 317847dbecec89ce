//! `STRING_IDS`: every string the database refers to, stored once, by id (the columns that "hold a name"
//! hold its id).

use rusqlite::{Connection, Result};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The strings written so far and their ids.
#[derive(Default)]
pub(super) struct StringIds {
    index: HashMap<Box<[u8]>, i64, BuildHasherDefault<Fnv>>,
}

/// FNV-1a: millions of look-ups of short names (one per API call) whose keys we wrote ourselves; SipHash's
/// resistance to chosen keys is not needed, and cost a third of a look-up.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let state = if self.0 == 0 {
            crate::device::FNV_OFFSET
        } else {
            self.0
        };
        self.0 = crate::device::fnv1a(state, bytes);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl StringIds {
    /// The id of `s`, inserting it into `STRING_IDS` the first time. Text is stored as UTF-8 (invalid bytes
    /// replaced), as SQLite's TEXT must be.
    pub(super) fn id(&mut self, conn: &Connection, s: &[u8]) -> Result<i64> {
        if let Some(&id) = self.index.get(s) {
            return Ok(id);
        }
        let id = self.index.len() as i64;
        conn.prepare_cached("INSERT INTO STRING_IDS (id, value) VALUES (?1, ?2)")?
            .execute(rusqlite::params![id, String::from_utf8_lossy(s)])?;
        self.index.insert(s.into(), id);
        Ok(id)
    }
}
