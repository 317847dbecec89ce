//! The tracks of `trace_view.pftrace`, one per JSON lane: a process track per pid, a thread track per
//! (pid, tid), a counter track per counter series. Their uuids are small (1, 2, …, in order of first use) so
//! each event's `track_uuid` is one or two bytes.
//!
//! How a lane becomes a track (see docs/perfetto.md):
//! - the host process's OS threads: `ThreadDescriptor` (pid, tid, name), Perfetto's own thread tracks;
//! - every other lane (the Steps lane, ring lanes, device streams, CANN API threads, Communication, Overlap
//!   Analysis, whose tids are stream ids or a synthetic process's): a named child track of its process's
//!   track, never merged with a sibling of the same name (`SIBLING_MERGE_BEHAVIOR_NONE`, which also keeps
//!   Perfetto's flow binding on it), so two processes' stream 0 never become one thread;
//! - counters: a `CounterDescriptor` track under its process, named `<event name> <arg>` as Perfetto names
//!   a JSON counter's series.
//!
//! Sort indexes become `sibling_order_rank` under an `EXPLICIT` parent. The number of tracks is bounded
//! ([`Tracks::MAX`]); an event on a track past it is left out and counted by the writer.

use super::pb::{
    track_descriptor::{ChildTracksOrdering, SiblingMergeBehavior, StaticOrDynamicName},
    CounterDescriptor, ProcessDescriptor, ThreadDescriptor, TrackDescriptor,
};
/// Tracks by key, with foldhash's per-process random seed.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The first synthetic tid of the host pass (ring lanes, the Steps lane): no OS thread id.
const FIRST_SYNTHETIC_TID: u32 = 0x7ffe_0000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Process { pid: u32 },
    Thread { pid: u32, tid: u32 },
    Counter { pid: u32, name: String },
}

#[derive(Debug, Default, Clone)]
struct Meta {
    name: Option<String>,
    label: Option<String>,
    sort: Option<i32>,
}

#[derive(Debug)]
struct Track {
    kind: Kind,
    meta: Meta,
}

#[derive(Debug)]
pub(super) struct Tracks {
    host_pid: u32,
    list: Vec<Track>,
    processes: HashMap<u32, u32>,
    threads: HashMap<(u32, u32), u32>,
    counters: HashMap<u32, HashMap<String, u32>>,
}

impl Tracks {
    /// At most 1 M tracks (processes, threads, counters).
    pub(super) const MAX: usize = 1 << 20;

    pub(super) fn new(host_pid: u32) -> Tracks {
        Tracks {
            host_pid,
            list: Vec::new(),
            processes: HashMap::default(),
            threads: HashMap::default(),
            counters: HashMap::default(),
        }
    }

    fn add(&mut self, kind: Kind) -> Option<u32> {
        if self.list.len() >= Self::MAX {
            return None;
        }
        self.list.push(Track {
            kind,
            meta: Meta::default(),
        });
        Some(self.list.len() as u32 - 1)
    }

    fn uuid(i: u32) -> u64 {
        i as u64 + 1
    }

    fn process_index(&mut self, pid: u32) -> Option<u32> {
        if let Some(&i) = self.processes.get(&pid) {
            return Some(i);
        }
        let i = self.add(Kind::Process { pid })?;
        self.processes.insert(pid, i);
        Some(i)
    }

    fn thread_index(&mut self, pid: u32, tid: u32) -> Option<u32> {
        if let Some(&i) = self.threads.get(&(pid, tid)) {
            return Some(i);
        }
        self.process_index(pid)?;
        let i = self.add(Kind::Thread { pid, tid })?;
        self.threads.insert((pid, tid), i);
        Some(i)
    }

    /// The uuid of the lane (pid, tid), made on first use; `None` past [`Tracks::MAX`].
    pub(super) fn thread(&mut self, pid: u32, tid: u32) -> Option<u64> {
        self.thread_index(pid, tid).map(Self::uuid)
    }

    /// The uuid of the counter series `name` of `pid` and, when it is new, its descriptor (which must precede
    /// its samples in the file: Perfetto reads counter descriptors as it tokenizes).
    pub(super) fn counter(
        &mut self,
        pid: u32,
        name: &str,
    ) -> Option<(u64, Option<TrackDescriptor>)> {
        if let Some(&i) = self.counters.get(&pid).and_then(|m| m.get(name)) {
            return Some((Self::uuid(i), None));
        }
        let parent = self.process_index(pid)?;
        let i = self.add(Kind::Counter {
            pid,
            name: name.to_string(),
        })?;
        self.counters
            .entry(pid)
            .or_default()
            .insert(name.to_string(), i);
        let d = TrackDescriptor {
            uuid: Some(Self::uuid(i)),
            parent_uuid: Some(Self::uuid(parent)),
            static_or_dynamic_name: Some(StaticOrDynamicName::Name(name.to_string())),
            counter: Some(CounterDescriptor::default()),
            ..Default::default()
        };
        Some((Self::uuid(i), Some(d)))
    }

