//! Tar-split records: every byte of an image's uncompressed tar that is not regular-file content
//! (headers, PAX and GNU extension entries, padding, end-of-archive blocks, trailing bytes),
//! interleaved with references to the file contents in the exploded tree. Replaying them gives
//! back the exact tar, hence the same image ID, with no second copy of the tar kept (the idea of
//! vbatts/tar-split, which rkt and containers/storage use).
//!
//! Format (zstd-compressed): the magic line, then records, each a tag byte:
//! `R` u64-LE length + raw bytes; `F` u64-LE size + u32-LE path length + tree path;
//! `E` u64-LE total tar size (the end, so a truncated record is detected).

use std::io::{self, Read, Write};

const MAGIC: &[u8] = b"appc-tarsplit-1\n";

/// One step of the replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Raw(Vec<u8>),
    File { size: u64, tree_path: Vec<u8> },
}

/// Writes records, merging adjacent raw bytes.
pub struct TarSplitWriter<W: Write> {
    out: zstd::stream::write::Encoder<'static, W>,
    pending: Vec<u8>,
    total: u64,
}

impl<W: Write> TarSplitWriter<W> {
    pub fn new(out: W) -> io::Result<Self> {
        // Level 3: headers are mostly zeros and compress ~20x even at low levels.
        let mut out = zstd::stream::write::Encoder::new(out, 3)?;
        out.write_all(MAGIC)?;
        Ok(TarSplitWriter {
            out,
            pending: Vec::new(),
            total: 0,
        })
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.total += bytes.len() as u64;
    }

    fn flush_raw(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.out.write_all(b"R")?;
            self.out
                .write_all(&(self.pending.len() as u64).to_le_bytes())?;
            self.out.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    pub fn file(&mut self, size: u64, tree_path: &[u8]) -> io::Result<()> {
        self.flush_raw()?;
        let len = u32::try_from(tree_path.len()).map_err(|_| io::Error::other("path too long"))?;
        self.out.write_all(b"F")?;
        self.out.write_all(&size.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(tree_path)?;
        self.total += size;
        Ok(())
    }

    /// Ends the record and returns the inner writer (for fsync) and the tar size described.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.flush_raw()?;
        self.out.write_all(b"E")?;
        self.out.write_all(&self.total.to_le_bytes())?;
        Ok((self.out.finish()?, self.total))
    }
}

/// Reads records back, in order.
pub struct TarSplitReader<R: Read> {
    inp: zstd::stream::read::Decoder<'static, io::BufReader<R>>,
    seen: u64,
    done: bool,
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("tar-split record damaged: {what}"),
    )
}

impl<R: Read> TarSplitReader<R> {
    pub fn new(inp: R) -> io::Result<Self> {
        let mut inp = zstd::stream::read::Decoder::new(inp)?;
        let mut magic = [0u8; MAGIC.len()];
        inp.read_exact(&mut magic)
            .map_err(|_| damaged("no header"))?;
        if magic != MAGIC {
            return Err(damaged("unknown format"));
        }
        Ok(TarSplitReader {
            inp,
            seen: 0,
            done: false,
        })
    }

    fn u64(&mut self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.inp
            .read_exact(&mut b)
            .map_err(|_| damaged("truncated"))?;
        Ok(u64::from_le_bytes(b))
    }

    /// The next record; `None` after the end marker.
    pub fn next_record(&mut self) -> io::Result<Option<Record>> {
        if self.done {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        self.inp
            .read_exact(&mut tag)
            .map_err(|_| damaged("truncated"))?;
        match tag[0] {
            b'R' => {
                let len = self.u64()?;
                let mut bytes = Vec::new();
                (&mut self.inp).take(len).read_to_end(&mut bytes)?;
                if bytes.len() as u64 != len {
                    return Err(damaged("truncated raw record"));
                }
                self.seen += len;
                Ok(Some(Record::Raw(bytes)))
            }
            b'F' => {
                let size = self.u64()?;
                let mut l = [0u8; 4];
                self.inp
                    .read_exact(&mut l)
                    .map_err(|_| damaged("truncated"))?;
                let mut tree_path = vec![0u8; u32::from_le_bytes(l) as usize];
                self.inp
                    .read_exact(&mut tree_path)
                    .map_err(|_| damaged("truncated"))?;
                self.seen += size;
                Ok(Some(Record::File { size, tree_path }))
            }
            b'E' => {
                let total = self.u64()?;
                if total != self.seen {
                    return Err(damaged("size mismatch"));
                }
                self.done = true;
                Ok(None)
            }
            _ => Err(damaged("unknown record")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = TarSplitWriter::new(Vec::new()).unwrap();
        w.raw(b"header1");
        w.raw(b"+more");
        w.file(10, b"rootfs/a").unwrap();
        w.raw(b"pad");
        let (bytes, total) = w.finish().unwrap();
        assert_eq!(total, 12 + 10 + 3);
        let mut r = TarSplitReader::new(&bytes[..]).unwrap();
        assert_eq!(
            r.next_record().unwrap(),
            Some(Record::Raw(b"header1+more".to_vec()))
        );
        assert_eq!(
            r.next_record().unwrap(),
            Some(Record::File {
                size: 10,
                tree_path: b"rootfs/a".to_vec()
            })
        );
        assert_eq!(r.next_record().unwrap(), Some(Record::Raw(b"pad".to_vec())));
        assert_eq!(r.next_record().unwrap(), None);
    }

    #[test]
    fn truncation_is_detected() {
        let mut w = TarSplitWriter::new(Vec::new()).unwrap();
        w.raw(&[0u8; 4096]);
        w.file(5, b"manifest").unwrap();
        let (bytes, _) = w.finish().unwrap();
        // Decompress, cut the end marker off, recompress.
        let plain = zstd::decode_all(&bytes[..]).unwrap();
        let cut = zstd::encode_all(&plain[..plain.len() - 9], 3).unwrap();
        let mut r = TarSplitReader::new(&cut[..]).unwrap();
        let mut result = Ok(Some(Record::Raw(vec![])));
        while let Ok(Some(_)) = result {
            result = r.next_record();
        }
        assert!(result.is_err());
    }
}
