//! Reading a profile's `mspti.spool` back at export, in blocks and as often as needed (the kernel rows, then
//! the lanes' passes), so the records are never all in memory: the export holds the kernel rows and, for the
//! flows, the correlation ids, not the records.

use super::walk::DevRec;
use super::window::in_window;
use super::REC;
use crate::error::Result;
use std::os::unix::fs::FileExt;

/// A spool opened for export: the first `limit` whole records of the `len` bytes it had when opened, those
/// whose times lie in `window` (see [`in_window`]).
pub(super) struct Spool {
    file: std::fs::File,
    /// Bytes when opened (a spool still being written after an abandoned stop is read no further).
    pub len: u64,
    limit: u64,
    window: (u64, u64),
}

/// What one replay saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Pass {
    /// Whole records beyond the limit (not read).
    pub beyond_limit: u64,
    /// Records read whose times lie outside the window (not passed on).
    pub outside: u64,
}

/// Records per read.
const BLOCK: usize = 16384;

impl Spool {
    pub(super) fn new(file: std::fs::File, limit: usize, window: (u64, u64)) -> Spool {
        let len = file.metadata().map_or(0, |m| m.len());
        Spool {
            file,
            len,
            limit: limit as u64,
            window,
        }
    }

    /// Passes each kept record, in spool order, to `each` (which may stop the replay with an error). A read
    /// error ends the replay early, logged once per replay.
    pub(super) fn replay(&self, mut each: impl FnMut(&DevRec) -> Result<()>) -> Result<Pass> {
        let in_file = self.len / REC as u64;
        let n = in_file.min(self.limit);
        let mut pass = Pass {
            beyond_limit: in_file - n,
            outside: 0,
        };
        let mut block = vec![0u8; REC * BLOCK];
        let mut at = 0u64;
        let end = n * REC as u64;
        while at < end {
            let want = ((end - at) as usize).min(block.len());
            let got = match self.file.read_at(&mut block[..want], at) {
                Ok(0) => break,
                Ok(g) => g,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("MSPTI spool: {e}; the records before it are used");
                    break;
                }
            };
            let mut whole = got / REC * REC;
            if whole == 0 {
                // A short read (a read may return less than asked, even from a regular file: Miri does it):
                // one whole record, or the end, where the file ends inside a record (it shrank since it was
                // opened).
                if self.file.read_exact_at(&mut block[..REC], at).is_err() {
                    break;
                }
                whole = REC;
            }
            for b in block[..whole].chunks_exact(REC) {
                let r = DevRec::from_bytes(b);
                if in_window(&r, self.window) {
                    each(&r)?;
                } else {
                    pass.outside += 1;
                }
            }
            at += whole as u64;
        }
        Ok(pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn replays_the_first_records_in_the_window_and_counts_the_rest() {
        let mut f = tempfile::tempfile().unwrap();
        for i in 0..10u64 {
            let r = DevRec {
                kind: 2,
                start: if i == 3 { u64::MAX - 5 } else { 1000 + i },
                end: 1001 + i,
                ..Default::default()
            };
            f.write_all(&r.to_bytes()).unwrap();
        }
        f.write_all(&[1, 2, 3]).unwrap();
        let s = Spool::new(f, 8, (0, 10_000));
        for _ in 0..2 {
            let mut got = Vec::new();
            let p = s
                .replay(|r| {
                    got.push(r.start);
                    Ok(())
                })
                .unwrap();
            assert_eq!(
                p,
                Pass {
                    beyond_limit: 2,
                    outside: 1
                }
            );
            assert_eq!(got, [1000, 1001, 1002, 1004, 1005, 1006, 1007]);
        }
    }
}
