//! The spool reader and the export's host pass on arbitrary bytes (a spool left by a crash, a disk error,
//! or anything at that path): they must never panic, never loop, and never allocate by a size or id read
//! from the input (run-tests runs this with `-rss_limit_mb` and `-malloc_limit_mb`: one allocation sized by
//! a hostile name id, as the host pass once made, fails the run). Every input is read twice: as it is, and
//! behind a valid header so the fuzzer reaches the frame parser from the first byte. A third reading takes
//! the input as frames (kind:u32 len:u32 payload) and writes each with its valid check, so the fuzzer
//! reaches what follows the check (ids, thread frames, records); that spool also goes through the host
//! pass (names, threads, ranges) as an export or `npuprof recover` would.
#![no_main]

use libfuzzer_sys::fuzz_target;
use npuprof::spool::Reader;
use std::path::PathBuf;
use std::sync::OnceLock;

fn read(bytes: &[u8]) {
    let mut r = Reader::new(std::io::Cursor::new(bytes), bytes.len() as u64);
    let mut n = 0usize;
    while r.next_frame().is_some() {
        n += 1;
        // Every frame is at least 12 bytes: more frames than that is a loop.
        assert!(n <= bytes.len() / 12 + 1, "the reader looped");
    }
}

/// A scratch trace path of this process (the host pass writes an uncommitted trace there).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("npuprof-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch directory");
        d
    })
}

const HEADER: &[u8; 16] = b"NPUSPOOL\x01\x00\x00\x00\x00\x00\x00\x00";

/// `data` as frames with valid checks: kind:u32, len:u32 (cut to what is left), payload.
fn with_checks(data: &[u8]) -> Vec<u8> {
    let mut out = HEADER.to_vec();
    let mut rest = data;
    while rest.len() >= 8 {
        let kind = u32::from_le_bytes(rest[..4].try_into().unwrap());
        let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize % (rest.len() - 8 + 1);
        let payload = &rest[8..8 + len];
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(&npuprof::spool::frame_check(kind, payload).to_le_bytes());
        rest = &rest[8 + len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    read(data);
    let mut with_header = HEADER.to_vec();
    with_header.extend_from_slice(data);
    read(&with_header);
    let framed = with_checks(data);
    read(&framed);
    let _ = npuprof::export::host_pass_bytes(&framed, scratch());
});
