//! Framework op → device task flows for the aclprof timeline: the launches msprof's timeline records (the
//! `CANN` process's API slices with a `connection_id`), read in a pass of their own before the host timeline
//! is written, and the `async_npu` flow drawn for each device task whose launch a framework op enclosed
//! (msprof-analyze compare ties kernels to framework ops only through such flows).

use super::time_base::rebase;
use crate::device::{DeviceEvent, LaneStats, Launch, Launches, TraceSink};
use crate::error::Result;
use crate::format::json;
use crate::format::jsonparse::{Parser, Value};
use std::collections::HashSet;

/// The `connection_id` in an event's args (a JSON object literal), if any.
pub(super) fn connection_id(args: &str) -> Option<u64> {
    if !args.contains("connection_id") {
        return None;
    }
    Parser::new(args.as_bytes())
        .value(0)
        .ok()?
        .get("connection_id")
        .and_then(Value::as_u64)
}

/// Collects the launches of msprof's timeline as its events stream by: every slice of its `CANN` process
/// that has a `connection_id` (the key its device task carries too), at most `limit`. Memory: one [`Launch`]
/// per launch, grown by fallible reservations.
pub(super) struct LaunchCollector {
    cann: HashSet<u64>,
    list: Vec<Launch>,
    limit: usize,
    shift: i128,
}

impl LaunchCollector {
    pub(super) fn new(limit: usize, shift: i128) -> LaunchCollector {
        LaunchCollector {
            cann: HashSet::new(),
            list: Vec::new(),
            limit,
            shift,
        }
    }

    /// One event of the timeline (name and args as JSON literals); `ts` in the timeline's ns.
    pub(super) fn event(
        &mut self,
        ph: u8,
        pid: u64,
        tid: u32,
        ts: Option<u64>,
        name: &str,
        args: &str,
    ) {
        if ph == b'M' {
            if name == "\"process_name\"" && args.contains("\"CANN\"") {
                self.cann.insert(pid);
            }
            return;
        }
        if ph != b'X' || !self.cann.contains(&pid) || self.list.len() >= self.limit {
            return;
        }
        let (Some(ts), Some(key)) = (ts, connection_id(args)) else {
            return;
        };
        let v = &mut self.list;
        if v.len() == v.capacity() && v.try_reserve(v.len().max(1024)).is_err() {
            return;
        }
        v.push(Launch {
            tid,
            ts_ns: rebase(ts, self.shift),
            key,
            op_ns: 0,
        });
    }

    /// The launches, one per connection id (the first, outermost API level, reported).
    pub(super) fn finish(mut self) -> Launches {
        self.list.sort_by_key(|l| l.key);
        self.list.dedup_by_key(|l| l.key);
        Launches::new(self.list)
    }
}

/// The framework op → task flow of the device task `e` (a slice whose args carry `connection_id`) when a
/// framework op enclosed its launch: cat `async_npu`, named as MindSpore names it, the start at the op's exact
/// `ts` (host process, launching thread), the end at the task's exact `ts`, pid and tid.
pub(super) fn framework_op_flow(
    tw: &mut dyn TraceSink,
    st: &mut LaneStats,
    ops: &Launches,
    e: &DeviceEvent<'_>,
) -> Result<()> {
    let Some(key) = connection_id(e.args) else {
        return Ok(());
    };
    let Some(l) = ops.get(key) else {
        return Ok(());
    };
    let mut id = String::with_capacity(24);
    id.push('"');
    json::push_u64(&mut id, key);
    id.push('"');
    let flow = DeviceEvent {
        ph: b'f',
        name: "\"mindspore_to_npu\"",
        cat: "\"async_npu\"",
        args: "",
        id: &id,
        dur_ns: 0,
        ..*e
    };
    tw.device_event(&DeviceEvent {
        ph: b's',
        pid: ops.host_pid,
        tid: l.tid,
        ts_ns: l.op_ns,
        ..flow
    })?;
    tw.device_event(&flow)?;
    st.events += 2;
    Ok(())
}
