//! The CANN API calls of msprof's timeline for the database (`CANN_API`): the `X` slices of its `CANN`
//! process (`<level>@<api>`, args `level` and `connection_id`), re-read from the timeline files on each
//! replay (streamed: never all in memory), on the host time base.

use super::outputs::Deadline;
use super::time_base::rebase;
use super::timeline::{stream_events, RawEvent};
use crate::device::{ApiCall, ApiLevel, DeviceCopy, HostRecord, HostRecords};
use crate::dir::Dir;
use crate::error::{Error, Result, Status};
use crate::format::jsonparse::{Parser, Value};
use std::collections::HashSet;
use std::time::Duration;

pub(super) struct AclHostRecords {
    /// msprof's output directory (its handle) and the timeline files in it.
    pub(super) dir: Dir,
    pub(super) files: Vec<String>,
    /// CANN's local time → the host time base.
    pub(super) shift: i128,
    /// The profiled process (msprof's timeline names the thread only).
    pub(super) pid: u32,
    /// The device of the result (its memory copies' device).
    pub(super) device: u32,
    /// How long one replay may take (the rest of the timeline is left out, with a warning).
    pub(super) budget: Duration,
}

/// msprof's API level (the `level` arg, or the part of the name before `@`: `Node@launch`), any case.
fn level(s: &str) -> Option<ApiLevel> {
    const LEVELS: [(&str, ApiLevel); 6] = [
        ("acl", ApiLevel::Acl),
        ("model", ApiLevel::Model),
        ("node", ApiLevel::Node),
        ("hccl", ApiLevel::Communication),
        ("communication", ApiLevel::Communication),
        ("runtime", ApiLevel::Runtime),
    ];
    LEVELS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|(_, l)| *l)
}

/// The API call of a `CANN` slice: its level and name from `<level>@<api>` (the `level` arg when the name
/// has none), its connection id (0 when it has none: the database's invalid id).
fn api_call<'e>(ev: &'e RawEvent<'_>, name: &'e str, shift: i128, pid: u32) -> Option<ApiCall<'e>> {
    let (ts, dur) = (ev.ts?, ev.dur?);
    let args = Parser::new(ev.args.as_bytes()).value(0).ok();
    let arg = |k: &str| args.as_ref().and_then(|a| a.get(k));
    let (lv, api) = match name.split_once('@') {
        Some((l, a)) => (level(l), a),
        None => (arg("level").and_then(Value::as_str).and_then(level), name),
    };
    let start_ns = rebase(ts, shift);
    Some(ApiCall {
        level: lv.unwrap_or(ApiLevel::Runtime),
        name: api.as_bytes(),
        start_ns,
        end_ns: start_ns.saturating_add(dur),
        pid,
        tid: ev.tid,
        correlation: arg("connection_id").and_then(Value::as_u64).unwrap_or(0),
    })
}

/// A memory copy: an `Ascend Hardware` slice of Task Type `MEMCPY_ASYNC` (its `size(B)` when msprof gives
/// it), linked to its API call by `connection_id`.
fn copy(ev: &RawEvent<'_>, shift: i128, device: u32) -> Option<DeviceCopy> {
    if !ev.args.contains("MEMCPY_ASYNC") {
        return None;
    }
    let (ts, dur) = (ev.ts?, ev.dur?);
    let args = Parser::new(ev.args.as_bytes()).value(0).ok()?;
    if args.get("Task Type").and_then(Value::as_str) != Some("MEMCPY_ASYNC") {
        return None;
    }
    let start_ns = rebase(ts, shift);
    Some(DeviceCopy {
        start_ns,
        end_ns: start_ns.saturating_add(dur),
        device,
        stream: ev.tid,
        correlation: args
            .get("connection_id")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        bytes: args.get("size(B)").and_then(Value::as_u64).unwrap_or(0),
    })
}

