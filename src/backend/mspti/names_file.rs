//! `FRAMEWORK/mspti.names`: the names the records of `mspti.spool` use, so that a spool outlives its process.
//!
//! A compact record holds name ids of the process's name table (`record::names`), which dies with the process.
//! The `npuprof-mspti` thread appends each name the first time a record of the profile uses it, before the
//! records themselves (both files are flushed per buffer), so `npuprof recover` of a killed process names the
//! kernels it finds in the spool. Frame: id u32 LE, length u32 LE, the bytes.
//!
//! [`NameSource`] is where the export takes names from: the live table (the process that recorded exports) or
//! the names read back from this file (`npuprof recover`).

use super::records::*;
use super::walk::DevRec;
use super::REC;
use crate::record::names;
use std::io::Write;

pub(crate) use crate::layout::MSPTI_NAMES_NAME as NAMES;

/// The name ids a compact record holds (0: none).
pub(crate) fn ids(r: &DevRec) -> [u32; 3] {
    match r.kind {
        KIND_KERNEL | KIND_HCCL | KIND_MARKER => [(r.c >> 32) as u32, r.c as u32, 0],
        KIND_COMMUNICATION => {
            let f = super::walk::CommFields::unpack(r.b, r.c);
            [f.name, f.group, f.alg]
        }
        KIND_API | KIND_ACL_API | KIND_NODE_API | KIND_RUNTIME_API => [r.c as u32, 0, 0],
        _ => [0, 0, 0],
    }
}

/// Appends the names of a profile's records to its `mspti.names` (on the `npuprof-mspti` thread).
pub(crate) struct NamesWriter {
    f: std::io::BufWriter<std::fs::File>,
    /// Bit `id` set: the name is in the file (or was left out for want of room: it is not tried again).
    written: Vec<u64>,
    /// Bytes written (or tried) so far.
    bytes: u64,
}

impl NamesWriter {
    pub(crate) fn new(f: std::fs::File) -> NamesWriter {
        NamesWriter {
            f: std::io::BufWriter::with_capacity(64 << 10, f),
            written: Vec::new(),
            bytes: 0,
        }
    }

    /// Bytes of the file (written or tried).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes the names the compact records `recs` use that the file does not have yet, in at most `room`
    /// more bytes, and flushes. Returns how many names did not fit (left out; a recovery shows them empty).
    pub(crate) fn add(&mut self, recs: &[u8], room: u64) -> std::io::Result<u64> {
        let known = names::count();
        let mut any = false;
        let mut used = 0u64;
        let mut skipped = 0u64;
        for r in recs.chunks_exact(REC).map(DevRec::from_bytes) {
            for id in ids(&r) {
                if id == 0 || id > known {
                    continue;
                }
                let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
                if self.written.len() <= word {
                    // At most names::MAX_NAMES / 64 words (128 KiB).
                    self.written.resize(word + 1, 0);
                }
                if self.written[word] & bit != 0 {
                    continue;
                }
                self.written[word] |= bit;
                if let Some(n) = names::get(id) {
                    let frame = 8 + n.len() as u64;
                    if used + frame > room {
                        skipped += 1;
                        continue;
                    }
                    used += frame;
                    self.bytes += frame;
                    self.f.write_all(&id.to_le_bytes())?;
                    self.f.write_all(&(n.len() as u32).to_le_bytes())?;
                    self.f.write_all(n)?;
                    any = true;
                }
            }
        }
        if any {
            self.f.flush()?;
        }
        Ok(skipped)
    }
}

/// Where the export takes the names of compact records from.
#[derive(Clone)]
pub enum NameSource {
    /// The name table of this process (the process that recorded the profile exports it).
    Process,
    /// Names read back from `mspti.names` (`npuprof recover`): `list[id]`.
    Recovered(Vec<Option<Box<[u8]>>>),
}

impl NameSource {
    /// The name `id` (empty when unknown).
    pub fn get(&self, id: u32) -> &[u8] {
        match self {
            NameSource::Process => names::get(id).unwrap_or(b""),
            NameSource::Recovered(list) => list
                .get(id as usize)
                .and_then(|n| n.as_deref())
                .unwrap_or(b""),
        }
    }

    /// The highest id there may be a name for.
    pub fn count(&self) -> u32 {
        match self {
            NameSource::Process => names::count(),
            NameSource::Recovered(list) => list.len().saturating_sub(1) as u32,
        }
    }

