//! CANN's local time onto the host time base: the offset `host/start_info` gives, and shifting a time by it.

use super::outputs::read_small;
use crate::dir::Dir;
use crate::format::jsonparse::Parser;

/// `ts + shift`, clamped to the u64 range.
pub(super) fn rebase(ts: u64, shift: i128) -> u64 {
    (ts as i128 + shift).clamp(0, u64::MAX as i128) as u64
}

/// `host/start_info` → CANN's local-time offset: local_ns = monotonic_raw_ns + offset. Read through the
/// `PROF_*` directory's handle.
pub(super) fn cann_offset(prof: &Dir) -> Option<i128> {
    let text = read_small(&prof.open_dir("host").ok()?, "start_info", 1 << 20).ok()?;
    let v = Parser::new(&text).value(0).ok()?;
    let begin_us: u64 = v.get("collectionTimeBegin")?.num_text()?.parse().ok()?;
    let raw_ns: u64 = v.get("clockMonotonicRaw")?.num_text()?.parse().ok()?;
    Some(begin_us as i128 * 1000 - raw_ns as i128)
}
