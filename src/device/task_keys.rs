//! The keys of device tasks (the connection id a task shares with the API call that launched it) from a
//! source apart from the task list, and the linking of tasks to them. msprof's op_summary, where the aclprof
//! backend's kernels come from, has no connection id; its timeline gives one to each device task's slice. A
//! task is found by its start and name, which both files print from the same data; a start and name that two
//! slices with different keys share is ambiguous and links nothing. Memory: 24 bytes per slice, bounded by
//! the collector.

use super::{Collectives, Kernels};

/// One device task's slice: where it starts, its name's hash, its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TaskKey {
    /// On the host time base (ns), as the kernels' `start_ns`.
    pub start_ns: u64,
    /// [`name_hash`] of the task's name.
    pub name: u64,
    pub key: u64,
}

/// The keys of a profile's device tasks, ordered by start and name.
#[derive(Debug, Default)]
pub struct TaskKeys {
    list: Vec<TaskKey>,
}

/// FNV-1a's starting state.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a of `bytes`, continuing from `state` ([`FNV_OFFSET`] to begin): a fast hash of short keys we wrote
/// ourselves (no resistance to chosen keys needed).
pub fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(state, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// FNV-1a of a task's name (its bytes, unescaped).
pub fn name_hash(name: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET, name)
}

impl TaskKeys {
    /// `list` in any order; starts and names shared by different keys are dropped (in place: no second list).
    pub fn new(mut list: Vec<TaskKey>) -> TaskKeys {
        list.sort_unstable();
        list.dedup();
        let at = |l: &TaskKey| (l.start_ns, l.name);
        let mut kept = 0;
        let mut i = 0;
        while i < list.len() {
            let run = list[i..]
                .iter()
                .take_while(|l| at(l) == at(&list[i]))
                .count();
            if run == 1 {
                list[kept] = list[i];
                kept += 1;
            }
            i += run;
        }
        list.truncate(kept);
        TaskKeys { list }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The key of the task named `name` (its [`name_hash`]) that starts at `start_ns`.
    pub fn find(&self, start_ns: u64, name: u64) -> Option<u64> {
        let i = self
            .list
            .binary_search_by(|l| (l.start_ns, l.name).cmp(&(start_ns, name)))
            .ok()?;
        Some(self.list[i].key)
    }

    /// Gives the kernels and collectives that have no correlation yet the key of their task; returns how many
    /// kernels got one.
    pub fn link(&self, kernels: &mut Kernels, collectives: &mut Collectives) -> u64 {
        if self.is_empty() {
            return 0;
        }
        // The names' hashes, once per distinct string.
        let hashes: Vec<u64> = kernels
            .strings
            .iter()
            .map(|s| name_hash(&s.bytes))
            .collect();
        let strings = &kernels.strings;
        // A symbol of another table has no name here: a hash no slice has.
        let hash_of = |s: super::Sym| hashes.get(strings.index_of(s)).copied().unwrap_or(0);
        let mut linked = 0;
        for k in kernels.list.iter_mut().filter(|k| k.correlation == 0) {
            if let Some(key) = self.find(k.start_ns, hash_of(k.name)) {
                // The database keeps a connection id's low 32 bits, as CANN numbers them.
                k.correlation = key as u32;
                linked += 1;
            }
        }
        for c in collectives.list.iter_mut().filter(|c| c.correlation == 0) {
            if let Some(key) = self.find(c.start_ns, hash_of(c.name)) {
                c.correlation = key;
            }
        }
        linked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Collective, Kernel};

    /// Tasks get the key of the slice with their start and name; a task whose start and name two slices with
    /// different keys share, one with no slice, and one that has a correlation already are left as they are.
    #[test]
    fn tasks_get_the_key_of_their_start_and_name_unless_ambiguous() {
        let mut k = Kernels::default();
        let mut c = Collectives::default();
        for (name, start, corr) in [
            ("MatMul_1", 100, 0),
            ("Add_2", 100, 0),
            ("MatMul_1", 200, 0),
            ("Cast_3", 300, 0),
            ("Gelu_4", 400, 9),
        ] {
            k.push(
                name.as_bytes(),
                "op",
                "AI_CORE",
                Kernel {
                    start_ns: start,
                    correlation: corr,
                    ..Default::default()
                },
            );
        }
        let hcom = k.strings.intern(b"hcom_allReduce__1_1");
        c.add(Collective {
            name: hcom,
            start_ns: 500,
            ..Default::default()
        });
        let key = |n: &str, start_ns, key| TaskKey {
            start_ns,
            name: name_hash(n.as_bytes()),
            key,
        };
        let keys = TaskKeys::new(vec![
            key("Add_2", 100, 2),
            key("MatMul_1", 100, 1),
            key("MatMul_1", 200, 3),
            key("MatMul_1", 200, 4),
            key("Gelu_4", 400, 5),
            key("hcom_allReduce__1_1", 500, 6),
            key("Add_2", 100, 2),
        ]);
        assert_eq!(keys.link(&mut k, &mut c), 2);
        let corr: Vec<u32> = k.list.iter().map(|x| x.correlation).collect();
        assert_eq!(corr, [1, 2, 0, 0, 9]);
        assert_eq!(c.list[0].correlation, 6);
    }
}
