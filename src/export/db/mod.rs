//! The database of a result, `ASCEND_PROFILER_OUTPUT/ascend_mindspore_profiler_{rank}.db`: CANN's unified
//! profiling schema, what msprof-analyze's cluster recipes, `compare` and `advisor` read (torch_npu and
//! MindSpore write it with `export_type=db`). Filled from the same data as the text files, on the export
//! thread, in one transaction with prepared statements, streamed: the host pass hands its ranges and marks
//! over as it reads the spool ([`Db::host_range`]), the backend's API calls and markers are replayed from
//! where it keeps them, so neither is ever all in memory.

mod analyzer;
mod batch;
mod comm_name;
mod device;
mod file;
mod framework;
mod ids;
mod records;
mod schema;

pub(crate) use analyzer::NAME as ANALYZER;
pub(crate) use comm_name::double_hash;

use super::csv::StepSpan;
use crate::device::{DeviceResult, HostRecords};
use crate::error::{Error, Result};
use crate::layout::Place;
use file::{sql_error, DbFile};
use ids::StringIds;
use rusqlite::params;
use schema::INVALID;

/// The database's name for a rank.
pub(crate) fn name(rank: u32) -> String {
    format!("ascend_mindspore_profiler_{rank}.db")
}

/// The database being written (its transaction open).
pub(crate) struct Db {
    f: DbFile,
    ids: StringIds,
    pid: u32,
    /// `STRING_IDS` id per host name id of the spool (ids up to `names::MAX_NAMES`).
    host_names: Vec<Option<i64>>,
    /// The host names' bytes, by id (for the `_start`/`_stop` names of ranges).
    host_name_raw: Vec<Option<Box<[u8]>>>,
    /// The `STRING_IDS` ids of `<name>_start` and `<name>_stop` per host name id, once used by a range.
    host_range_ids: Vec<Option<(i64, i64)>>,
    /// `MSTX_EVENTS` rows so far (their connection ids).
    mstx: u64,
    /// `PYTORCH_API` rows so far (their ids into `CONNECTION_IDS`).
    framework_ops: u64,
    domain: i64,
    /// The first error of a row handed over by the host pass: the database is then not committed.
    error: Option<rusqlite::Error>,
}

/// What the database is filled from beside the host pass.
pub(crate) struct Input<'a> {
    pub(crate) rank: u32,
    pub(crate) device_id: u32,
    pub(crate) dev: &'a DeviceResult,
    pub(crate) steps: &'a [StepSpan],
    /// The profile's start and stop, CLOCK_REALTIME ns.
    pub(crate) span: (u64, u64),
}

/// `MSTX_EVENTS.connectionId` of the n-th marker: msMonitor's offset, clear of the API calls' ids, never
/// the invalid value (mstx_sum leaves out ranges that have it).
fn mstx_connection(n: u64) -> i64 {
    let c = 4_000_000_000 + n;
    (if c >= INVALID as u64 { c + 1 } else { c }) as i64
}

fn global_tid(pid: u32, tid: u32) -> i64 {
    (((pid as u64) << 32) | tid as u64) as i64
}

impl Db {
    /// Creates the database of `rank` in `out` (as `name.tmp` until [`Db::finish`]), its tables made.
    pub(crate) fn create(out: &Place, rank: u32, pid: u32) -> Result<Db> {
        let f = DbFile::create(out, &name(rank))?;
        let shown = f.shown.clone();
        let mut db = Db {
            f,
            ids: StringIds::default(),
            pid,
            host_names: Vec::new(),
            host_name_raw: Vec::new(),
            host_range_ids: Vec::new(),
            mstx: 0,
            framework_ops: 0,
            domain: 0,
            error: None,
        };
        db.tables()
            .map_err(|e| sql_error("cannot create the tables of", &shown, e))?;
        Ok(db)
    }

