//! The spool reader on arbitrary bytes (a spool left by a crash, a disk error, or anything at that path):
//! it must never panic and never loop. Every input is read twice: as it is, and behind a valid header so
//! the fuzzer reaches the frame parser from the first byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use npuprof::spool::Reader;

fn read(bytes: &[u8]) {
    let mut r = Reader::new(std::io::Cursor::new(bytes), bytes.len() as u64);
    let mut n = 0usize;
    while r.next_frame().is_some() {
        n += 1;
        // Every frame is at least 12 bytes: more frames than that is a loop.
        assert!(n <= bytes.len() / 12 + 1, "the reader looped");
    }
}

fuzz_target!(|data: &[u8]| {
    read(data);
    let mut with_header = b"NPUSPOOL\x01\x00\x00\x00\x00\x00\x00\x00".to_vec();
    with_header.extend_from_slice(data);
    read(&with_header);
});
