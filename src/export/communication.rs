//! `ASCEND_PROFILER_OUTPUT/communication.json` and `communication_matrix.json` from the profile's collectives,
//! in the schema msprof-analyze's cluster analysis, advisor and compare read (torch_npu's
//! `_communication_parser.py` writes them from CANN's analysis):
//!
//! * step keys `step<N>` (each op in the host step it started in, else the last step begun before it, else the
//!   first; `step` when there are no steps), then `collective` / `p2p`, then `<op name>@<decimal
//!   double_hash(raw group)>`, with CANN's op names ([`op_names`]) and a `Total Op Info` in every type.
//! * The matrix has, for every op, the self link `"<local>-<local>"` (cluster maps a group's local ranks to
//!   global ones only from those), and a link to the next rank of the ring when the group's ranks are known.
//!
//! What is estimated: the backends give an operation's span and (MSPTI's COMMUNICATION records) its element
//! count and type, not HCCL's tasks. So the transit size is count × element size (the buffer, not the bytes
//! on the wire), the whole operation counts as transit time (wait, synchronization and idle time are 0: the
//! split needs the tasks), the transport is SDMA (intra-node; RDMA is written with zeros), and the large
//! packet ratio is 0. Without a count the size is 0.
//!
//! Both files go within `cap` bytes (the device tables' share of NPUPROF_MAX_DISK_MB): ops beyond it are left
//! out and counted (`communication_ops_cut` in the device metadata).

use super::csv::StepSpan;
use crate::device::{
    data_type_bytes, double_hash, is_p2p, op_names, op_type, Collective, DeviceResult,
};
use crate::device::{GroupInfo, Strings};
use crate::error::{Error, Result, Status};
use crate::format::json;
use crate::layout::{self, AtomicFile, Place};
use std::io::Write;

const MB: f64 = (1u64 << 20) as f64;

/// What writing the files did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Written {
    pub ops: u64,
    /// Ops left out at the byte cap.
    pub cut: u64,
    pub bytes: u64,
}

/// One op, ready to be written.
struct Op {
    key: String,
    name: String,
    start_ns: u64,
    elapse_ms: f64,
    size_mb: f64,
    p2p: bool,
    local: u32,
    /// The next rank of the group's ring (local rank), when the group's ranks are known.
    next: Option<u32>,
}

/// Writes both files for `dev`'s collectives (none when there are none); `rank` is the profile's global rank,
/// `groups` what the process told of its groups.
pub(super) fn write(
    out: &Place,
    dev: &DeviceResult,
    steps: &[StepSpan],
    rank: u32,
    groups: &[GroupInfo],
    cap: u64,
) -> Result<Written> {
    let list = &dev.collectives.list;
    if list.is_empty() {
        return Ok(Written::default());
    }
    let strings = &dev.kernels.strings;
    let names = op_names(list, strings);
    let mut ops: Vec<(Option<u64>, Op)> = Vec::new();
    ops.try_reserve_exact(list.len())
        .map_err(|_| Error::new(Status::Internal, "no memory for the communication ops"))?;
    for (c, name) in list.iter().zip(names) {
        ops.push((
            step_of(steps, c.start_ns),
            op(c, name, strings, rank, groups),
        ));
    }
    ops.sort_by_key(|(s, o)| (*s, o.start_ns));
    let mut comm = AtomicFile::create(out, layout::COMMUNICATION)?;
    let mut matrix = AtomicFile::create(out, layout::COMMUNICATION_MATRIX)?;
    let mut w = Written::default();
    let mut c = String::from("{");
    let mut m = String::from("{");
    let mut left = cap.saturating_sub(4);
    let (mut i, mut first) = (0, true);
    while i < ops.len() {
        let step = ops[i].0;
        let end = i + ops[i..].iter().take_while(|o| o.0 == step).count();
        let step_ops: Vec<&Op> = ops[i..end].iter().map(|o| &o.1).collect();
        i = end;
        let (cs, ms) = step_json(step, &step_ops, &mut left, &mut w);
        if !first {
            c.push(',');
            m.push(',');
        }
        first = false;
        c.push_str(&cs);
        m.push_str(&ms);
        flush(&mut comm, &mut c, out)?;
        flush(&mut matrix, &mut m, out)?;
    }
    c.push('}');
    m.push('}');
    flush(&mut comm, &mut c, out)?;
    flush(&mut matrix, &mut m, out)?;
    w.bytes = cap.saturating_sub(4) - left + 4;
    comm.commit()?;
    matrix.commit()?;
    Ok(w)
}