    fn tables(&mut self) -> rusqlite::Result<()> {
        let conn = &self.f.conn;
        conn.execute_batch(schema::PROFILER_TABLES)?;
        for (table, rows) in schema::ENUMS {
            let mut st =
                conn.prepare(&format!("INSERT INTO {table} (id, name) VALUES (?1, ?2)"))?;
            for (id, name) in *rows {
                st.execute(params![id, name])?;
            }
        }
        self.domain = self.id(b"default")?;
        Ok(())
    }

    fn id(&mut self, s: &[u8]) -> rusqlite::Result<i64> {
        self.ids.id(&self.f.conn, s)
    }

    /// Runs `f` unless an earlier row failed; keeps its error.
    fn guard(&mut self, f: impl FnOnce(&mut Db) -> rusqlite::Result<()>) {
        if self.error.is_none() {
            if let Err(e) = f(self) {
                self.error = Some(e);
            }
        }
    }

    /// The host name `id` of the spool is `bytes`.
    pub(crate) fn host_name(&mut self, id: u32, bytes: &[u8]) {
        let i = id as usize;
        if i > crate::record::names::MAX_NAMES {
            return;
        }
        self.guard(|db| {
            let sid = db.id(bytes)?;
            if db.host_names.len() <= i {
                db.host_names.resize(i + 1, None);
            }
            db.host_names[i] = Some(sid);
            if db.host_name_raw.len() <= i {
                db.host_name_raw.resize(i + 1, None);
            }
            db.host_name_raw[i] = Some(bytes.into());
            if let Some(ids) = db.host_range_ids.get_mut(i) {
                *ids = None;
            }
            Ok(())
        });
    }

    fn host_name_id(&mut self, id: u32) -> rusqlite::Result<i64> {
        if let Some(Some(s)) = self.host_names.get(id as usize) {
            return Ok(*s);
        }
        match crate::record::names::get(id) {
            Some(n) => self.id(n),
            None => self.id(format!("[unknown name #{id}]").as_bytes()),
        }
    }

    fn mstx_row(
        &mut self,
        span: (u64, u64),
        event: i64,
        message: i64,
        domain: i64,
        gtid: i64,
    ) -> rusqlite::Result<()> {
        mstx_insert(
            &self.f.conn,
            &mut self.mstx,
            span,
            (event, message, domain, gtid),
        )
    }

    fn range_ids(&mut self, message: &[u8]) -> rusqlite::Result<(i64, i64)> {
        range_ids(&self.f.conn, &mut self.ids, message)
    }

    fn range_pair(
        &mut self,
        (start, stop): (i64, i64),
        (start_ns, end_ns): (u64, u64),
        domain: i64,
        gtid: i64,
    ) -> rusqlite::Result<()> {
        let ex = schema::mstx_type::MARKER_EX;
        self.mstx_row((start_ns, start_ns), ex, start, domain, gtid)?;
        self.mstx_row((end_ns, end_ns), ex, stop, domain, gtid)
    }

    fn host_name_bytes(&self, id: u32) -> Vec<u8> {
        match crate::record::names::get(id) {
            Some(n) => n.to_vec(),
            None => format!("[unknown name #{id}]").into_bytes(),
        }
    }

    /// A host range (`npuprof_range_push`/`pop`) of thread `tid` (see [`records::Rows`]).
    pub(crate) fn host_range(&mut self, tid: u32, name: u32, start_ns: u64, end_ns: u64) {
        self.guard(|db| {
            let g = global_tid(db.pid, tid);
            let i = name as usize;
            let ids = match db.host_range_ids.get(i) {
                Some(Some(ids)) => *ids,
                _ => {
                    let bytes = match db.host_name_raw.get(i) {
                        Some(Some(b)) => b.to_vec(),
                        _ => db.host_name_bytes(name),
                    };
                    let ids = db.range_ids(&bytes)?;
                    // Cached for the ids a name table hands out (a damaged spool's larger ids are not).
                    if i <= crate::record::names::MAX_NAMES {
                        if db.host_range_ids.len() <= i {
                            db.host_range_ids.resize(i + 1, None);
                        }
                        db.host_range_ids[i] = Some(ids);
                    }
                    ids
                }
            };
            db.range_pair(ids, (start_ns, end_ns), db.domain, g)
        });
    }

