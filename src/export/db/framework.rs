//! `PYTORCH_API` and `CONNECTION_IDS`: the framework ops (the host ranges drawn as `cpu_op`) and, for each,
//! the device launches it is the innermost op of (the relation the trace's `async_npu` flows draw, from
//! [`Launches`]). msprof-analyze's free_analysis, module_statistic and operator_mfu join them whatever the
//! database's name: `PYTORCH_API.connectionId` is an id into `CONNECTION_IDS.id`, whose `connectionId` is
//! the launching API call's (`CANN_API`, `TASK`).

use super::device::connection;
use super::schema::INVALID;
use super::{global_tid, Db};
use crate::device::Launches;
use rusqlite::params;

/// `ENUM_API_TYPE` of a framework operator.
const OP: i64 = 50001;

impl Db {
    /// A framework op of thread `tid`: a `PYTORCH_API` row with an id of its own for `CONNECTION_IDS`.
    pub(crate) fn framework_op(&mut self, tid: u32, name: u32, begin_ns: u64, end_ns: u64) {
        self.guard(|db| {
            let n = db.host_name_id(name)?;
            let id = db.framework_ops as i64;
            db.framework_ops += 1;
            db.f.conn
                .prepare_cached(
                    "INSERT INTO PYTORCH_API VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6, ?6, ?6, ?7)",
                )?
                .execute(params![
                    begin_ns as i64,
                    end_ns as i64,
                    global_tid(db.pid, tid),
                    id,
                    n,
                    INVALID,
                    OP
                ])?;
            Ok(())
        });
    }

    /// The launches with their innermost framework op (after the host pass, [`Launches::by_key`]): one
    /// `CONNECTION_IDS` row each, `(the op's row id, the launch's connection id)`, the op found by its
    /// thread and start (several ops of a thread starting at the same nanosecond all get the launch).
    pub(crate) fn framework_links(&mut self, launches: &Launches) {
        if launches.is_empty() || self.framework_ops == 0 {
            return;
        }
        self.guard(|db| {
            let conn = &db.f.conn;
            conn.execute_batch(
                "CREATE TEMP TABLE launch_op (globalTid INTEGER, startNs INTEGER, connectionId INTEGER)",
            )?;
            {
                let mut st = conn.prepare("INSERT INTO launch_op VALUES (?1, ?2, ?3)")?;
                for l in launches.iter() {
                    st.execute(params![
                        global_tid(db.pid, l.tid),
                        l.op_ns as i64,
                        connection(l.key)
                    ])?;
                }
            }
            conn.execute_batch(
                "CREATE INDEX temp.launch_op_at ON launch_op (globalTid, startNs);
                 INSERT INTO CONNECTION_IDS
                   SELECT p.connectionId, l.connectionId FROM PYTORCH_API p
                   JOIN launch_op l ON l.globalTid = p.globalTid AND l.startNs = p.startNs;
                 DROP TABLE launch_op;",
            )
        });
    }
}
