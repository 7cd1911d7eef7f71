//! Compression of image archives (spec/aci.md "Image Archives", appc-requirements.md A6).
//!
//! The spec allows gzip, bzip2 and xz but gives no detection rule; like appc/spec's
//! `aci.DetectFileType` (§5.3) we sniff magic bytes, in Go's order (gzip, bzip2, xz, tar), and
//! add zstd. Everything streams: nothing here holds a whole archive in memory.
//!
//! Integrity: every codec we write carries a checksum (gzip CRC-32, bzip2 block CRCs, xz CRC-64,
//! zstd with its optional content checksum switched on), so a corrupted or truncated download
//! surfaces as an `io::Error` from the decompressing reader rather than as a different tar.

use std::fmt;
use std::io::{self, BufRead, Read, Write};

use crate::aci::AciError;

/// How many leading bytes [`sniff`] needs to recognise every format (the tar magic sits at
/// offset 257); [`decompress`] reads this many before deciding.
pub const SNIFF_LEN: usize = 512;

/// The compression of an image archive; `None` is a plain tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    /// Every codec, in detection order (plain tar last, as in Go).
    pub const ALL: [Compression; 5] = [
        Compression::Gzip,
        Compression::Bzip2,
        Compression::Xz,
        Compression::Zstd,
        Compression::None,
    ];

    /// The name used on the command line (`--compression NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// The level used when none is given: each codec's own command-line default.
    pub fn default_level(self) -> u32 {
        match self {
            Compression::None => 0,
            Compression::Gzip | Compression::Xz => 6,
            Compression::Bzip2 => 9,
            Compression::Zstd => 3,
        }
    }

    /// The levels the codec accepts.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Compression::None => 0..=0,
            Compression::Gzip | Compression::Xz => 0..=9,
            Compression::Bzip2 => 1..=9,
            Compression::Zstd => 1..=22,
        }
    }

    fn magic(self) -> &'static [u8] {
        match self {
            Compression::Gzip => &[0x1f, 0x8b],
            Compression::Bzip2 => b"BZh",
            Compression::Xz => &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
            Compression::Zstd => &[0x28, 0xb5, 0x2f, 0xfd],
            Compression::None => b"",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown compression {s:?} (gzip, bzip2, xz, zstd or none)"))
    }
}

/// Offset of the tar magic: POSIX `ustar\0` and old GNU `ustar  \0` both start with `ustar`.
const TAR_MAGIC_OFFSET: usize = 257;

/// Recognises an archive by its first bytes (pass at least [`SNIFF_LEN`] when available).
///
/// `Some(Compression::None)` is a plain tar; `None` means "not an ACI (unknown format)": pre-POSIX
/// v7 tars have no magic and are refused, as Go does.
pub fn sniff(head: &[u8]) -> Option<Compression> {
    let compressed = Compression::ALL
        .into_iter()
        .filter(|c| *c != Compression::None)
        .find(|c| head.starts_with(c.magic()));
    if compressed.is_some() {
        return compressed;
    }
    let tar_magic = head.get(TAR_MAGIC_OFFSET..TAR_MAGIC_OFFSET + 5)?;
    (tar_magic == b"ustar").then_some(Compression::None)
}

/// Detects the compression of `input` and returns a reader of the uncompressed tar.
///
/// The first [`SNIFF_LEN`] bytes are read (looping, so a `BufRead` with a small buffer or a
/// pipe delivering short reads still gets a full look) and replayed in front of the rest; the
/// input is never read as a whole. Truncated or corrupt compressed data is an `io::Error` from
/// the returned reader; concatenated streams (`cat a.gz b.gz`) are read as one.
///
/// Callers add the file name to the errors, which know nothing of it.
pub fn decompress<'a>(
    mut input: impl BufRead + 'a,
) -> Result<(Compression, Box<dyn Read + 'a>), AciError> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    (&mut input)
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|source| AciError::ReadHead { source })?;
    let compression = sniff(&head).ok_or(AciError::UnknownFormat)?;
    let whole = io::Cursor::new(head).chain(input);
    let reader: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(whole),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(whole)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(whole)),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(whole)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(whole).map_err(
            |source| AciError::Codec {
                codec: Compression::Zstd.name(),
                source,
            },
        )?),
    };
    Ok((compression, reader))
}

