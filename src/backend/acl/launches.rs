//! Framework op → device task flows for the aclprof timeline: the launches msprof's timeline records (the
//! `CANN` process's API slices with a `connection_id`), read in a pass of their own before the host timeline
//! is written, and the `async_npu` flow drawn for each device task whose launch a framework op enclosed
//! (msprof-analyze compare ties kernels to framework ops only through such flows).

use super::time_base::rebase;
use crate::device::{
    name_hash, push_fallible, DeviceEvent, LaneStats, Launch, Launches, TaskKey, TaskKeys,
    TraceSink,
};
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
    /// The device tasks' slices with a `connection_id` (any other process's), at most `limit`.
    tasks: Vec<TaskKey>,
    limit: usize,
    shift: i128,
}

impl LaunchCollector {
    pub(super) fn new(limit: usize, shift: i128) -> LaunchCollector {
        LaunchCollector {
            cann: HashSet::new(),
            list: Vec::new(),
            tasks: Vec::new(),
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
        if ph != b'X' {
            return;
        }
        if !self.cann.contains(&pid) {
            self.task(ts, name, args);
            return;
        }
        if self.list.len() >= self.limit {
            return;
        }
        let (Some(ts), Some(key)) = (ts, connection_id(args)) else {
            return;
        };
        push_fallible(
            &mut self.list,
            Launch {
                tid,
                ts_ns: rebase(ts, self.shift),
                key,
                op_ns: 0,
            },
        );
    }

    /// A device task's slice (another process than CANN's): its key by its start and name, for the tasks of
    /// op_summary, which has no connection id.
    fn task(&mut self, ts: Option<u64>, name: &str, args: &str) {
        if self.tasks.len() >= self.limit {
            return;
        }
        let (Some(ts), Some(key)) = (ts, connection_id(args)) else {
            return;
        };
        let Some(name) = Parser::new(name.as_bytes()).value(0).ok() else {
            return;
        };
        let Some(name) = name.as_str() else {
            return;
        };
        push_fallible(
            &mut self.tasks,
            TaskKey {
                start_ns: rebase(ts, self.shift),
                name: name_hash(name.as_bytes()),
                key,
            },
        );
    }

    /// The launches, one per connection id (the first, outermost API level, reported), with the tasks' keys.
    pub(super) fn finish(mut self) -> Launches {
        self.list.sort_by_key(|l| l.key);
        self.list.dedup_by_key(|l| l.key);
        let mut l = Launches::new(self.list);
        l.tasks = TaskKeys::new(self.tasks);
        l
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The CANN process's slices with a connection id are launches; any other process's are device tasks,
    /// keyed by their start (rebased) and unescaped name; a slice without a connection id is neither, and
    /// at most `limit` of each are kept.
    #[test]
    fn cann_slices_are_launches_and_device_slices_task_keys() {
        let mut c = LaunchCollector::new(2, 1_000);
        c.event(b'M', 5, 0, None, "\"process_name\"", r#"{"name":"CANN"}"#);
        c.event(
            b'X',
            5,
            77,
            Some(10),
            "\"Node@launch\"",
            r#"{"connection_id":4}"#,
        );
        c.event(
            b'X',
            6,
            3,
            Some(20),
            "\"Mat\\u004dul_1\"",
            r#"{"connection_id":4}"#,
        );
        c.event(b'X', 6, 3, Some(30), "\"Add_2\"", r#"{"Task Id":1}"#);
        c.event(b'X', 6, 3, Some(40), "\"Cast_3\"", r#"{"connection_id":5}"#);
        c.event(b'X', 6, 3, Some(50), "\"Gelu_4\"", r#"{"connection_id":6}"#);
        let l = c.finish();
        assert_eq!(l.len(), 1);
        assert_eq!(l.tasks.find(1_020, name_hash(b"MatMul_1")), Some(4));
        assert_eq!(l.tasks.find(1_030, name_hash(b"Add_2")), None);
        assert_eq!(l.tasks.find(1_040, name_hash(b"Cast_3")), Some(5));
        assert_eq!(
            l.tasks.find(1_050, name_hash(b"Gelu_4")),
            None,
            "beyond the limit"
        );
    }
}