    /// Reads `mspti.names` of `framework` (bounded: ids up to `names::MAX_NAMES`, `names::MAX_BYTES` of names;
    /// a torn last frame, or anything past the bounds, is left out). A missing file gives no names.
    pub fn read(framework: &crate::layout::Place) -> NameSource {
        use std::io::Read;
        let mut list: Vec<Option<Box<[u8]>>> = Vec::new();
        let Ok((f, st)) = framework.dir.open_file(NAMES) else {
            return NameSource::Recovered(list);
        };
        // Read no further than the size when opened, and never more than the name table can hold.
        let cap = (names::MAX_BYTES + 8 * names::MAX_NAMES) as u64;
        let mut r = std::io::BufReader::new(f.take(st.size.min(cap)));
        let mut total = 0usize;
        loop {
            let mut head = [0u8; 8];
            if r.read_exact(&mut head).is_err() {
                break;
            }
            let id = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
            if id == 0 || id > names::MAX_NAMES || total + len > names::MAX_BYTES {
                log::warn!(
                    "{}: a name frame out of bounds (id {id}, {len} bytes); the names after it are not used",
                    framework.shown(NAMES).display()
                );
                break;
            }
            let mut n = vec![0u8; len];
            if r.read_exact(&mut n).is_err() {
                break;
            }
            total += len;
            if list.len() <= id {
                list.resize(id + 1, None);
            }
            list[id] = Some(n.into_boxed_slice());
        }
        NameSource::Recovered(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "directory system calls")]
    fn names_written_once_per_profile_are_read_back_by_id() {
        let d = tempfile::tempdir().unwrap();
        let place = crate::layout::Place::open(d.path()).unwrap();
        let (k, t) = (names::intern(b"KernelA"), names::intern(b"AI_CORE"));
        let api = names::intern(b"aclnnAdd");
        let rec = |kind, c| {
            DevRec {
                kind,
                c,
                ..DevRec::default()
            }
            .to_bytes()
        };
        let mut recs = Vec::new();
        recs.extend(rec(KIND_KERNEL, (k as u64) << 32 | t as u64));
        recs.extend(rec(KIND_KERNEL, (k as u64) << 32 | t as u64));
        recs.extend(rec(KIND_API, api as u64));
        recs.extend(rec(KIND_MEMORY, 7 << 32 | 3));
        let mut w = NamesWriter::new(std::fs::File::create(d.path().join(NAMES)).unwrap());
        assert_eq!(w.add(&recs, u64::MAX).unwrap(), 0);
        assert_eq!(w.add(&recs, u64::MAX).unwrap(), 0);
        // Each name once: three frames.
        let len = std::fs::metadata(d.path().join(NAMES)).unwrap().len();
        assert_eq!(len, 3 * 8 + (7 + 7 + 8));
        // A torn last frame is left out.
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join(NAMES))
            .unwrap();
        (&f).write_all(&[0x3f, 0x42, 0x0f, 0, 200, 0, 0, 0, b'x'])
            .unwrap();
        let src = NameSource::read(&place);
        assert_eq!(src.get(k), b"KernelA");
        assert_eq!(src.get(t), b"AI_CORE");
        assert_eq!(src.get(api), b"aclnnAdd");
        assert_eq!(src.get(999_999), b"");
        assert_eq!(
            src.count() as usize,
            [k, t, api].into_iter().max().unwrap() as usize
        );
    }

    /// The names file stays within the room the cap leaves it: names beyond it are counted, not written.
    #[test]
    #[cfg_attr(miri, ignore = "directory system calls")]
    fn names_beyond_the_room_are_counted_not_written() {
        let d = tempfile::tempdir().unwrap();
        let ids: Vec<u32> = (0..10)
            .map(|i| names::intern(format!("names_room_kernel_{i:02}").as_bytes()))
            .collect();
        let mut recs = Vec::new();
        for &id in &ids {
            recs.extend(
                DevRec {
                    kind: KIND_API,
                    c: id as u64,
                    ..DevRec::default()
                }
                .to_bytes(),
            );
        }
        let mut w = NamesWriter::new(std::fs::File::create(d.path().join(NAMES)).unwrap());
        // Each frame is 8 + 20 bytes: room for three.
        assert_eq!(w.add(&recs, 3 * 28 + 5).unwrap(), 7);
        assert_eq!(w.bytes(), 3 * 28);
        assert_eq!(
            std::fs::metadata(d.path().join(NAMES)).unwrap().len(),
            3 * 28
        );
        // Names left out are not tried again.
        assert_eq!(w.add(&recs, u64::MAX).unwrap(), 0);
        assert_eq!(w.bytes(), 3 * 28);
    }
}
