//! How a message body is kept in `message_bodies`, on both backends: raw (codec 0,
//! every body moved there by migration SQLite 0015 / PostgreSQL 0004) or deflated
//! (codec 1: raw DEFLATE, deflated by libdeflate at level 1 and inflated by flate2)
//! when that saves at least an eighth. A signed 2 KB message deflates to about half,
//! which lets SQLite pack two or three per 4 KiB page instead of one. `messages.size`
//! keeps the original length (and `messages.body` is left empty). Once every recipient
//! of a message has a final state its body row is deleted (nothing reads it any more;
//! `load_body` then gives an empty body), which is what lets the store shrink back as
//! the queue drains.

use crate::StoreError;
use flate2::read::DeflateDecoder;
use libdeflater::{CompressionLvl, Compressor};
use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Read;

/// `message_bodies.codec`: the body as received.
pub(crate) const RAW: i64 = 0;
/// `message_bodies.codec`: raw DEFLATE (RFC 1951).
pub(crate) const DEFLATE: i64 = 1;

/// Bodies shorter than this are kept raw (too small to gain a page).
const MIN_COMPRESS: usize = 512;

/// The bytes to store for `body` and their codec.
pub(crate) fn encode(body: &[u8]) -> (Cow<'_, [u8]>, i64) {
    if body.len() < MIN_COMPRESS {
        return (Cow::Borrowed(body), RAW);
    }
    // Worth keeping only if it saves an eighth: the output never needs more room.
    // libdeflate says so (an error, not a panic) when the output does not fit.
    let limit = body.len() - body.len() / 8;
    let mut packed = vec![0; limit];
    match COMPRESSOR.with_borrow_mut(|c| c.deflate_compress(body, &mut packed)) {
        Ok(len) => {
            packed.truncate(len);
            (Cow::Owned(packed), DEFLATE)
        }
        Err(_) => (Cow::Borrowed(body), RAW),
    }
}

/// A body encoded for storage before it reaches the writer: the session that enqueues
/// it deflates it on its own worker thread, so the one writer does not deflate a whole
/// batch serially while every caller in it waits.
pub(crate) struct Packed(Option<Vec<u8>>);

impl Packed {
    pub(crate) fn of(body: &[u8]) -> Self {
        match encode(body) {
            (Cow::Owned(packed), DEFLATE) => Self(Some(packed)),
            _ => Self(None),
        }
    }

    /// The bytes to store for `body` (the body this was made `of`) and their codec.
    pub(crate) fn stored<'a>(&'a self, body: &'a [u8]) -> (&'a [u8], i64) {
        match &self.0 {
            Some(packed) => (packed, DEFLATE),
            None => (body, RAW),
        }
    }
}

thread_local! {
    /// One raw-DEFLATE compressor per thread (libdeflate, level 1): a fresh one
    /// allocates its tables every time.
    /// (`CompressionLvl::fastest()` is level 0, which stores without compressing.)
    static COMPRESSOR: RefCell<Compressor> = RefCell::new(Compressor::new(
        CompressionLvl::new(1).unwrap_or_default(),
    ));
}

