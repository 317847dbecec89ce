//! MSPTI's API calls, markers and memory copies for the database (`CANN_API`, `MSTX_EVENTS`, `TASK`),
//! replayed from the spool on each read: the records are never all in memory (only the marker ranges still
//! open, bounded).

use super::names_file::NameSource;
use super::records::*;
use super::replay::Spool;
use crate::device::{ApiCall, ApiLevel, DeviceCopy, HostRecord, HostRecords, Marker};
use crate::error::Result;
use std::collections::HashMap;

pub(super) struct MsptiHostRecords {
    pub(super) spool: Spool,
    pub(super) names: NameSource,
}

/// Marker ranges open at once, at most (a range whose END never comes holds an entry to the end of the
/// replay); a START beyond it is dropped (its END then reads as an unpaired END, also dropped).
const MAX_OPEN_MARKERS: usize = 1 << 16;

/// MSPTI's marker flags (`msptiActivityFlag`): a range's start and end (host and device variants).
const MARKER_START: u32 = 1 << 1 | 1 << 4;
const MARKER_END: u32 = 1 << 2 | 1 << 5;

fn level(kind: u32) -> Option<ApiLevel> {
    Some(match kind {
        KIND_ACL_API => ApiLevel::Acl,
        KIND_NODE_API => ApiLevel::Node,
        KIND_API | KIND_RUNTIME_API => ApiLevel::Runtime,
        _ => return None,
    })
}

impl HostRecords for MsptiHostRecords {
    fn replay(&self, each: &mut dyn FnMut(&HostRecord<'_>) -> Result<()>) -> Result<()> {
        // Open marker ranges by id: (start ns, message id, domain id).
        let mut open: HashMap<u64, (u64, u32, u32)> = HashMap::new();
        let n = &self.names;
        self.spool.replay(|r| {
            if let Some(level) = level(r.kind) {
                return each(&HostRecord::Api(ApiCall {
                    level,
                    name: n.get(r.c as u32),
                    start_ns: r.start,
                    end_ns: r.end.max(r.start),
                    pid: r.b as u32,
                    tid: r.a,
                    correlation: r.corr,
                }));
            }
            if r.kind == KIND_MEMCPY {
                return each(&HostRecord::Copy(DeviceCopy {
                    start_ns: r.start,
                    end_ns: r.end.max(r.start),
                    device: (r.c >> 32) as u32,
                    stream: r.c as u32,
                    correlation: r.corr,
                    bytes: r.b,
                }));
            }
            if r.kind != KIND_MARKER {
                return Ok(());
            }
            let (msg, domain) = ((r.c >> 32) as u32, r.c as u32);
            let (pid, tid) = ((r.b >> 32) as u32, r.b as u32);
            if r.a & MARKER_START != 0 {
                if open.len() < MAX_OPEN_MARKERS {
                    open.insert(r.corr, (r.start, msg, domain));
                }
                return Ok(());
            }
            let (start_ns, msg, domain, range) = if r.a & MARKER_END != 0 {
                match open.remove(&r.corr) {
                    Some((s, m, d)) => (s, m, d, true),
                    None => return Ok(()),
                }
            } else {
                (r.start, msg, domain, false)
            };
            each(&HostRecord::Marker(Marker {
                message: n.get(msg),
                domain: n.get(domain),
                start_ns,
                end_ns: r.start.max(start_ns),
                pid,
                tid,
                range,
            }))
        })?;
        Ok(())
    }
}