    /// A host mark (`npuprof_mark`) of thread `tid`: an mstx instant marker.
    pub(crate) fn host_mark(&mut self, tid: u32, name: u32, ts_ns: u64) {
        self.guard(|db| {
            let m = db.host_name_id(name)?;
            let g = global_tid(db.pid, tid);
            db.mstx_row((ts_ns, ts_ns), schema::mstx_type::MARKER, m, db.domain, g)
        });
    }

    /// Writes the rest (device tables, API calls, steps, the session's facts), builds the indexes and
    /// commits the database into place.
    /// At most `room` bytes: a database that would be larger is not committed.
    pub(crate) fn finish(mut self, input: &Input<'_>, room: u64) -> Result<()> {
        let shown = self.f.shown.clone();
        if let Some(e) = self.error.take() {
            return Err(sql_error("cannot write", &shown, e));
        }
        self.f
            .limit(room)
            .map_err(|e| sql_error("cannot write", &shown, e))?;
        self.rest(input)
            .map_err(|e| sql_error("cannot write", &shown, e))?;
        self.f.commit()
    }

    fn rest(&mut self, input: &Input<'_>) -> rusqlite::Result<()> {
        let dev = input.dev;
        self.kernels(&dev.kernels, input.device_id)?;
        self.collectives(&dev.collectives, &dev.kernels, input.device_id)?;
        if let Some(r) = &dev.host_records {
            self.host_records(r.as_ref(), dev.kernels.list.len() as i64)?;
        }
        self.steps(input.steps)?;
        self.session((input.rank, input.device_id), input.span)?;
        Ok(())
    }

    fn steps(&mut self, steps: &[StepSpan]) -> rusqlite::Result<()> {
        let mut st = self
            .f
            .conn
            .prepare("INSERT INTO STEP_TIME VALUES (?1, ?2, ?3)")?;
        for s in steps {
            st.execute(params![s.step as i64, s.start_ns as i64, s.end_ns as i64])?;
        }
        Ok(())
    }

    /// `META_DATA`, `SESSION_TIME_INFO`, `NPU_INFO`, `HOST_INFO`, `RANK_DEVICE_MAP`: one row each (and the
    /// schema version).
    fn session(
        &mut self,
        (rank, device_id): (u32, u32),
        (start_ns, stop_ns): (u64, u64),
    ) -> rusqlite::Result<()> {
        let conn = &self.f.conn;
        let mut meta = conn.prepare("INSERT INTO META_DATA VALUES (?1, ?2)")?;
        for (k, v) in schema::SCHEMA_VERSION {
            meta.execute(params![k, v])?;
        }
        // The groups the process named (npuprof_set_group), as in profiler_metadata.json: in DB mode
        // msprof-analyze reads them from here (communication_group_map, communication_matrix,
        // computational_op_masking).
        let groups = crate::device::groups::snapshot();
        if !groups.is_empty() {
            let info = super::group_info::object(&groups);
            meta.execute(params!["parallel_group_info", info])?;
        }
        conn.execute(
            "INSERT INTO SESSION_TIME_INFO VALUES (?1, ?2)",
            params![start_ns as i64, stop_ns as i64],
        )?;
        conn.execute(
            "INSERT INTO NPU_INFO VALUES (?1, 'UNKNOWN')",
            params![device_id],
        )?;
        let host = crate::config::identity::hostname();
        conn.execute(
            "INSERT INTO HOST_INFO VALUES (?1, ?2)",
            params![double_hash(host.as_bytes()).to_string(), host],
        )?;
        // Several recipes CROSS JOIN this table: exactly one row, the real rank.
        conn.execute(
            "INSERT INTO RANK_DEVICE_MAP VALUES (?1, ?2)",
            params![rank, device_id],
        )?;
        Ok(())
    }