impl HostRecords for AclHostRecords {
    fn replay(&self, each: &mut dyn FnMut(&HostRecord<'_>) -> Result<()>) -> Result<()> {
        let until = Deadline::after(self.budget);
        // Source pids of the `CANN` and `Ascend Hardware` processes (msprof names its processes first).
        let mut cann: HashSet<u64> = HashSet::new();
        let mut hardware: HashSet<u64> = HashSet::new();
        let mut stopped: Option<Error> = None;
        for f in &self.files {
            let r = stream_events(&self.dir, f, &until, |ev| {
                if ev.ph == b'M' {
                    if ev.name == "\"process_name\"" && ev.args.contains("\"CANN\"") {
                        cann.insert(ev.pid);
                    }
                    if ev.name == "\"process_name\"" && ev.args.contains("\"Ascend Hardware\"") {
                        hardware.insert(ev.pid);
                    }
                    return Ok(());
                }
                if ev.ph == b'X' && hardware.contains(&ev.pid) {
                    if let Some(c) = copy(&ev, self.shift, self.device) {
                        if let Err(e) = each(&HostRecord::Copy(c)) {
                            stopped = Some(e);
                            return Err("stopped".into());
                        }
                    }
                    return Ok(());
                }
                if ev.ph != b'X' || !cann.contains(&ev.pid) {
                    return Ok(());
                }
                let name = Parser::new(ev.name.as_bytes()).value(0).ok();
                let Some(name) = name.as_ref().and_then(Value::as_str) else {
                    return Ok(());
                };
                if let Some(a) = api_call(&ev, name, self.shift, self.pid) {
                    if let Err(e) = each(&HostRecord::Api(a)) {
                        stopped = Some(e);
                        return Err("stopped".into());
                    }
                }
                Ok(())
            });
            let Ok(r) = r else {
                continue;
            };
            if let Some(e) = stopped {
                return Err(e);
            }
            if let Err(e) = r {
                return Err(Error::new(
                    Status::Io,
                    format!("msprof timeline {f}: CANN API calls read up to: {e}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timeline with a CANN process (named first, as msprof does), another process's slice, and CANN
    /// slices with and without a level prefix and connection id: the API calls are the CANN slices, on the
    /// host base, with msprof's level and the API's name. The hardware slice of Task Type MEMCPY_ASYNC is a
    /// memory copy with its size and connection id; a slice merely named so is not.
    #[test]
    fn the_cann_slices_of_the_timeline_are_its_api_calls() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("msprof_1.json"),
            r#"[{"name":"process_name","pid":5,"tid":0,"ph":"M","args":{"name":"CANN"}},
{"name":"process_name","pid":6,"tid":0,"ph":"M","args":{"name":"Ascend Hardware"}},
{"name":"Node@launch","pid":5,"tid":77,"ts":"10.500","dur":3.0,"ph":"X","args":{"level":"node","connection_id":4}},
{"name":"MatMul","pid":6,"tid":1,"ts":"11","dur":2,"ph":"X","args":{"connection_id":4}},
{"name":"aclrtSynchronizeStream","pid":5,"tid":77,"ts":"20","dur":1,"ph":"X","args":{"level":"acl"}},
{"name":"MEMCPY_ASYNC","pid":6,"tid":3,"ts":"30","dur":2,"ph":"X","args":{"Task Type":"MEMCPY_ASYNC","size(B)":65536,"connection_id":7}},
{"name":"MEMCPY_ASYNC","pid":6,"tid":3,"ts":"40","dur":2,"ph":"X","args":{"Task Type":"AI_CORE"}},
{"name":"HostToDevice1","pid":5,"tid":77,"ph":"s","cat":"HostToDevice","id":"1","ts":"10.5"}]"#,
        )
        .unwrap();
        let r = AclHostRecords {
            dir: Dir::open(d.path()).unwrap(),
            files: vec!["msprof_1.json".into()],
            shift: 1_000,
            pid: 9,
            device: 2,
            budget: Duration::from_secs(600),
        };
        let mut got = Vec::new();
        let mut copies = Vec::new();
        r.replay(&mut |h| {
            if let HostRecord::Copy(c) = h {
                copies.push((
                    c.start_ns,
                    c.end_ns,
                    c.device,
                    c.stream,
                    c.correlation,
                    c.bytes,
                ));
            }
            if let HostRecord::Api(a) = h {
                got.push((
                    a.level,
                    String::from_utf8(a.name.to_vec()).unwrap(),
                    a.start_ns,
                    a.end_ns,
                    a.pid,
                    a.tid,
                    a.correlation,
                ));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(
            got,
            [
                (ApiLevel::Node, "launch".into(), 11_500, 14_500, 9, 77, 4),
                (
                    ApiLevel::Acl,
                    "aclrtSynchronizeStream".into(),
                    21_000,
                    22_000,
                    9,
                    77,
                    0
                ),
            ]
        );
        assert_eq!(copies, [(31_000, 33_000, 2, 3, 7, 65536)]);
    }
}
