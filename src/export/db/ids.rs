//! `STRING_IDS`: every string the database refers to, stored once, by id (the columns that "hold a name"
//! hold its id).

use rusqlite::{Connection, Result};
use std::collections::HashMap;

/// The strings written so far and their ids.
#[derive(Default)]
pub(super) struct StringIds {
    index: HashMap<Box<[u8]>, i64>,
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
