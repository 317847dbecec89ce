//! Collective communication operations (HCCL): one per operation a rank took part in, the unit of
//! `communication.json`, `communication_matrix.json` and the database's `COMMUNICATION_OP`. Bounded as the
//! kernels are (`NPUPROF_MAX_DEVICE_RECORDS`); their strings are the profile's [`Strings`](super::Strings)
//! (the ones in [`Kernels`](super::Kernels)).

use super::strings::Sym;

/// One collective operation on one rank's device.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Collective {
    /// The operation's name as the backend gives it (`hcom_allReduce_`, `HcclAllReduce`, ...).
    pub name: Sym,
    /// The communicator (HCCL group) name, raw: the key of `parallel_group_info`; empty when unknown.
    pub group: Sym,
    /// HCCL's algorithm (`RING`, `MESH`, ...); empty when unknown.
    pub alg: Sym,
    /// CLOCK_REALTIME ns, on the host time base.
    pub start_ns: u64,
    pub dur_ns: u64,
    /// Element type, as MSPTI's `msptiCommunicationDataType` numbers it (`DATA_TYPE_UNKNOWN` when unknown).
    pub data_type: u32,
    /// Elements moved (0 when unknown).
    pub count: u64,
    pub device: u32,
    pub stream_id: u32,
    /// The host API call that issued it (MSPTI's correlation id; 0 when unknown).
    pub correlation: u64,
}

/// `msptiCommunicationDataType`'s `INVALID_TYPE`: the element type is not known.
pub const DATA_TYPE_UNKNOWN: u32 = 0xFFFF;

/// Bytes per element of an `msptiCommunicationDataType` (the published header's numbering), `None` when
/// unknown.
pub fn data_type_bytes(t: u32) -> Option<u64> {
    Some(match t {
        0 | 7 => 1,          // INT8, UINT8
        1 | 3 | 8 | 11 => 2, // INT16, FP16, UINT16, BFP16
        2 | 4 | 9 => 4,      // INT32, FP32, UINT32
        5 | 6 | 10 => 8,     // INT64, UINT64, FP64
        12 => 16,            // INT128
        14..=17 => 1,        // HIF8, FP8E4M3, FP8E5M2, FP8E8M0
        _ => return None,
    })
}

/// msprof-analyze's `double_hash` (`cluster_analyse/common_func/utils.py`): two 32-bit polynomial hashes
/// (primes 29 and 131) over the characters of `s`, packed `(h29 << 32) | h131`. The decimal value of the raw
/// group name is the `@<group>` of communication.json and the key cluster matches `parallel_group_info`
/// with. Python hashes code points: `s` is taken as UTF-8 text (invalid bytes as U+FFFD).
pub fn double_hash(s: &[u8]) -> u64 {
    let (mut a, mut b) = (0u32, 0u32);
    for ch in String::from_utf8_lossy(s).chars() {
        a = a.wrapping_mul(29).wrapping_add(ch as u32);
        b = b.wrapping_mul(131).wrapping_add(ch as u32);
    }
    (u64::from(a) << 32) | u64::from(b)
}

/// CANN's op type of a collective (`hcom_allReduce_`), from the name a backend gives: CANN's own names
/// (`hcom_allReduce_`, `hcom_allReduce__428_0_1`) keep their type; HCCL API names (`HcclAllReduce`) and bare
/// ones (`allReduce`) become `hcom_<op>_` with the op's first letter in lower case, as msprof writes them.
pub fn op_type(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("hcom_") {
        let op = rest
            .split("__")
            .next()
            .unwrap_or(rest)
            .trim_end_matches('_');
        return format!("hcom_{op}_");
    }
    let op = name.strip_prefix("Hccl").unwrap_or(name);
    let mut c = op.chars();
    match c.next() {
        Some(f) => format!("hcom_{}{}_", f.to_ascii_lowercase(), c.as_str()),
        None => "hcom_unknown_".to_string(),
    }
}

/// Whether a collective is point-to-point (torch_npu's rule: `hcom_send`, `hcom_receive`,
/// `hcom_batchsendrecv`); the others are `collective` in communication.json.
pub fn is_p2p(op_type: &str) -> bool {
    let l = op_type.to_ascii_lowercase();
    ["hcom_send", "hcom_receive", "hcom_batchsendrecv"]
        .iter()
        .any(|p| l.starts_with(p))
}

