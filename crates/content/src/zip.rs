//! Just enough of the zip format to look inside attachments: the central directory's
//! entry names and, within a byte budget, each entry's uncompressed start (stored or
//! deflate). Never trusts sizes from the archive: every read is bounds-checked and every
//! inflate is capped, so a zip bomb costs at most the budget.

use std::io::Read;

/// Most entries looked at in one archive.
const MAX_ENTRIES: usize = 2000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// The first bytes of the uncompressed content (at most the per-entry cap), or
    /// empty if it could not be read (encrypted, unknown method, damaged).
    pub data: Vec<u8>,
    pub encrypted: bool,
}

pub fn is_zip(data: &[u8]) -> bool {
    data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06")
}

fn u16_at(d: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?) as usize)
}

fn u32_at(d: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?) as usize)
}

/// The entries of `data`, each with at most `per_entry` uncompressed bytes, spending at
/// most `*budget` uncompressed bytes in total (decremented). `None`: not a readable zip.
pub fn entries(data: &[u8], per_entry: usize, budget: &mut usize) -> Option<Vec<Entry>> {
    // End of central directory: 22 bytes plus a comment of up to 65535.
    let search_from = data.len().saturating_sub(22 + 65_535);
    let eocd = (search_from..data.len().saturating_sub(21))
        .rev()
        .find(|&i| data[i..].starts_with(b"PK\x05\x06"))?;
    let count = u16_at(data, eocd + 10)?;
    let mut at = u32_at(data, eocd + 16)?;
    let mut out = Vec::new();
    for _ in 0..count.min(MAX_ENTRIES) {
        if !data.get(at..)?.starts_with(b"PK\x01\x02") {
            break;
        }
        let flags = u16_at(data, at + 8)?;
        let method = u16_at(data, at + 10)?;
        let compressed = u32_at(data, at + 20)?;
        let name_len = u16_at(data, at + 28)?;
        let extra_len = u16_at(data, at + 30)?;
        let comment_len = u16_at(data, at + 32)?;
        let local = u32_at(data, at + 42)?;
        let name = data.get(at + 46..at + 46 + name_len)?;
        let name = String::from_utf8_lossy(name).into_owned();
        at += 46 + name_len + extra_len + comment_len;
        let encrypted = flags & 1 == 1;
        let content = if encrypted || *budget == 0 {
            Vec::new()
        } else {
            read_entry(data, local, method, compressed, per_entry.min(*budget)).unwrap_or_default()
        };
        *budget = budget.saturating_sub(content.len());
        out.push(Entry {
            name,
            data: content,
            encrypted,
        });
    }
    Some(out)
}