    /// A process's name, label and sort index (each kept when `None`).
    pub(super) fn set_process(
        &mut self,
        pid: u32,
        name: Option<String>,
        label: Option<String>,
        sort: Option<i32>,
    ) {
        if let Some(i) = self.process_index(pid) {
            self.list[i as usize].meta.merge(name, label, sort);
        }
    }

    /// A lane's name and sort index (each kept when `None`).
    pub(super) fn set_thread(
        &mut self,
        pid: u32,
        tid: u32,
        name: Option<String>,
        sort: Option<i32>,
    ) {
        if let Some(i) = self.thread_index(pid, tid) {
            self.list[i as usize].meta.merge(name, None, sort);
        }
    }

    /// The descriptors of the process and thread tracks, with their final names (counter tracks were
    /// described when made).
    pub(super) fn descriptors(&self) -> impl Iterator<Item = TrackDescriptor> + '_ {
        self.list.iter().enumerate().filter_map(|(i, t)| {
            let uuid = Some(Self::uuid(i as u32));
            let m = &t.meta;
            match &t.kind {
                Kind::Counter { .. } => None,
                // pid 0 is the idle process in Perfetto: a plain named track instead.
                Kind::Process { pid } if *pid == 0 => Some(TrackDescriptor {
                    uuid,
                    static_or_dynamic_name: Some(StaticOrDynamicName::Name(
                        m.name.clone().unwrap_or_else(|| "pid 0".into()),
                    )),
                    child_ordering: Some(ChildTracksOrdering::Explicit as i32),
                    ..Default::default()
                }),
                Kind::Process { pid } => Some(TrackDescriptor {
                    uuid,
                    process: Some(ProcessDescriptor {
                        pid: Some(*pid as i32),
                        process_name: m.name.clone(),
                        process_labels: m.label.iter().cloned().collect(),
                    }),
                    child_ordering: Some(ChildTracksOrdering::Explicit as i32),
                    sibling_order_rank: m.sort,
                    ..Default::default()
                }),
                Kind::Thread { pid, tid }
                    if *pid == self.host_pid
                        && *pid != 0
                        && *tid != 0
                        && *tid < FIRST_SYNTHETIC_TID =>
                {
                    Some(TrackDescriptor {
                        uuid,
                        thread: Some(ThreadDescriptor {
                            pid: Some(*pid as i32),
                            tid: Some(*tid as i64),
                            thread_name: m.name.clone(),
                        }),
                        sibling_order_rank: m.sort,
                        ..Default::default()
                    })
                }
                Kind::Thread { pid, tid } => Some(TrackDescriptor {
                    uuid,
                    parent_uuid: self.processes.get(pid).map(|&p| Self::uuid(p)),
                    static_or_dynamic_name: Some(StaticOrDynamicName::Name(
                        m.name.clone().unwrap_or_else(|| format!("Thread {tid}")),
                    )),
                    sibling_order_rank: m.sort,
                    sibling_merge_behavior: Some(SiblingMergeBehavior::None as i32),
                    ..Default::default()
                }),
            }
        })
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }
}

impl Meta {
    fn merge(&mut self, name: Option<String>, label: Option<String>, sort: Option<i32>) {
        if name.is_some() {
            self.name = name;
        }
        if label.is_some() {
            self.label = label;
        }
        if sort.is_some() {
            self.sort = sort;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_threads_are_threads_and_other_lanes_named_children() {
        let mut t = Tracks::new(100);
        let a = t.thread(100, 7).unwrap();
        let steps = t.thread(100, 0x7fff_fffe).unwrap();
        let dev = t.thread(5_000, 0).unwrap();
        assert_eq!(t.thread(100, 7), Some(a));
        t.set_thread(100, 7, Some("Thread 7 (main)".into()), Some(3));
        t.set_process(100, Some("MindSpore".into()), Some("CPU".into()), Some(1));
        let (c, d) = t.counter(5_000, "NPU MEM allocated KB").unwrap();
        assert!(d.is_some());
        assert_eq!(t.counter(5_000, "NPU MEM allocated KB").unwrap(), (c, None));
        let ds: Vec<_> = t.descriptors().collect();
        let by = |u: u64| ds.iter().find(|d| d.uuid == Some(u)).unwrap();
        let th = by(a).thread.as_ref().unwrap();
        assert_eq!((th.pid, th.tid), (Some(100), Some(7)));
        assert_eq!(th.thread_name.as_deref(), Some("Thread 7 (main)"));
        assert_eq!(by(a).sibling_order_rank, Some(3));
        // The Steps lane and a device stream: named children of their process, never merged.
        for u in [steps, dev] {
            assert!(by(u).thread.is_none());
            assert!(by(u).parent_uuid.is_some());
            assert_eq!(
                by(u).sibling_merge_behavior,
                Some(SiblingMergeBehavior::None as i32)
            );
        }
        // Counters are described when made, not here; every uuid is distinct and small.
        assert!(ds.iter().all(|d| d.uuid != Some(c)));
        let mut u: Vec<_> = ds.iter().map(|d| d.uuid.unwrap()).collect();
        u.sort();
        u.dedup();
        assert_eq!(u.len(), ds.len());
        assert!(u.iter().all(|&x| x <= t.len() as u64));
    }
}