/// Whether `name` is a whole CANN op name: `hcom_<op>__<digits>_<digits>_<digits>`.
fn is_cann_op_name(name: &str) -> bool {
    let Some((ty, ids)) = name.strip_prefix("hcom_").and_then(|r| r.split_once("__")) else {
        return false;
    };
    let parts: Vec<&str> = ids.split('_').collect();
    !ty.is_empty()
        && parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The op names of `list` as CANN writes them (msprof, and msprof-analyze's mstx2commop):
/// `<op type>_<last 3 digits of double_hash(group)>_<n>_1`, `n` counting the ops of that type in that group
/// in start order (`hcom_allReduce__428_0_1`). A backend name that already is such a name is kept.
/// One name per collective, in list order.
pub fn op_names(list: &[Collective], strings: &super::Strings) -> Vec<String> {
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by_key(|&i| list[i].start_ns);
    let mut next: std::collections::HashMap<(Sym, String), u64> = Default::default();
    let mut names = vec![String::new(); list.len()];
    for i in order {
        let c = &list[i];
        let raw = &*strings.get(c.name).text;
        if is_cann_op_name(raw) {
            names[i] = raw.to_string();
            continue;
        }
        let ty = op_type(raw);
        let hash = double_hash(&strings.get(c.group).bytes).to_string();
        let gid = &hash[hash.len().saturating_sub(3)..];
        let n = next.entry((c.group, ty.clone())).or_insert(0);
        names[i] = format!("{ty}_{gid}_{n}_1");
        *n += 1;
    }
    names
}

/// Collectives from the communication rows of `kernels` (for a backend whose device data has no collective
/// records: msprof's op_summary and timeline give HCCL ops as tasks, without group, count or type).
pub fn from_kernels(kernels: &super::Kernels, device: u32, limit: usize) -> Collectives {
    let mut out = Collectives::with_limit(limit);
    for k in kernels.list.iter().filter(|k| kernels.is_communication(k)) {
        out.add(Collective {
            name: k.name,
            start_ns: k.start_ns,
            dur_ns: k.dur_ns,
            stream_id: k.stream_id,
            device,
            data_type: DATA_TYPE_UNKNOWN,
            correlation: k.correlation as u64,
            ..Default::default()
        });
    }
    out
}

/// The collective operations of one profile, bounded as every device record list is.
pub type Collectives = super::Bounded<Collective>;

impl Collectives {
    /// Gives the collectives whose group the backend did not name (msprof's op_summary) the process's
    /// group, when it told exactly one (`npuprof_set_group`): names and keys are then made from it.
    pub fn default_group(&mut self, strings: &mut super::Strings, groups: &[super::GroupInfo]) {
        let [only] = groups else {
            return;
        };
        let g = strings.intern(only.name.as_bytes());
        for c in self.list.iter_mut().filter(|c| c.group == Sym::default()) {
            c.group = g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `double_hash("group0")` by msprof-analyze 26.2.0's own function.
    const DOUBLE_HASH_GROUP0: u64 = 9432122931104976425;

    /// The values msprof-analyze 26.2.0's own `double_hash` gives (computed with it:
    /// `from msprof_analyze.cluster_analyse.common_func.utils import double_hash`).
    #[test]
    fn double_hash_matches_msprof_analyze() {
        assert_eq!(
            double_hash(b"10.0.0.1%eth0_60000_0_1765000000000000"),
            17152432129636663194
        );
        assert_eq!(double_hash(b"group0"), DOUBLE_HASH_GROUP0);
        assert_eq!(double_hash(b""), 0);
    }

    #[test]
    fn op_names_are_cann_names_counted_per_group_and_type() {
        let mut st = super::super::Strings::default();
        let g = st.intern(b"group0");
        let ar = st.intern(b"HcclAllReduce");
        let fake = st.intern(b"hcom_allReduce__1_1");
        let cann = st.intern(b"hcom_broadcast__999_4_1");
        let op = |name, start_ns| Collective {
            name,
            group: g,
            start_ns,
            ..Default::default()
        };
        let list = [op(ar, 30), op(fake, 10), op(cann, 20), op(ar, 40)];
        let gid = DOUBLE_HASH_GROUP0.to_string();
        let gid = &gid[gid.len() - 3..];
        assert_eq!(
            op_names(&list, &st),
            [
                format!("hcom_allReduce__{gid}_1_1"),
                format!("hcom_allReduce__{gid}_0_1"),
                "hcom_broadcast__999_4_1".to_string(),
                format!("hcom_allReduce__{gid}_2_1"),
            ]
        );
        assert_eq!(op_type("hcom_receive_"), "hcom_receive_");
        assert_eq!(op_type("allGather"), "hcom_allGather_");
        assert!(
            is_p2p("hcom_receive_") && is_p2p("hcom_BatchSendRecv_") && !is_p2p("hcom_allReduce_")
        );
    }

    #[test]
    fn element_sizes_follow_the_published_numbering() {
        assert_eq!(data_type_bytes(3), Some(2)); // FP16
        assert_eq!(data_type_bytes(4), Some(4)); // FP32
        assert_eq!(data_type_bytes(11), Some(2)); // BFP16
        assert_eq!(data_type_bytes(13), None); // not assigned
        assert_eq!(data_type_bytes(DATA_TYPE_UNKNOWN), None);
    }
}
