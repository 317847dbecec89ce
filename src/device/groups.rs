//! The communication groups the process told npuprof of (`npuprof_set_group`): for each HCCL communicator
//! (its raw name, the key of `profiler_metadata.json`'s `parallel_group_info`), the framework's group name,
//! this process's rank in it and the group's global ranks. Only the process knows them (torch_npu reads
//! them from torch.distributed); a backend's collectives name the communicator only. Set outside the record
//! path (a lock is fine), read by the export. Bounded: at most [`MAX_GROUPS`] groups of at most
//! [`MAX_RANKS`] ranks, names of at most [`MAX_NAME`] bytes.

use std::sync::Mutex;

pub const MAX_GROUPS: usize = 1024;
pub const MAX_RANKS: usize = 65536;
pub const MAX_NAME: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// The HCCL communicator's name (the collectives' group).
    pub name: String,
    /// The framework's name for it (`dp`, `tp`, `pp`, `default_group`, ...).
    pub pg_name: String,
    pub group_rank: u32,
    pub global_ranks: Vec<u32>,
}

/// Why a group was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupError {
    /// An empty or too long name, too many ranks, or a rank in the group beyond its size.
    Invalid,
    /// [`MAX_GROUPS`] groups are known already.
    Full,
}

/// A set of groups (the process has one, `GROUPS`).
pub struct Registry(Mutex<Vec<GroupInfo>>);

static GROUPS: Registry = Registry(Mutex::new(Vec::new()));

impl Registry {
    /// Adds or replaces (same `name`) a group.
    pub fn set(&self, g: GroupInfo) -> Result<(), GroupError> {
        if g.name.is_empty()
            || g.name.len() > MAX_NAME
            || g.pg_name.len() > MAX_NAME
            || g.global_ranks.len() > MAX_RANKS
            || (!g.global_ranks.is_empty() && g.group_rank as usize >= g.global_ranks.len())
        {
            return Err(GroupError::Invalid);
        }
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = all.iter_mut().find(|o| o.name == g.name) {
            *old = g;
            return Ok(());
        }
        if all.len() >= MAX_GROUPS {
            return Err(GroupError::Full);
        }
        all.push(g);
        Ok(())
    }

    /// The groups known now.
    pub fn snapshot(&self) -> Vec<GroupInfo> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Adds or replaces a group of the process.
pub fn set(g: GroupInfo) -> Result<(), GroupError> {
    GROUPS.set(g)
}

/// The process's groups known now.
pub fn snapshot() -> Vec<GroupInfo> {
    GROUPS.snapshot()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_validated_replaced_by_name_and_bounded() {
        let g = |name: &str, rank: u32, ranks: Vec<u32>| GroupInfo {
            name: name.into(),
            pg_name: "dp".into(),
            group_rank: rank,
            global_ranks: ranks,
        };
        let r = Registry(Mutex::new(Vec::new()));
        let set = |x| r.set(x);
        assert_eq!(set(g("", 0, vec![0])), Err(GroupError::Invalid));
        assert_eq!(set(g("t-a", 2, vec![0, 1])), Err(GroupError::Invalid));
        set(g("t-a", 0, vec![0, 1])).unwrap();
        set(g("t-a", 1, vec![0, 1])).unwrap();
        assert_eq!(r.snapshot(), [g("t-a", 1, vec![0, 1])]);
        let mut n = 0;
        while set(g(&format!("t-fill{n}"), 0, vec![])).is_ok() {
            n += 1;
        }
        assert_eq!(set(g("t-over", 0, vec![])), Err(GroupError::Full));
        assert_eq!(r.snapshot().len(), MAX_GROUPS);
    }
}