/// The body as received, from what `encode` stored. `size` (the original length)
/// bounds the output: a stored value that inflates beyond it is corrupt.
pub(crate) fn decode(stored: Vec<u8>, codec: i64, size: i64) -> Result<Vec<u8>, StoreError> {
    match codec {
        RAW => Ok(stored),
        DEFLATE => {
            let size = usize::try_from(size).unwrap_or(0);
            let mut out = Vec::with_capacity(size);
            DeflateDecoder::new(stored.as_slice())
                .take(size as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| StoreError::Database(format!("stored body does not inflate: {e}")))?;
            if out.len() != size {
                return Err(StoreError::Database(format!(
                    "stored body inflates to {} bytes, expected {size}",
                    out.len()
                )));
            }
            Ok(out)
        }
        other => Err(StoreError::Database(format!("unknown body codec {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64 noise, the top byte taken `shift` bits down.
    fn noise(len: usize, shift: u32) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> shift) as u8
            })
            .collect()
    }

    /// The output buffer is smaller than the input on purpose (a body is kept deflated
    /// only if that saves an eighth), so the backend must stop when it is full, never
    /// panic, and the body must come back whole either way. (zlib-rs 0.6.8 at level 2
    /// panicked on such a body, "buf.len() must fit in remaining()", in
    /// `tests/space.rs::sqlite_file_shrinks_after_the_queue_drains`, 1,500 bodies of
    /// 2,100 bytes of noise through the writer; this test did not reproduce it.
    /// libdeflate returns an error instead.) Sizes from the smallest compressed one up
    /// to 70 KiB, noise and half-noise, on fresh and reused compressors.
    #[test]
    fn incompressible_bodies_of_any_size_encode_without_a_panic() {
        // First on a fresh thread, whose compressor has never been used.
        for len in [2100, 3000, 5000] {
            std::thread::spawn(move || {
                let body = noise(len, 24);
                let (stored, codec) = encode(&body);
                assert_eq!(
                    decode(stored.into_owned(), codec, len as i64).unwrap(),
                    body
                );
            })
            .join()
            .expect("no panic on a fresh compressor");
        }
        let mut len = MIN_COMPRESS;
        while len <= 70_000 {
            for shift in [24, 32] {
                let mut half = noise(len, shift);
                half[..len / 2].fill(b'a');
                for body in [noise(len, shift), half] {
                    let (stored, codec) = encode(&body);
                    assert_eq!(
                        decode(stored.into_owned(), codec, len as i64).unwrap(),
                        body
                    );
                }
            }
            len += 1 + len / 16;
        }
        for len in [2100, 2100 + 64, 3000] {
            let body = noise(len, 24);
            let (stored, codec) = encode(&body);
            assert_eq!(
                decode(stored.into_owned(), codec, len as i64).unwrap(),
                body
            );
        }
    }

    /// What the writer stores for a body deflated ahead of it is what `encode` gives.
    #[test]
    fn packed_ahead_stores_what_encode_gives() {
        let text = b"hello world, again and again\r\n".repeat(40);
        let packed = Packed::of(&text);
        let (stored, codec) = packed.stored(&text);
        assert_eq!((stored, codec), (encode(&text).0.as_ref(), DEFLATE));
        assert_eq!(
            decode(stored.to_vec(), codec, text.len() as i64).unwrap(),
            text
        );
        let small = b"Subject: x\r\n\r\nhi\r\n";
        assert_eq!(Packed::of(small).stored(small), (&small[..], RAW));
    }

    #[test]
    fn round_trips_and_keeps_small_or_incompressible_bodies_raw() {
        let text: Vec<u8> = b"Subject: hi\r\n\r\n"
            .iter()
            .chain(b"hello world, again and again\r\n".repeat(60).iter())
            .copied()
            .collect();
        let (stored, codec) = encode(&text);
        assert_eq!(codec, DEFLATE);
        assert!(stored.len() < text.len() / 2);
        let back = decode(stored.into_owned(), codec, text.len() as i64).unwrap();
        assert_eq!(back, text);

        let small = b"Subject: x\r\n\r\nhi\r\n";
        assert_eq!(encode(small), (Cow::Borrowed(&small[..]), RAW));

        // Bytes deflate cannot shrink.
        let noise = noise(4096, 32);
        let (stored, codec) = encode(&noise);
        assert_eq!(codec, RAW);
        assert_eq!(decode(stored.into_owned(), codec, 4096).unwrap(), noise);

        // The thread's compressor, reset after a body it could not shrink, still
        // round-trips the next one.
        let (again, codec) = encode(&text);
        assert_eq!(codec, DEFLATE);
        assert_eq!(
            decode(again.into_owned(), codec, text.len() as i64).unwrap(),
            text
        );

        assert!(decode(b"garbage".to_vec(), DEFLATE, 10).is_err());
        let (stored, _) = encode(&text);
        assert!(
            decode(stored.into_owned(), DEFLATE, 10).is_err(),
            "longer than size"
        );
        assert!(decode(vec![], 7, 0).is_err());
    }
}