/// A compressing writer; [`Compressor::finish`] writes the trailer and hands back the inner writer
/// (so the caller can fsync the file). Dropping it without `finish` leaves the stream incomplete.
pub struct Compressor<W: Write>(Codec<W>);

enum Codec<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Bzip2(bzip2::write::BzEncoder<W>),
    Xz(liblzma::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// Starts a `compression` stream into `w` at `level` (the codec's default when `None`).
    ///
    /// The gzip header carries no name and a zero time, so equal input gives equal output.
    pub fn new(w: W, compression: Compression, level: Option<u32>) -> Result<Self, AciError> {
        let level = level.unwrap_or(compression.default_level());
        if !compression.levels().contains(&level) {
            return Err(AciError::Codec {
                codec: compression.name(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("level {level} is outside {:?}", compression.levels()),
                ),
            });
        }
        let codec = match compression {
            Compression::None => Codec::None(w),
            Compression::Gzip => Codec::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::new(level),
            )),
            Compression::Bzip2 => Codec::Bzip2(bzip2::write::BzEncoder::new(
                w,
                bzip2::Compression::new(level),
            )),
            // `XzEncoder::new` writes a CRC-64 check.
            Compression::Xz => Codec::Xz(liblzma::write::XzEncoder::new(w, level)),
            Compression::Zstd => Codec::Zstd(zstd_encoder(w, level)?),
        };
        Ok(Compressor(codec))
    }

    /// Ends the stream (writing the codec's trailer) and returns the inner writer, unflushed.
    pub fn finish(self) -> io::Result<W> {
        match self.0 {
            Codec::None(w) => Ok(w),
            Codec::Gzip(e) => e.finish(),
            Codec::Bzip2(e) => e.finish(),
            Codec::Xz(e) => e.finish(),
            Codec::Zstd(e) => e.finish(),
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match &mut self.0 {
            Codec::None(w) => w,
            Codec::Gzip(e) => e,
            Codec::Bzip2(e) => e,
            Codec::Xz(e) => e,
            Codec::Zstd(e) => e,
        }
    }
}