    /// `first_task`: the first `globalTaskId` after the kernels' (for the copies' `TASK` rows).
    fn host_records(&mut self, r: &dyn HostRecords, first_task: i64) -> rusqlite::Result<()> {
        let mut failed = None;
        let mut rows = records::Rows::new(self, first_task)?;
        let res = r.replay(&mut |rec| {
            if let Err(e) = rows.record(rec) {
                failed = Some(e);
                return Err(Error::new(crate::error::Status::Io, "database row"));
            }
            Ok(())
        });
        if let Some(e) = failed {
            return Err(e);
        }
        rows.finish()?;
        if let Err(e) = res {
            // The backend's own read error: the rows before it are kept (as the lanes do).
            log::warn!(
                "database: the backend's API records could not all be read: {}",
                e.msg
            );
        }
        Ok(())
    }
}

/// One `MSTX_EVENTS` row, the `n`-th (its connection id).
fn mstx_insert(
    conn: &rusqlite::Connection,
    n: &mut u64,
    (start_ns, end_ns): (u64, u64),
    (event, message, domain, gtid): (i64, i64, i64, i64),
) -> rusqlite::Result<()> {
    let c = mstx_connection(*n);
    *n += 1;
    conn.prepare_cached("INSERT INTO MSTX_EVENTS VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9)")?
        .execute(params![
            start_ns as i64,
            end_ns as i64,
            event,
            INVALID,
            INVALID,
            message,
            gtid,
            domain,
            c
        ])?;
    Ok(())
}

/// The ids of `<message>_start` and `<message>_stop`.
fn range_ids(
    conn: &rusqlite::Connection,
    ids: &mut StringIds,
    message: &[u8],
) -> rusqlite::Result<(i64, i64)> {
    let mut m = message.to_vec();
    m.extend_from_slice(b"_start");
    let start = ids.id(conn, &m)?;
    m.truncate(message.len());
    m.extend_from_slice(b"_stop");
    Ok((start, ids.id(conn, &m)?))
}

/// Writes the database of a result: `db` (made before the host pass) completed with the device data.
/// A failure leaves no database (one warning; the text files stand).
/// `room`: the bytes both databases may take (NPUPROF_MAX_DISK_MB's share, see `export::budget`). Returns the
/// outcome for `profiler_metadata.json` (a JSON object), `None` without a database to write.
pub(crate) fn complete(
    db: Option<Db>,
    out: &Place,
    room: u64,
    input: &Input<'_>,
) -> Option<String> {
    let db = db?;
    let t0 = std::time::Instant::now();
    if let Err(e) = db.finish(input, room) {
        log::warn!(
            "the result's database is not written: {} (room under NPUPROF_MAX_DISK_MB: {room} bytes)",
            e.msg
        );
        return Some(format!(
            "{{\"written\":false,\"error\":{}}}",
            crate::format::json::string(e.msg.as_bytes())
        ));
    }
    let used = out
        .dir
        .stat_at(&name(input.rank))
        .ok()
        .flatten()
        .map_or(0, |st| st.size);
    let analyzer = match analyzer::write(
        out,
        input.dev,
        (input.rank, input.device_id),
        input.steps,
        input.span,
        room.saturating_sub(used),
    ) {
        Ok(()) => "true".to_string(),
        Err(e) => {
            log::warn!("the result's {} is not written: {}", analyzer::NAME, e.msg);
            crate::format::json::string(e.msg.as_bytes())
        }
    };
    let ms = t0.elapsed().as_millis();
    log::debug!("database written in {ms} ms");
    Some(format!(
        "{{\"written\":true,\"bytes\":{used},\"ms\":{ms},\"communication_analyzer\":{analyzer}}}"
    ))
}

#[cfg(test)]
mod tests;
