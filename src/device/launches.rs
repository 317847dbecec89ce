//! The host launches of device tasks and the framework op each was launched from: what msprof-analyze's
//! `compare` needs to tie a kernel to a framework op (an `async_npu` flow whose start has the op's `ts` and
//! whose end has the task's). A backend lists its launches (thread, time, a key of its own such as MSPTI's
//! correlation id); the exporter's host pass, which streams the framework ops (host ranges) and keeps none,
//! gives each launch the start of the innermost op of its thread that encloses it; the backend then draws
//! the flows. Memory: one [`Launch`] (32 bytes) per launched task, never a structure per host event.

/// One host launch of a device task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Launch {
    /// The launching thread (the OS thread id, as the host ranges' lanes have it).
    pub tid: u32,
    /// When the launch (the API call) began: CLOCK_REALTIME ns, on the host time base.
    pub ts_ns: u64,
    /// The backend's key for the task (MSPTI: the correlation id).
    pub key: u64,
    /// The start of the innermost framework op enclosing the launch (0: none found yet).
    pub op_ns: u64,
}

/// The launches of one profile, with the host process they were launched from.
#[derive(Debug, Default)]
pub struct Launches {
    list: Vec<Launch>,
    /// The host process's pid in the trace (set by the exporter with the ops).
    pub host_pid: u32,
    by_thread: bool,
    /// The keys of the device tasks, where the source has them apart from its task list (msprof's timeline):
    /// the exporter gives them to the tasks before writing (see [`super::TaskKeys`]).
    pub tasks: super::TaskKeys,
}

impl Launches {
    /// `list` (grown by fallible reservations by the backend), in any order.
    pub fn new(list: Vec<Launch>) -> Launches {
        let mut l = Launches {
            list,
            host_pid: 0,
            by_thread: false,
            tasks: Default::default(),
        };
        l.sort_by_thread();
        l
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    fn sort_by_thread(&mut self) {
        self.list.sort_unstable_by_key(|l| (l.tid, l.ts_ns));
        self.by_thread = true;
    }

    /// A framework op of thread `tid` spans `[begin_ns, end_ns]`: the launches inside it get its start unless
    /// an op that began later (an inner one) already enclosed them. Ops arrive in any order.
    pub fn enclose(&mut self, tid: u32, begin_ns: u64, end_ns: u64) {
        debug_assert!(self.by_thread);
        let i = self
            .list
            .partition_point(|l| (l.tid, l.ts_ns) < (tid, begin_ns));
        for l in self.list[i..]
            .iter_mut()
            .take_while(|l| l.tid == tid && l.ts_ns <= end_ns)
        {
            if l.op_ns == 0 || begin_ns > l.op_ns {
                l.op_ns = begin_ns;
            }
        }
    }

    /// Done with the host pass: keeps the launches that have an op, ordered by key for [`Launches::get`].
    pub fn by_key(mut self) -> Launches {
        self.list.retain(|l| l.op_ns != 0);
        self.list.sort_unstable_by_key(|l| l.key);
        self.list.dedup_by_key(|l| l.key);
        self.by_thread = false;
        self
    }

    /// The launches, in the current order.
    pub fn iter(&self) -> impl Iterator<Item = &Launch> {
        self.list.iter()
    }

    /// The launch of the task `key` when it has a framework op (after [`Launches::by_key`]).
    pub fn get(&self, key: u64) -> Option<&Launch> {
        debug_assert!(!self.by_thread);
        self.list
            .binary_search_by_key(&key, |l| l.key)
            .ok()
            .map(|i| &self.list[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(tid: u32, ts_ns: u64, key: u64) -> Launch {
        Launch {
            tid,
            ts_ns,
            key,
            op_ns: 0,
        }
    }

    #[test]
    fn each_launch_gets_the_innermost_enclosing_op_of_its_thread() {
        let mut l = Launches::new(vec![
            launch(7, 150, 1),
            launch(7, 250, 2),
            launch(8, 150, 3),
            launch(7, 500, 4),
        ]);
        // Inner ops close (and arrive) before the outer one.
        l.enclose(7, 140, 160);
        l.enclose(7, 100, 300);
        l.enclose(8, 200, 300);
        let l = l.by_key();
        assert_eq!(l.get(1).map(|x| x.op_ns), Some(140));
        assert_eq!(l.get(2).map(|x| x.op_ns), Some(100));
        // No op of its thread encloses these.
        assert_eq!(l.get(3), None);
        assert_eq!(l.get(4), None);
        assert_eq!(l.len(), 2);
    }
}
