//! Interning of one packet sequence: event names, categories, debug annotation names and string values each
//! get an id (`iid`) the first time a sequence uses them, sent once in that packet's `InternedData`.
//!
//! The tables of all sequences share one bound ([`Budget`]): past it, strings are written inline instead
//! (`TrackEvent.name`, `DebugAnnotation.string_value`), which readers take the same way, so a trace with
//! millions of distinct names costs bytes, never unbounded memory.

/// A map with foldhash's per-process random seed (fast on short keys; collisions cannot be prepared).
type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What an interned string is (each kind has its own `iid` space, as `InternedData` has one field per kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    EventName,
    Category,
    AnnotationName,
    StringValue,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::EventName,
        Kind::Category,
        Kind::AnnotationName,
        Kind::StringValue,
    ];

    fn index(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// The shared bound of every sequence's tables: entries and key bytes.
#[derive(Debug)]
pub(super) struct Budget {
    entries: usize,
    bytes: usize,
}

impl Budget {
    /// At most 4 M entries and 256 MiB of keys across all sequences.
    pub(super) const MAX_ENTRIES: usize = 4 << 20;
    pub(super) const MAX_BYTES: usize = 256 << 20;

    pub(super) fn new() -> Budget {
        Budget {
            entries: 0,
            bytes: 0,
        }
    }

    /// A budget with no room left (tests).
    #[cfg(test)]
    pub(super) fn spent() -> Budget {
        Budget {
            entries: Self::MAX_ENTRIES,
            bytes: 0,
        }
    }

    fn take(&mut self, key_len: usize) -> bool {
        if self.entries >= Self::MAX_ENTRIES || self.bytes + key_len > Self::MAX_BYTES {
            return false;
        }
        self.entries += 1;
        self.bytes += key_len;
        true
    }
}

/// One sequence's tables: key (the caller's spelling, e.g. a JSON literal) → iid.
#[derive(Debug, Default)]
pub(super) struct Tables {
    maps: [Map<Box<str>, u64>; 4],
}

/// The result of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Interned {
    /// Known in this sequence.
    Known(u64),
    /// New: the caller sends `(iid, value)` in this packet's `InternedData`.
    New(u64),
    /// Over the budget: the caller writes the value inline.
    Inline,
}

impl Tables {
    pub(super) fn get(&mut self, budget: &mut Budget, kind: Kind, key: &str) -> Interned {
        let map = &mut self.maps[kind.index()];
        if let Some(&iid) = map.get(key) {
            return Interned::Known(iid);
        }
        if !budget.take(key.len()) {
            return Interned::Inline;
        }
        // iids start at 1 (0 is "unset" in readers).
        let iid = map.len() as u64 + 1;
        map.insert(key.into(), iid);
        Interned::New(iid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_per_kind_and_stable_and_the_budget_falls_back_to_inline() {
        let mut b = Budget::new();
        let mut t = Tables::default();
        assert_eq!(t.get(&mut b, Kind::EventName, "a"), Interned::New(1));
        assert_eq!(t.get(&mut b, Kind::EventName, "b"), Interned::New(2));
        assert_eq!(t.get(&mut b, Kind::EventName, "a"), Interned::Known(1));
        assert_eq!(t.get(&mut b, Kind::Category, "a"), Interned::New(1));
        // Another sequence has its own ids.
        let mut u = Tables::default();
        assert_eq!(u.get(&mut b, Kind::EventName, "b"), Interned::New(1));
        // A budget that is spent: new strings are inline, known ones stay known.
        b.entries = Budget::MAX_ENTRIES;
        assert_eq!(t.get(&mut b, Kind::EventName, "c"), Interned::Inline);
        assert_eq!(t.get(&mut b, Kind::EventName, "b"), Interned::Known(2));
        b.entries = 0;
        b.bytes = Budget::MAX_BYTES - 1;
        assert_eq!(t.get(&mut b, Kind::StringValue, "xy"), Interned::Inline);
        assert_eq!(t.get(&mut b, Kind::StringValue, "x"), Interned::New(1));
    }
}
