//! `CANN_API`, the vendor's markers in `MSTX_EVENTS` and the memory copies' `TASK` rows, from the backend's
//! stream of host records (millions of API calls: one prepared statement for the whole stream).
//!
//! A range becomes what msprof-analyze's `mstx_sum` can summarize: the `marker_ex` pair `<name>_start` at its
//! start and `<name>_stop` at its end, on its thread. (An mstx `start/end` row must have a device task with
//! its connection id: `mstx_sum` subtracts the task's times, and a range with none, as host ranges and MSPTI's
//! host markers are, stops the recipe with a `NoneType` error.)

use super::batch::Batch;
use super::ids::StringIds;
use super::schema::{api_type, mstx_type, INVALID};
use super::{device::connection, global_tid, mstx_insert, range_ids, Db};
use crate::device::{ApiLevel, DeviceCopy, HostRecord};
use rusqlite::{params, Connection, Statement};

fn api_type(l: ApiLevel) -> i64 {
    match l {
        ApiLevel::Acl => api_type::ACL,
        ApiLevel::Model => api_type::MODEL,
        ApiLevel::Node => api_type::NODE,
        ApiLevel::Communication => api_type::COMMUNICATION,
        ApiLevel::Runtime => api_type::RUNTIME,
    }
}

/// The writer of a stream's rows (the database's fields it needs, borrowed apart).
pub(super) struct Rows<'a> {
    conn: &'a Connection,
    ids: &'a mut StringIds,
    mstx: &'a mut u64,
    domain: i64,
    api: Batch<'a>,
    /// The connection ids of recent `CANN_API` rows, direct-mapped by their low bits: a launch reported at
    /// several API levels (each a record with the same id) is known to be in the table without asking SQLite.
    recent: Box<[i64]>,
    /// The `TASK` rows of the memory copies: their `globalTaskId`s follow the kernels'.
    copies: Copies<'a>,
}

/// The statement, the next `globalTaskId` and the process of the copies' `TASK` rows.
struct Copies<'a> {
    task: Option<Statement<'a>>,
    next_id: i64,
    pid: u32,
    /// `STRING_IDS` id of `MEMCPY_ASYNC`, once a copy needs it.
    type_id: Option<i64>,
}

/// Entries of [`Rows::recent`] (a power of two).
const RECENT: usize = 4096;

impl<'a> Rows<'a> {
    /// `first_task`: the `globalTaskId` of the first copy (the kernels have those below it).
    pub(super) fn new(db: &'a mut Db, first_task: i64) -> rusqlite::Result<Rows<'a>> {
        let conn = &db.f.conn;
        Ok(Rows {
            api: Batch::new(conn, "INSERT OR IGNORE INTO CANN_API", "(?, ?, ?, ?, ?, ?)")?,
            copies: Copies {
                task: None,
                next_id: first_task,
                pid: db.pid,
                type_id: None,
            },
            conn,
            ids: &mut db.ids,
            mstx: &mut db.mstx,
            domain: db.domain,
            recent: vec![i64::MIN; RECENT].into_boxed_slice(),
        })
    }

    /// Inserts the rows still batched.
    pub(super) fn finish(self) -> rusqlite::Result<()> {
        self.api.finish()
    }

    /// One record of the stream. An API call whose connection id is already in the table (one launch
    /// reported at several API levels) keeps its first row: `CANN_API.connectionId` is the key.
    pub(super) fn record(&mut self, r: &HostRecord<'_>) -> rusqlite::Result<()> {
        match r {
            HostRecord::Api(a) => {
                let c = connection(a.correlation);
                let slot = &mut self.recent[c as usize & (RECENT - 1)];
                if *slot == c {
                    // Already a row (the first reported keeps it, as INSERT OR IGNORE would).
                    return Ok(());
                }
                let name = self.ids.id(self.conn, a.name)?;
                self.api.push(&[
                    a.start_ns as i64,
                    a.end_ns as i64,
                    api_type(a.level),
                    global_tid(a.pid, a.tid),
                    c,
                    name,
                ])?;
                *slot = c;
                Ok(())
            }
            HostRecord::Copy(c) => self.copy(c),
            HostRecord::Marker(m) => {
                let domain = if m.domain.is_empty() {
                    self.domain
                } else {
                    self.ids.id(self.conn, m.domain)?
                };
                let g = global_tid(m.pid, m.tid);
                if m.range {
                    let (start, stop) = range_ids(self.conn, self.ids, m.message)?;
                    let ex = mstx_type::MARKER_EX;
                    mstx_insert(
                        self.conn,
                        self.mstx,
                        (m.start_ns, m.start_ns),
                        (ex, start, domain, g),
                    )?;
                    return mstx_insert(
                        self.conn,
                        self.mstx,
                        (m.end_ns, m.end_ns),
                        (ex, stop, domain, g),
                    );
                }
                let msg = self.ids.id(self.conn, m.message)?;
                let span = (m.start_ns, m.end_ns);
                mstx_insert(
                    self.conn,
                    self.mstx,
                    span,
                    (mstx_type::MARKER, msg, domain, g),
                )
            }
        }
    }

    /// A memory copy: a `TASK` row of type `MEMCPY_ASYNC`, the RTS task msprof names a copy's device task
    /// (cluster_time_summary's memory time counts these), linked to the API call that asked for it.
    fn copy(&mut self, c: &DeviceCopy) -> rusqlite::Result<()> {
        let ty = match self.copies.type_id {
            Some(t) => t,
            None => {
                let t = self.ids.id(self.conn, b"MEMCPY_ASYNC")?;
                self.copies.type_id = Some(t);
                t
            }
        };
        let conn = self.conn;
        let st =
            match &mut self.copies.task {
                Some(st) => st,
                slot => slot.insert(conn.prepare(
                    "INSERT INTO TASK VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?8, ?8)",
                )?),
            };
        st.execute(params![
            c.start_ns as i64,
            c.end_ns as i64,
            c.device,
            connection(c.correlation),
            self.copies.next_id,
            self.copies.pid,
            ty,
            INVALID,
            c.stream,
        ])?;
        self.copies.next_id += 1;
        Ok(())
    }
}
