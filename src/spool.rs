//! The binary spool: what the drain thread appends while a profile runs, and what the exporters (or a
//! recovery after a crash) read back.
//!
//! ```text
//! file   := "NPUSPOOL" version:u32 reserved:u32 frame*
//! frame  := kind:u32 len:u32 payload[len] check:u32      (little endian; check = hash of kind, len, payload)
//! ```
//! Frames are appended whole; a crash can only leave a partial last frame, which the reader reports as
//! truncation and skips. The reader never panics and never loops on corrupt input: every length is checked
//! against what is left of the file and against [`MAX_FRAME`].

use crate::record::Record;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};

pub const MAGIC: &[u8; 8] = b"NPUSPOOL";
pub const VERSION: u32 = 1;
pub const MAX_FRAME: u32 = 64 << 20;

pub mod frame {
    /// `key=value` lines describing the profile.
    pub const START: u32 = 1;
    /// id:u32, name bytes
    pub const NAME: u32 = 2;
    /// ring:u32 epoch:u32 tid:u32, thread name bytes
    pub const THREAD: u32 = 3;
    /// ring:u32 epoch:u32, then 16-byte records (ts:u64 meta:u64)
    pub const RECORDS: u32 = 4;
    /// `key=value` lines: stop tick, clock conversion, counters
    pub const STOP: u32 = 5;
    /// `key=value` lines: the drop counters so far and the tick they were taken at (about every second
    /// while recording), so a profile recovered after a crash reports its drops as of the last one.
    pub const COUNTERS: u32 = 6;
}

/// Keys of the START frame that carry the effective configuration: `env.<VARIABLE>=<value>`, in the
/// variables' own spelling, so `npuprof recover` rebuilds the configuration the process ran with.
pub const CONFIG_PREFIX: &str = "env.";

/// A fast 32-bit check over whole 8-byte words (plus a tail); detects torn and corrupted frames.
pub fn check(kind: u32, payload: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ ((kind as u64) << 32 | payload.len() as u64);
    let mut chunks = payload.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
    }
    for &b in chunks.remainder() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 32)) as u32
}

/// The check a frame of `kind` with `payload` carries (as [`Writer`] computes it: the header part of NAME,
/// THREAD and RECORDS frames hashed apart from the rest).
pub fn frame_check(kind: u32, payload: &[u8]) -> u32 {
    let split = match kind {
        frame::NAME => 4,
        frame::THREAD => 12,
        frame::RECORDS => 8,
        _ => usize::MAX,
    };
    let mut h = check(kind, &[]);
    if payload.len() >= split {
        let (a, b) = payload.split_at(split);
        for p in [a, b] {
            h = h.rotate_left(7) ^ check(kind, p);
        }
    } else {
        h = h.rotate_left(7) ^ check(kind, payload);
    }
    h
}

pub struct Writer {
    w: BufWriter<File>,
    bytes: u64,
}

impl Writer {
    pub fn new(file: File) -> io::Result<Writer> {
        let mut w = BufWriter::with_capacity(256 << 10, file);
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        w.write_all(&0u32.to_le_bytes())?;
        Ok(Writer { w, bytes: 16 })
    }