fn flush(f: &mut AtomicFile, s: &mut String, out: &Place) -> Result<()> {
    f.w.write_all(s.as_bytes())
        .map_err(|e| Error::io("cannot write", &out.shown(layout::COMMUNICATION), &e))?;
    s.clear();
    Ok(())
}

/// The step of an op that started at `ns`: the host step it started in, else the last one begun before it
/// (device work runs after its launch), else the first; `None` without steps.
fn step_of(steps: &[StepSpan], ns: u64) -> Option<u64> {
    let i = steps.partition_point(|s| s.start_ns <= ns);
    steps.get(i.saturating_sub(1)).map(|s| s.step)
}

fn op(c: &Collective, name: String, strings: &Strings, rank: u32, groups: &[GroupInfo]) -> Op {
    let group: &[u8] = &strings.get(c.group).bytes;
    let key = format!("{name}@{}", double_hash(group));
    let known = groups.iter().find(|g| g.name.as_bytes() == group);
    let (local, next) = match known {
        Some(g) if g.global_ranks.len() > 1 => {
            let n = g.global_ranks.len() as u32;
            (g.group_rank, Some((g.group_rank + 1) % n))
        }
        Some(g) => (g.group_rank, None),
        None => (rank, None),
    };
    let size = data_type_bytes(c.data_type).map_or(0, |b| b.saturating_mul(c.count));
    let ty = op_type(&strings.get(c.name).text);
    Op {
        key,
        name,
        start_ns: c.start_ns,
        elapse_ms: c.dur_ns as f64 / 1e6,
        size_mb: size as f64 / MB,
        p2p: is_p2p(&ty),
        local,
        next,
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Bandwidth in GB/s of `mb` MB moved in `ms` ms (msprof-analyze's ratio, 4 decimals; 0 without time).
fn bandwidth(mb: f64, ms: f64) -> f64 {
    if ms > 0.0 {
        round4(mb / ms)
    } else {
        0.0
    }
}

/// Sums of one type's ops (`Total Op Info`).
#[derive(Default)]
struct Total {
    elapse_ms: f64,
    size_mb: f64,
    dist: Vec<(String, u64, f64)>,
}

impl Total {
    fn add(&mut self, o: &Op) {
        self.elapse_ms += o.elapse_ms;
        self.size_mb += o.size_mb;
        if o.size_mb > 0.0 {
            let k = o.size_mb.to_string();
            match self.dist.iter_mut().find(|d| d.0 == k) {
                Some(d) => {
                    d.1 += 1;
                    d.2 += o.elapse_ms;
                }
                None => self.dist.push((k, 1, o.elapse_ms)),
            }
        }
    }
}

/// `Communication Time Info` of a span of `elapse_ms` that is all transit, starting at `start` (µs text).
fn time_info(s: &mut String, start: Option<u64>, elapse_ms: f64) {
    s.push('{');
    if let Some(ns) = start {
        s.push_str("\"Start Timestamp(us)\":");
        json::push_us3(s, ns);
        s.push(',');
    }
    s.push_str(&format!(
        "\"Elapse Time(ms)\":{elapse_ms},\"Transit Time(ms)\":{elapse_ms},\"Wait Time(ms)\":0.0,\
         \"Synchronization Time(ms)\":0.0,\"Idle Time(ms)\":0.0,\"Wait Time Ratio\":0.0,\
         \"Synchronization Time Ratio\":0.0}}"
    ));
}

/// `Communication Bandwidth Info`: SDMA carries `size_mb` in `ms`; RDMA zeros.
fn bandwidth_info(s: &mut String, size_mb: f64, ms: f64, dist: &[(String, u64, f64)]) {
    s.push_str(&format!(
        "{{\"SDMA\":{{\"Transit Size(MB)\":{size_mb},\"Transit Time(ms)\":{ms},\"Bandwidth(GB/s)\":{},\
         \"Large Packet Ratio\":0.0,\"Size Distribution\":{{",
        bandwidth(size_mb, ms)
    ));
    for (i, (k, n, t)) in dist.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("\"{k}\":[{n},{t}]"));
    }
    s.push_str(
        "}},\"RDMA\":{\"Transit Size(MB)\":0.0,\"Transit Time(ms)\":0.0,\"Bandwidth(GB/s)\":0.0,\
         \"Large Packet Ratio\":0.0,\"Size Distribution\":{}}}",
    );
}

/// One matrix link.
fn link(s: &mut String, from: u32, to: u32, transport: &str, o: &Op) {
    s.push_str(&format!(
        "\"{from}-{to}\":{{\"Transport Type\":\"{transport}\",\"Transit Size(MB)\":{},\"Transit Time(ms)\":{},\
         \"Bandwidth(GB/s)\":{},\"Op Name\":",
        o.size_mb,
        o.elapse_ms,
        bandwidth(o.size_mb, o.elapse_ms)
    ));
    s.push('"');
    json::escape_into(s, o.name.as_bytes());
    s.push_str("\"}");
}

/// The `"step<N>": {...}` members of both files for one step's ops; ops that do not fit in `left` bytes are
/// left out and counted in `w.cut`.
fn step_json(step: Option<u64>, ops: &[&Op], left: &mut u64, w: &mut Written) -> (String, String) {
    let key = step.map_or("step".to_string(), |n| format!("step{n}"));
    let mut c = format!("\"{key}\":{{");
    let mut m = c.clone();
    for (i, p2p) in [false, true].into_iter().enumerate() {
        let ty = if p2p { "p2p" } else { "collective" };
        if i > 0 {
            c.push(',');
            m.push(',');
        }
        c.push_str(&format!("\"{ty}\":{{"));
        m.push_str(&format!("\"{ty}\":{{"));
        let mut total = Total::default();
        let mut first = true;
        for o in ops.iter().filter(|o| o.p2p == p2p) {
            let (oc, om) = op_json(o);
            let need = (oc.len() + om.len() + 2) as u64;
            if need > *left {
                w.cut += 1;
                continue;
            }
            *left -= need;
            if !first {
                c.push(',');
                m.push(',');
            }
            first = false;
            c.push_str(&oc);
            m.push_str(&om);
            total.add(o);
            w.ops += 1;
        }
        if !first {
            c.push(',');
        }
        // Always there, even with zeros: compare needs collective → Total Op Info → Communication
        // Bandwidth Info in some step.
        c.push_str("\"Total Op Info\":{\"Communication Time Info\":");
        time_info(&mut c, None, total.elapse_ms);
        c.push_str(",\"Communication Bandwidth Info\":");
        bandwidth_info(&mut c, total.size_mb, total.elapse_ms, &total.dist);
        c.push_str("}}");
        m.push('}');
    }
    c.push('}');
    m.push('}');
    (c, m)
}

/// One op's member of communication.json and of communication_matrix.json.
fn op_json(o: &Op) -> (String, String) {
    let mut c = String::with_capacity(700);
    c.push('"');
    json::escape_into(&mut c, o.key.as_bytes());
    c.push_str("\":{\"Communication Time Info\":");
    time_info(&mut c, Some(o.start_ns), o.elapse_ms);
    c.push_str(",\"Communication Bandwidth Info\":");
    let dist = if o.size_mb > 0.0 {
        vec![(o.size_mb.to_string(), 1, o.elapse_ms)]
    } else {
        Vec::new()
    };
    bandwidth_info(&mut c, o.size_mb, o.elapse_ms, &dist);
    c.push('}');
    let mut m = String::with_capacity(300);
    m.push('"');
    json::escape_into(&mut m, o.key.as_bytes());
    m.push_str("\":{");
    link(&mut m, o.local, o.local, "LOCAL", o);
    if let Some(next) = o.next.filter(|n| *n != o.local) {
        m.push(',');
        link(&mut m, o.local, next, "SDMA", o);
    }
    m.push('}');
    (c, m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn op_of(name: &str, group: &str, count: u64, dur_ns: u64, groups: &[GroupInfo]) -> Op {
        let mut st = Strings::default();
        let c = Collective {
            name: st.intern(name.as_bytes()),
            group: st.intern(group.as_bytes()),
            start_ns: 1_000_000_123,
            dur_ns,
            data_type: 4, // FP32
            count,
            ..Default::default()
        };
        op(&c, format!("{name}_x"), &st, 3, groups)
    }

    /// Issue 18: an op's transit size is count × element size, its bandwidth msprof-analyze's ratio, its key
    /// `<name>@<double_hash(group)>`; its local rank is its rank in a known group (else the global rank),
    /// with a ring link to the next; every type has a Total Op Info; ops beyond the byte cap are counted.
    #[test]
    fn ops_become_the_schema_cluster_reads() {
        let a = op_of("hcom_allReduce_", "g", 262_144, 2_000_000, &[]);
        assert_eq!(a.key, format!("hcom_allReduce__x@{}", double_hash(b"g")));
        assert_eq!(
            (a.size_mb, a.elapse_ms, a.local, a.next),
            (1.0, 2.0, 3, None)
        );
        let known = [GroupInfo {
            name: "g".into(),
            pg_name: "dp".into(),
            group_rank: 1,
            global_ranks: vec![4, 7],
        }];
        let r = op_of("hcom_receive_", "g", 0, 1000, &known);
        assert_eq!((r.local, r.next, r.p2p, r.size_mb), (1, Some(0), true, 0.0));
        let (mut left, mut w) = (u64::MAX, Written::default());
        let (c, m) = step_json(Some(2), &[&a, &r], &mut left, &mut w);
        let c: Value = serde_json::from_str(&format!("{{{c}}}")).unwrap();
        let m: Value = serde_json::from_str(&format!("{{{m}}}")).unwrap();
        let ca = &c["step2"]["collective"][&a.key];
        assert_eq!(ca["Communication Time Info"]["Elapse Time(ms)"], 2.0);
        assert_eq!(
            ca["Communication Time Info"]["Start Timestamp(us)"],
            1_000_000.123
        );
        assert_eq!(
            ca["Communication Bandwidth Info"]["SDMA"]["Bandwidth(GB/s)"],
            0.5
        );
        assert_eq!(
            ca["Communication Bandwidth Info"]["SDMA"]["Size Distribution"]["1"][0],
            1
        );
        for ty in ["collective", "p2p"] {
            assert!(
                c["step2"][ty]["Total Op Info"]["Communication Bandwidth Info"]["SDMA"].is_object()
            );
        }
        assert_eq!(
            m["step2"]["collective"][&a.key]["3-3"]["Op Name"],
            "hcom_allReduce__x"
        );
        let links = m["step2"]["p2p"][&r.key].as_object().unwrap();
        assert_eq!(links.keys().collect::<Vec<_>>(), ["1-0", "1-1"]);
        assert_eq!((w.ops, w.cut), (2, 0));
        let mut small = 100;
        let mut w = Written::default();
        step_json(Some(2), &[&a, &r], &mut small, &mut w);
        assert_eq!((w.ops, w.cut), (0, 2));
    }

    #[test]
    fn ops_go_to_the_step_they_started_in_or_the_last_begun_before() {
        let steps = [
            StepSpan {
                step: 1,
                start_ns: 100,
                end_ns: 200,
            },
            StepSpan {
                step: 2,
                start_ns: 300,
                end_ns: 400,
            },
        ];
        let got: Vec<Option<u64>> = [50, 150, 250, 350, 999]
            .iter()
            .map(|&n| step_of(&steps, n))
            .collect();
        assert_eq!(got, [Some(1), Some(1), Some(1), Some(2), Some(2)]);
        assert_eq!(step_of(&[], 5), None);
    }
}
