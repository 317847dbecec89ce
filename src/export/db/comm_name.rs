//! The names msprof gives collective operations in its database: `opType` = `hcom_<op>_` (`hcom_allReduce_`)
//! and `opName` = `<opType>_<last 3 digits of the group's hash>_<index of that type in the group>_1`
//! (`hcom_allReduce__428_0_1`); msprof-analyze parses both (the `__` split, `hcom_receive` as bubble,
//! `send`/`receive` as point-to-point), and names groups by [`double_hash`].

use std::collections::HashMap;

/// msprof-analyze's hash of a raw HCCL group name (`cluster_analyse/common_func/utils.py` `double_hash`): the
/// analysis tables name a group by its decimal value.
pub(crate) fn double_hash(s: &[u8]) -> u64 {
    let (mut h0, mut h1) = (0u32, 0u32);
    // Python iterates characters; group names are ASCII (an invalid byte counts as U+FFFD, as decoding does).
    for c in String::from_utf8_lossy(s).chars() {
        h0 = h0.wrapping_mul(29).wrapping_add(c as u32);
        h1 = h1.wrapping_mul(131).wrapping_add(c as u32);
    }
    ((h0 as u64) << 32) | h1 as u64
}

/// `hcom_<op>_` for an operation name as a backend gives it: `HcclAllReduce` → `hcom_allReduce_`,
/// `hcom_allReduce_` and `hcom_allReduce__428_0_1` → `hcom_allReduce_`; any other name `hcom_<name>_`.
pub(crate) fn op_type(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    let op = if let Some(rest) = name.strip_prefix("hcom_") {
        rest.split("__")
            .next()
            .unwrap_or("")
            .trim_end_matches('_')
            .to_string()
    } else {
        let rest = name.strip_prefix("Hccl").unwrap_or(&name);
        let mut c = rest.chars();
        match c.next() {
            Some(f) => f.to_lowercase().chain(c).collect(),
            None => String::new(),
        }
    };
    format!("hcom_{op}_")
}

/// Numbers the operations of each (type, group) in order, as msprof does.
#[derive(Default)]
pub(super) struct CommNames {
    next: HashMap<(String, Vec<u8>), u64>,
}

impl CommNames {
    /// (`opName`, `opType`) of the next operation `name` in `group`.
    pub(super) fn name(&mut self, name: &[u8], group: &[u8]) -> (String, String) {
        let t = op_type(name);
        let h = double_hash(group).to_string();
        let gid3 = &h[h.len().saturating_sub(3)..];
        let n = self.next.entry((t.clone(), group.to_vec())).or_default();
        let out = (format!("{t}_{gid3}_{n}_1"), t);
        *n += 1;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_msprof() {
        assert_eq!(op_type(b"HcclAllReduce"), "hcom_allReduce_");
        assert_eq!(op_type(b"hcom_allReduce_"), "hcom_allReduce_");
        assert_eq!(op_type(b"hcom_broadcast__123_4_1"), "hcom_broadcast_");
        let mut n = CommNames::default();
        let h = double_hash(b"g").to_string();
        let g3 = &h[h.len() - 3..];
        assert_eq!(
            n.name(b"HcclAllReduce", b"g").0,
            format!("hcom_allReduce__{g3}_0_1")
        );
        assert_eq!(
            n.name(b"HcclAllReduce", b"g").0,
            format!("hcom_allReduce__{g3}_1_1")
        );
        // The Python function: h0 = 29*0 + ord('g'), h1 = 131*0 + ord('g').
        assert_eq!(double_hash(b"g"), (103u64 << 32) | 103);
    }
}