fn read_entry(
    data: &[u8],
    local: usize,
    method: usize,
    compressed: usize,
    cap: usize,
) -> Option<Vec<u8>> {
    if !data.get(local..)?.starts_with(b"PK\x03\x04") {
        return None;
    }
    let start = local + 30 + u16_at(data, local + 26)? + u16_at(data, local + 28)?;
    let end = start.checked_add(compressed)?.min(data.len());
    let raw = data.get(start..end)?;
    match method {
        0 => Some(raw[..raw.len().min(cap)].to_vec()),
        8 => {
            let mut out = Vec::new();
            let mut dec = flate2::read::DeflateDecoder::new(raw).take(cap as u64);
            // A damaged stream still yields what inflated before the damage.
            let _ = dec.read_to_end(&mut out);
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Builds a zip archive (deflate when `deflate`), for tests.
    pub(crate) fn build(files: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, content) in files {
            let (method, body) = if deflate {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(content).unwrap();
                (8u16, e.finish().unwrap())
            } else {
                (0u16, content.to_vec())
            };
            let offset = out.len() as u32;
            let mut local = Vec::new();
            local.extend_from_slice(b"PK\x03\x04");
            local.extend_from_slice(&20u16.to_le_bytes());
            local.extend_from_slice(&0u16.to_le_bytes());
            local.extend_from_slice(&method.to_le_bytes());
            local.extend_from_slice(&[0; 8]); // time, date, crc (unchecked here)
            local.extend_from_slice(&(body.len() as u32).to_le_bytes());
            local.extend_from_slice(&(content.len() as u32).to_le_bytes());
            local.extend_from_slice(&(name.len() as u16).to_le_bytes());
            local.extend_from_slice(&0u16.to_le_bytes());
            local.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&local);
            out.extend_from_slice(&body);
            central.extend_from_slice(b"PK\x01\x02");
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&[0; 8]);
            central.extend_from_slice(&(body.len() as u32).to_le_bytes());
            central.extend_from_slice(&(content.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_at = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(b"PK\x05\x06");
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_at.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn reads_names_and_contents() {
        for deflate in [false, true] {
            let z = build(
                &[("a.txt", b"hello"), ("bin/x.exe", b"MZ\x90\0rest")],
                deflate,
            );
            let mut budget = 1 << 20;
            let e = entries(&z, 4096, &mut budget).unwrap();
            assert_eq!(e.len(), 2);
            assert_eq!(e[1].name, "bin/x.exe");
            assert_eq!(e[1].data, b"MZ\x90\0rest");
        }
    }

    #[test]
    fn bombs_are_capped() {
        let zeros = vec![0u8; 10 << 20];
        let z = build(&[("zeros", &zeros)], true);
        assert!(z.len() < 100_000);
        let mut budget = 1 << 20;
        let e = entries(&z, 64 << 10, &mut budget).unwrap();
        assert_eq!(e[0].data.len(), 64 << 10);
    }

    /// Damaged archives have one defined result each; every case gets its own budget,
    /// so later cases still inflate (a shared budget would let them skip it).
    #[test]
    fn garbage_is_not_a_zip() {
        let fresh = || 100usize;
        assert_eq!(entries(b"PK\x05\x06", 10, &mut fresh()), None);
        // An empty archive (end-of-directory record only) is a zip with no entries.
        let empty = build(&[], false);
        assert_eq!(empty.len(), 22);
        assert_eq!(entries(&empty, 10, &mut fresh()), Some(vec![]));

        let z = build(&[("a", b"b")], false);
        let mut budget = fresh();
        let whole = entries(&z, 10, &mut budget).unwrap();
        assert_eq!(whole.len(), 1);
        assert_eq!(
            (whole[0].name.as_str(), &whole[0].data[..]),
            ("a", &b"b"[..])
        );
        assert_eq!(budget, 99, "the budget pays for what was inflated");
        // Any truncation cuts into the 22-byte end-of-directory record: not a zip.
        for len in 0..z.len() {
            assert_eq!(entries(&z[..len], 10, &mut fresh()), None, "prefix {len}");
        }
        // Leading bytes cut off: the record is intact, but the central directory offset
        // now points past its entry (the only "PK\x01\x02" in the archive), so nothing
        // is listed; an offset beyond the end is not a zip.
        let cd_at = u32_at(&z, z.len() - 6).unwrap();
        for cut in 1..z.len() {
            let rest = &z[cut..];
            let want = if rest.len() < 22 {
                None
            } else if cd_at <= rest.len() {
                Some(vec![])
            } else {
                None
            };
            assert_eq!(entries(rest, 10, &mut fresh()), want, "suffix from {cut}");
        }
    }

    /// A damaged deflate stream yields at most the per-entry cap (what inflated before
    /// the decoder gave up), the budget pays exactly that, and the entry is still
    /// listed by name.
    #[test]
    fn damaged_deflate_yields_a_bounded_prefix() {
        let content: Vec<u8> = (0..4000u32).flat_map(|i| i.to_be_bytes()).collect();
        let z = build(&[("data.bin", &content)], true);
        let body_at = 30 + "data.bin".len();
        for at in [body_at, body_at + 10, body_at + 100, z.len() / 2] {
            let mut bad = z.clone();
            for b in &mut bad[at..at + 8] {
                *b ^= 0xA5;
            }
            let mut budget = 1 << 20;
            let e = entries(&bad, 1000, &mut budget).unwrap();
            assert_eq!(e.len(), 1, "damage at {at}");
            assert_eq!(e[0].name, "data.bin");
            assert!(
                e[0].data.len() <= 1000,
                "damage at {at}: {} bytes",
                e[0].data.len()
            );
            assert_eq!(budget, (1 << 20) - e[0].data.len());
        }
    }
}