    /// Bytes written so far (including buffered ones).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn frame_parts(&mut self, kind: u32, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len32 = u32::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_FRAME)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "spool frame too large"))?;
        // The check needs the payload contiguous; frames with several parts are small (names, threads)
        // except RECORDS, whose header is hashed separately and combined.
        let mut h = check(kind, &[]);
        for p in parts {
            h = h.rotate_left(7) ^ check(kind, p);
        }
        self.w.write_all(&kind.to_le_bytes())?;
        self.w.write_all(&len32.to_le_bytes())?;
        for p in parts {
            self.w.write_all(p)?;
        }
        self.w.write_all(&h.to_le_bytes())?;
        self.bytes += 12 + len as u64;
        Ok(())
    }

    pub fn start(&mut self, kv: &BTreeMap<String, String>) -> io::Result<()> {
        self.frame_parts(frame::START, &[kv_encode(kv).as_bytes()])
    }

    pub fn stop(&mut self, kv: &BTreeMap<String, String>) -> io::Result<()> {
        self.frame_parts(frame::STOP, &[kv_encode(kv).as_bytes()])
    }

    pub fn counters(&mut self, kv: &BTreeMap<String, String>) -> io::Result<()> {
        self.frame_parts(frame::COUNTERS, &[kv_encode(kv).as_bytes()])
    }

    pub fn name(&mut self, id: u32, name: &[u8]) -> io::Result<()> {
        // Names longer than a frame are cut (a 64 MiB annotation name is not useful in a trace).
        let name = &name[..name.len().min(MAX_FRAME as usize - 4)];
        self.frame_parts(frame::NAME, &[&id.to_le_bytes(), name])
    }

    pub fn thread(&mut self, ring: u32, epoch: u32, tid: u32, name: &[u8]) -> io::Result<()> {
        let mut hdr = [0u8; 12];
        hdr[..4].copy_from_slice(&ring.to_le_bytes());
        hdr[4..8].copy_from_slice(&epoch.to_le_bytes());
        hdr[8..].copy_from_slice(&tid.to_le_bytes());
        self.frame_parts(frame::THREAD, &[&hdr, name])
    }

    pub fn records(&mut self, ring: u32, epoch: u32, recs: &[Record]) -> io::Result<()> {
        const PER: usize = (MAX_FRAME as usize - 8) / 16;
        for chunk in recs.chunks(PER) {
            let mut hdr = [0u8; 8];
            hdr[..4].copy_from_slice(&ring.to_le_bytes());
            hdr[4..].copy_from_slice(&epoch.to_le_bytes());
            // SAFETY: Record is repr(C) of two u64 with no padding; viewing it as bytes is sound. The spool is
            // little endian: on a big-endian host this would need a swap (no such Ascend host exists).
            #[cfg(target_endian = "little")]
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    chunk.as_ptr() as *const u8,
                    std::mem::size_of_val(chunk),
                )
            };
            self.frame_parts(frame::RECORDS, &[&hdr, bytes])?;
        }
        Ok(())
    }

    /// Flushes buffered frames to the file (not to the disk).
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Flushes and syncs; the spool is complete.
    pub fn finish(mut self) -> io::Result<()> {
        self.w.flush()?;
        self.w.get_ref().sync_data()
    }
}

pub fn kv_encode(kv: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (k, v) in kv {
        // One line per key: a newline or CR in a value (a path may hold one) is written as `\n` / `\r`, a
        // backslash as `\\`.
        s.push_str(k);
        s.push('=');
        s.push_str(
            &v.replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('\r', "\\r"),
        );
        s.push('\n');
    }
    s
}

pub fn kv_decode(b: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(b)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), unescape(v)))
        .collect()
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut it = v.chars();
    while let Some(c) = it.next() {
        match (c, it.clone().next()) {
            ('\\', Some('n')) => {
                out.push('\n');
                it.next();
            }
            ('\\', Some('r')) => {
                out.push('\r');
                it.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                it.next();
            }
            _ => out.push(c),
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Start(BTreeMap<String, String>),
    Name(u32, Vec<u8>),
    Thread {
        ring: u32,
        epoch: u32,
        tid: u32,
        name: Vec<u8>,
    },
    Records {
        ring: u32,
        epoch: u32,
        records: Vec<Record>,
    },
    Stop(BTreeMap<String, String>),
    Counters(BTreeMap<String, String>),
    Unknown(u32),
}

/// Why reading ended early, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    BadHeader,
    /// A frame was cut short or failed its check at this byte offset; everything before it was read.
    TornFrame(u64),
}

pub struct Reader<R: Read> {
    r: R,
    remaining: u64,
    offset: u64,
    buf: Vec<u8>,
    pub damage: Option<Damage>,
    done: bool,
}

