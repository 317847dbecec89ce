//! `CANN_API` and the vendor's markers in `MSTX_EVENTS`, from the backend's stream of host records.

use super::schema::{api_type, mstx_type};
use super::{device::connection, global_tid, Db};
use crate::device::{ApiLevel, HostRecord};
use rusqlite::params;

fn api_type(l: ApiLevel) -> i64 {
    match l {
        ApiLevel::Acl => api_type::ACL,
        ApiLevel::Model => api_type::MODEL,
        ApiLevel::Node => api_type::NODE,
        ApiLevel::Communication => api_type::COMMUNICATION,
        ApiLevel::Runtime => api_type::RUNTIME,
    }
}

impl Db {
    /// One record of the stream. An API call whose connection id is already in the table (one launch
    /// reported at several API levels) keeps its first row: `CANN_API.connectionId` is the key.
    pub(super) fn record(&mut self, r: &HostRecord<'_>) -> rusqlite::Result<()> {
        match r {
            HostRecord::Api(a) => {
                let name = self.id(a.name)?;
                self.f
                    .conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO CANN_API VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        a.start_ns as i64,
                        a.end_ns as i64,
                        api_type(a.level),
                        global_tid(a.pid, a.tid),
                        connection(a.correlation),
                        name
                    ])?;
                Ok(())
            }
            HostRecord::Marker(m) => {
                let domain = if m.domain.is_empty() {
                    self.domain
                } else {
                    self.id(m.domain)?
                };
                let g = global_tid(m.pid, m.tid);
                if m.range {
                    return self.range_rows(m.message, (m.start_ns, m.end_ns), domain, g);
                }
                let msg = self.id(m.message)?;
                self.mstx_row((m.start_ns, m.end_ns), mstx_type::MARKER, msg, domain, g)
            }
        }
    }
}
