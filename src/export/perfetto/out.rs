//! Where the packets go: the file, through chunks of [`CHUNK`] bytes of whole packets, each deflated (zlib,
//! the fast level) into one `TracePacket { compressed_packets }`, as traced writes a compressed trace. The
//! trace processor (and so the Perfetto UI) inflates them and reads the packets inside in order. Host
//! slices deflate to a fifth of their size or less (docs/benchmarks.md).
//!
//! Deflating runs on a thread of its own (`npuprof-deflate`, started by the export thread for one trace,
//! inheriting its blocked signals), fed through a bounded channel of two chunks: the export thread encodes
//! the next chunk while the previous one is deflated and written, so the protobuf trace is written no
//! slower than the JSON. Without that thread (it cannot start) chunks are deflated in place.

use crate::error::{Error, Result, Status};
use crate::layout::AtomicFile;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::io::Write;

/// Raw bytes per compressed packet (traced's chunks are of this order).
pub(super) const CHUNK: usize = 1 << 20;
/// `TracePacket.compressed_packets`.
const COMPRESSED_PACKETS: u32 = 50;

enum Sink {
    /// Deflated here (no thread).
    Here(AtomicFile, Vec<u8>),
    Thread {
        tx: Sender<Vec<u8>>,
        /// Chunks back from the thread, for reuse.
        back: Receiver<Vec<u8>>,
        handle: std::thread::JoinHandle<Result<AtomicFile>>,
    },
}

pub(super) struct Out {
    sink: Option<Sink>,
    path: std::path::PathBuf,
    raw: Vec<u8>,
}

/// Deflates `raw` into one `Trace.packet` written to `f` (`scratch`: a buffer to reuse).
fn write_chunk(f: &mut AtomicFile, raw: &[u8], scratch: &mut Vec<u8>) -> std::io::Result<()> {
    scratch.clear();
    let mut z =
        flate2::write::ZlibEncoder::new(std::mem::take(scratch), flate2::Compression::fast());
    z.write_all(raw)?;
    let deflated = z.finish()?;
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
    let inner =
        key_len(COMPRESSED_PACKETS) + encoded_len_varint(deflated.len() as u64) + deflated.len();
    let mut head = Vec::with_capacity(24);
    encode_key(1, WireType::LengthDelimited, &mut head);
    encode_varint(inner as u64, &mut head);
    encode_key(COMPRESSED_PACKETS, WireType::LengthDelimited, &mut head);
    encode_varint(deflated.len() as u64, &mut head);
    let r = f.w.write_all(&head).and_then(|_| f.w.write_all(&deflated));
    *scratch = deflated;
    r
}

impl Out {
    pub(super) fn new(f: AtomicFile) -> Result<Out> {
        let path = f.shown();
        // The file moves to the thread; if the thread cannot start, it comes back here.
        let (tx, rx) = bounded::<Vec<u8>>(2);
        let (back_tx, back) = bounded::<Vec<u8>>(4);
        let cell = std::sync::Arc::new(std::sync::Mutex::new(Some(f)));
        let theirs = cell.clone();
        let shown = path.clone();
        let spawned = std::thread::Builder::new()
            .name("npuprof-deflate".into())
            .spawn(move || {
                let Some(mut f) = theirs.lock().ok().and_then(|mut g| g.take()) else {
                    return Err(Error::new(
                        Status::Internal,
                        "the trace file was not handed over",
                    ));
                };
                let mut scratch = Vec::new();
                for raw in rx {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        write_chunk(&mut f, &raw, &mut scratch)
                    }));
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(Error::io("cannot write", &shown, &e)),
                        Err(_) => {
                            return Err(Error::new(
                                Status::Internal,
                                "deflating the trace panicked",
                            ))
                        }
                    }
                    let _ = back_tx.try_send(raw);
                }
                Ok(f)
            });
        let sink = match spawned {
            Ok(handle) => Sink::Thread { tx, back, handle },
            Err(e) => {
                log::debug!(
                    "no npuprof-deflate thread ({e}): the trace is deflated on the export thread"
                );
                // The thread did not start, so the file is still in the cell.
                let f = cell.lock().ok().and_then(|mut g| g.take());
                match f {
                    Some(f) => Sink::Here(f, Vec::new()),
                    None => {
                        return Err(Error::new(Status::Internal, "the trace file was lost"));
                    }
                }
            }
        };
        Ok(Out {
            sink: Some(sink),
            path,
            raw: Vec::with_capacity(CHUNK + (64 << 10)),
        })
    }

    /// Whole packets (`Trace.packet` fields).
    pub(super) fn put(&mut self, b: &[u8]) -> Result<()> {
        self.raw.extend_from_slice(b);
        if self.raw.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        match self.sink.as_mut() {
            Some(Sink::Here(f, scratch)) => {
                let r = write_chunk(f, &self.raw, scratch);
                self.raw.clear();
                r.map_err(|e| Error::io("cannot write", &self.path, &e))
            }
            Some(Sink::Thread { tx, back, .. }) => {
                let next = back
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(CHUNK + (64 << 10)));
                let raw = std::mem::replace(&mut self.raw, next);
                self.raw.clear();
                if tx.send(raw).is_err() {
                    // The thread ended on an error: it is reported by `finish`; stop writing now.
                    return Err(self.thread_error());
                }
                Ok(())
            }
            None => Err(Error::new(
                Status::Internal,
                "the trace was already finished",
            )),
        }
    }

    /// The thread's error (it ended early).
    fn thread_error(&mut self) -> Error {
        match self.sink.take() {
            Some(Sink::Thread { tx, handle, .. }) => {
                drop(tx);
                match handle.join() {
                    Ok(Err(e)) => e,
                    Ok(Ok(_)) => {
                        Error::new(Status::Internal, "the npuprof-deflate thread ended early")
                    }
                    Err(_) => Error::new(Status::Internal, "the npuprof-deflate thread panicked"),
                }
            }
            _ => Error::new(Status::Internal, "the npuprof-deflate thread ended early"),
        }
    }

    /// Writes what is gathered and moves the file into place; returns its bytes.
    pub(super) fn finish(mut self) -> Result<u64> {
        self.flush_chunk()?;
        let f = match self.sink.take() {
            Some(Sink::Here(f, _)) => f,
            Some(Sink::Thread { tx, handle, .. }) => {
                drop(tx);
                handle.join().map_err(|_| {
                    Error::new(Status::Internal, "the npuprof-deflate thread panicked")
                })??
            }
            None => {
                return Err(Error::new(
                    Status::Internal,
                    "the trace was already finished",
                ))
            }
        };
        let bytes = f.w.get_ref().position() + f.w.buffer().len() as u64;
        f.commit()?;
        Ok(bytes)
    }
}

impl Drop for Out {
    /// An unfinished trace (an error path): the thread is told to stop and joined; the file is dropped
    /// uncommitted (its temporary file removed).
    fn drop(&mut self) {
        if let Some(Sink::Thread { tx, handle, .. }) = self.sink.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}