impl Reader<BufReader<File>> {
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        let f = File::open(path)?;
        let len = f.metadata()?.len();
        Ok(Reader::new(BufReader::with_capacity(256 << 10, f), len))
    }
}

impl<R: Read> Reader<R> {
    pub fn new(mut r: R, len: u64) -> Self {
        let mut hdr = [0u8; 16];
        let ok = len >= 16
            && r.read_exact(&mut hdr).is_ok()
            && &hdr[..8] == MAGIC
            && u32::from_le_bytes(hdr[8..12].try_into().unwrap_or([0; 4])) == VERSION;
        Reader {
            r,
            remaining: len.saturating_sub(16),
            offset: 16,
            buf: Vec::new(),
            damage: (!ok).then_some(Damage::BadHeader),
            done: !ok,
        }
    }

    /// The next intact frame; `None` at the end or at the first damaged frame (see `damage`).
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.done {
            return None;
        }
        if self.remaining == 0 {
            self.done = true;
            return None;
        }
        let torn = |s: &mut Self| {
            s.damage = Some(Damage::TornFrame(s.offset));
            s.done = true;
            None
        };
        if self.remaining < 12 {
            return torn(self);
        }
        let mut h = [0u8; 8];
        if self.r.read_exact(&mut h).is_err() {
            return torn(self);
        }
        let kind = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if len > MAX_FRAME || len as u64 + 12 > self.remaining {
            return torn(self);
        }
        self.buf.clear();
        self.buf.resize(len as usize + 4, 0);
        if self.r.read_exact(&mut self.buf).is_err() {
            return torn(self);
        }
        let (payload, c) = self.buf.split_at(len as usize);
        let stored = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        if frame_check(kind, payload) != stored {
            return torn(self);
        }
        self.remaining -= len as u64 + 12;
        self.offset += len as u64 + 12;
        let u = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(match kind {
            frame::START => Frame::Start(kv_decode(payload)),
            frame::STOP => Frame::Stop(kv_decode(payload)),
            frame::COUNTERS => Frame::Counters(kv_decode(payload)),
            frame::NAME if len >= 4 => Frame::Name(u(payload, 0), payload[4..].to_vec()),
            frame::THREAD if len >= 12 => Frame::Thread {
                ring: u(payload, 0),
                epoch: u(payload, 4),
                tid: u(payload, 8),
                name: payload[12..].to_vec(),
            },
            frame::RECORDS if len >= 8 && (len - 8) % 16 == 0 => {
                let body = &payload[8..];
                let records = body
                    .chunks_exact(16)
                    .map(|c| Record {
                        ts: u64::from_le_bytes(c[..8].try_into().unwrap_or([0; 8])),
                        meta: u64::from_le_bytes(c[8..].try_into().unwrap_or([0; 8])),
                    })
                    .collect();
                Frame::Records {
                    ring: u(payload, 0),
                    epoch: u(payload, 4),
                    records,
                }
            }
            other => Frame::Unknown(other),
        })
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Frame;
    fn next(&mut self) -> Option<Frame> {
        self.next_frame()
    }
}

/// Who holds a spool's writer lock (an advisory `flock` the writing process holds from its first frame
/// until its export ends).
#[derive(Debug)]
pub enum Lock {
    /// We hold it now (until the file is closed): no live process writes this spool.
    Acquired,
    /// Another open file description holds it: a live process is writing or exporting this spool.
    Busy,
    /// The filesystem does not support `flock` (the error says why).
    Unsupported(io::Error),
}