/// zstd frames carry no checksum by default; without one a corrupt block can decode to wrong
/// bytes silently, so it is switched on.
fn zstd_encoder<W: Write>(
    w: W,
    level: u32,
) -> Result<zstd::stream::write::Encoder<'static, W>, AciError> {
    let codec_error = |source| AciError::Codec {
        codec: Compression::Zstd.name(),
        source,
    };
    // `levels()` caps zstd at 22, so the cast cannot wrap.
    let mut encoder = zstd::stream::write::Encoder::new(w, level as i32).map_err(codec_error)?;
    encoder.include_checksum(true).map_err(codec_error)?;
    Ok(encoder)
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar-like payload: compressible, with a ustar magic at 257 so plain tar sniffs as tar.
    fn payload() -> Vec<u8> {
        let mut data = vec![0u8; 512];
        data[257..263].copy_from_slice(b"ustar\0");
        let mut x: u32 = 1;
        for i in 0..200_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            data.push(if i % 7 == 0 {
                (x >> 16) as u8
            } else {
                b'a' + (i % 13) as u8
            });
        }
        data
    }

    fn compress(data: &[u8], c: Compression) -> Vec<u8> {
        let mut w = Compressor::new(Vec::new(), c, None).expect("compressor");
        w.write_all(data).expect("write");
        w.finish().expect("finish")
    }

    fn decompress_all(bytes: &[u8]) -> io::Result<(Compression, Vec<u8>)> {
        let (c, mut r) = decompress(bytes).map_err(io::Error::other)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok((c, out))
    }

    #[test]
    fn round_trip_every_codec() {
        let data = payload();
        for c in Compression::ALL {
            let packed = compress(&data, c);
            assert_eq!(sniff(&packed), Some(c), "{c}");
            let (found, unpacked) = decompress_all(&packed).expect("decompress");
            assert_eq!(found, c);
            assert!(unpacked == data, "{c}: round trip differs");
            if c != Compression::None {
                assert!(packed.len() < data.len() / 2, "{c} did not compress");
            }
        }
    }

    #[test]
    fn compressed_output_is_deterministic() {
        let data = payload();
        for c in Compression::ALL {
            assert!(compress(&data, c) == compress(&data, c), "{c}");
        }
    }

    #[test]
    fn sniff_magic_bytes() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Some(Compression::Gzip));
        assert_eq!(sniff(b"BZh91AY&SY"), Some(Compression::Bzip2));
        assert_eq!(sniff(b"\xfd7zXZ\0\0"), Some(Compression::Xz));
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Some(Compression::Zstd));
        let mut posix = vec![0u8; 512];
        posix[257..263].copy_from_slice(b"ustar\0");
        assert_eq!(sniff(&posix), Some(Compression::None));
        let mut old_gnu = vec![0u8; 512];
        old_gnu[257..265].copy_from_slice(b"ustar  \0");
        assert_eq!(sniff(&old_gnu), Some(Compression::None));
    }

    #[test]
    fn sniff_unknown() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(&[0x1f]), None);
        assert_eq!(sniff(b"{\"acKind\": \"ImageManifest\"}"), None);
        assert_eq!(sniff(&[0u8; 512]), None, "v7 tar / zeros");
        assert_eq!(sniff(b"-----BEGIN PGP MESSAGE-----"), None);
        assert!(matches!(
            decompress(&b"hello"[..]),
            Err(AciError::UnknownFormat)
        ));
        assert_eq!(
            decompress(&b"hello"[..]).err().map(|e| e.to_string()),
            Some("not an ACI (unknown format)".to_owned())
        );
    }

    #[test]
    fn truncated_streams_are_errors() {
        let data = payload();
        for c in Compression::ALL
            .into_iter()
            .filter(|c| *c != Compression::None)
        {
            let packed = compress(&data, c);
            for cut in [packed.len() - 1, packed.len() - 4, packed.len() / 2, 12] {
                let result = decompress_all(&packed[..cut]);
                assert!(
                    result.is_err(),
                    "{c} cut at {cut}/{}: no error",
                    packed.len()
                );
            }
        }
    }

    #[test]
    fn corrupted_streams_are_errors() {
        let data = payload();
        for c in Compression::ALL
            .into_iter()
            .filter(|c| *c != Compression::None)
        {
            let packed = compress(&data, c);
            for at in [packed.len() / 3, packed.len() / 2, packed.len() - 6] {
                let mut bad = packed.clone();
                bad[at] ^= 0x55;
                let result = decompress_all(&bad);
                assert!(
                    !matches!(&result, Ok((_, out)) if *out == data),
                    "{c}: flipped byte {at} went unnoticed"
                );
                assert!(result.is_err(), "{c}: flipped byte {at}: no error");
            }
        }
    }

    #[test]
    fn concatenated_streams_are_one() {
        for c in Compression::ALL
            .into_iter()
            .filter(|c| *c != Compression::None)
        {
            let mut packed = compress(&payload(), c);
            packed.extend(compress(b"tail", c));
            let (_, out) = decompress_all(&packed).expect("decompress");
            assert!(out.ends_with(b"tail"), "{c}");
        }
    }

    /// A reader that hands out one byte per call: `decompress` must still see the tar magic.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn short_reads_still_sniff_plain_tar() {
        let data = payload();
        let input = io::BufReader::with_capacity(1, Trickle(&data));
        let (c, mut r) = decompress(input).expect("decompress");
        assert_eq!(c, Compression::None);
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        assert!(out == data);
    }

    #[test]
    fn levels_are_checked() {
        assert!(Compressor::new(Vec::new(), Compression::Gzip, Some(10)).is_err());
        assert!(Compressor::new(Vec::new(), Compression::Bzip2, Some(0)).is_err());
        assert!(Compressor::new(Vec::new(), Compression::Zstd, Some(19)).is_ok());
    }

    #[test]
    fn names_parse() {
        for c in Compression::ALL {
            assert_eq!(c.name().parse::<Compression>(), Ok(c));
        }
        assert!("lz4".parse::<Compression>().is_err());
    }
}
