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

/// The collective operations of one profile, at most `limit` of them; beyond it (or without memory for
/// more) they are counted in `cut`, as kernels are.
#[derive(Debug)]
pub struct Collectives {
    pub list: Vec<Collective>,
    limit: usize,
    pub cut: u64,
}

impl Default for Collectives {
    fn default() -> Self {
        Collectives::with_limit(crate::config::DEFAULT_MAX_DEVICE_RECORDS as usize)
    }
}

impl Collectives {
    pub fn with_limit(limit: usize) -> Self {
        Collectives {
            list: Vec::new(),
            limit,
            cut: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Adds `c` if there is room (the list grows by fallible reservations); else counts it in `cut`.
    pub fn add(&mut self, c: Collective) -> bool {
        let n = self.list.len();
        let ok = n < self.limit
            && (n < self.list.capacity()
                || self
                    .list
                    .try_reserve_exact(n.max(256).min(self.limit - n))
                    .is_ok());
        if ok {
            self.list.push(c);
        } else {
            self.cut += 1;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectives_beyond_the_limit_are_counted_not_kept() {
        let mut c = Collectives::with_limit(2);
        for i in 0..4 {
            c.add(Collective {
                start_ns: i,
                ..Default::default()
            });
        }
        assert_eq!((c.len(), c.cut), (2, 2));
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