/// Takes the spool's writer lock without waiting (`flock(LOCK_EX | LOCK_NB)`). A lock belongs to the open
/// file description: it lasts until every descriptor of it (dups, a forked child's copy) is closed.
pub fn try_lock(f: &File) -> Lock {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Lock::Acquired;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Lock::Busy,
            _ => return Lock::Unsupported(e),
        }
    }
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`, in clock ticks since boot): with the pid
/// it names one process for good (a pid reused later has another start time). `None` if there is no such
/// process.
pub fn process_start_time(pid: u32) -> Option<u64> {
    use std::io::Read as _;
    let f = File::open(format!("/proc/{pid}/stat")).ok()?;
    // Bounded: the line is short (the command name is at most 16 bytes).
    let mut b = Vec::with_capacity(1024);
    f.take(4096).read_to_end(&mut b).ok()?;
    // The command name (field 2) is in parentheses and may contain anything: fields start after the last ')'.
    let close = b.iter().rposition(|&c| c == b')')?;
    let rest = std::str::from_utf8(&b[close + 1..]).ok()?;
    // Field 3 is the first after ')': field 22 is the 20th.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_sample(path: &std::path::Path) -> Vec<Frame> {
        let mut w = Writer::new(File::create(path).unwrap()).unwrap();
        let mut kv = BTreeMap::new();
        kv.insert("gen".to_string(), "3".to_string());
        w.start(&kv).unwrap();
        w.name(7, b"na\xffme").unwrap();
        w.thread(0, 1, 1234, b"worker").unwrap();
        let recs: Vec<Record> = (0..100).map(|i| Record { ts: i, meta: i * 3 }).collect();
        w.records(0, 1, &recs).unwrap();
        w.counters(&kv).unwrap();
        w.stop(&kv).unwrap();
        w.finish().unwrap();
        vec![
            Frame::Start(kv.clone()),
            Frame::Name(7, b"na\xffme".to_vec()),
            Frame::Thread {
                ring: 0,
                epoch: 1,
                tid: 1234,
                name: b"worker".to_vec(),
            },
            Frame::Records {
                ring: 0,
                epoch: 1,
                records: recs,
            },
            Frame::Counters(kv.clone()),
            Frame::Stop(kv),
        ]
    }

    #[test]
    #[cfg_attr(miri, ignore)] // flock and /proc
    fn the_writer_lock_is_exclusive_and_the_start_time_names_one_process() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        let a = File::create(&p).unwrap();
        assert!(matches!(try_lock(&a), Lock::Acquired));
        // A dup shares the lock; another open of the same file does not get it.
        let dup = a.try_clone().unwrap();
        let b = File::open(&p).unwrap();
        assert!(matches!(try_lock(&b), Lock::Busy));
        drop(a);
        assert!(matches!(try_lock(&b), Lock::Busy), "the dup still holds it");
        drop(dup);
        assert!(matches!(try_lock(&b), Lock::Acquired));
        let me = std::process::id();
        let t = process_start_time(me).expect("our own start time");
        assert_eq!(process_start_time(me), Some(t));
        // Above the kernel's pid_max (at most 2^22): no such process.
        assert_eq!(process_start_time(u32::MAX), None);
    }

    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        let want = write_sample(&p);
        let mut r = Reader::open(&p).unwrap();
        let got: Vec<Frame> = r.by_ref().collect();
        assert_eq!(got, want);
        assert_eq!(r.damage, None);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_detected_without_panic() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        let want = write_sample(&p);
        let bytes = std::fs::read(&p).unwrap();
        // Under Miri (which checks this reader for UB) every 29th position is enough.
        let stride = if cfg!(miri) { 29 } else { 1 };
        let mut clean_cuts = 0;
        for cut in (0..bytes.len()).step_by(stride) {
            let mut r = Reader::new(&bytes[..cut], cut as u64);
            let got: Vec<Frame> = r.by_ref().collect();
            assert!(got.len() < want.len());
            assert_eq!(&want[..got.len()], &got[..], "prefix intact at cut {cut}");
            if r.damage.is_none() {
                clean_cuts += 1;
            }
        }
        // Only cuts exactly at a frame boundary read cleanly: after the header and after each of the
        // first five frames.
        if !cfg!(miri) {
            assert_eq!(clean_cuts, 6);
        }
        for i in (16..bytes.len()).step_by(stride) {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let got: Vec<Frame> = Reader::new(&b[..], b.len() as u64).collect();
            assert!(got.len() < want.len(), "flip at {i} went unnoticed");
        }
    }
}
