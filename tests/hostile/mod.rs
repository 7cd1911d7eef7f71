//! Builders for hostile and broken image archives (used by `tests/store_hostile.rs`).
//!
//! Every archive starts from one valid base image (`manifest`, `rootfs/`, `rootfs/dir/`,
//! `rootfs/file`) and differs from it in exactly one way. Headers are written field by field
//! into the raw 512-byte block, since the `tar` crate's safe setters refuse the very names
//! (`..`, absolute paths) these archives are about.
#![allow(dead_code)] // not every test uses every builder

use std::io::{self, Read, Write};

use sha2::{Digest, Sha512};
use tar::{EntryType, Header};

/// A valid image manifest.
pub const MANIFEST: &str = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/hostile","labels":[{"name":"version","value":"1.0.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}"#;

/// The fixed mtime of every generated entry (2023-11-14), so archives are reproducible.
pub const MTIME: u64 = 1_700_000_000;

/// Size of `rootfs/file` in the base image: large enough that cutting a compressed archive in
/// half lands in the middle of its data.
pub const FILE_SIZE: usize = 64 * 1024;

/// Deterministic, incompressible bytes (xorshift64).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// One archive member: its header block, its data, and optional extension records that go in
/// front of it (a PAX `x` header, a GNU `L` long name).
pub struct Entry {
    pub header: Header,
    pub data: Vec<u8>,
    pub pax: Vec<(String, Vec<u8>)>,
    pub gnu_long_name: Option<Vec<u8>>,
}

/// Writes `value` as NUL-terminated zero-padded octal into a numeric header field.
fn octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    assert!(digits.len() < field.len(), "{value} does not fit the field");
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    field[digits.len()..].fill(0);
}

/// Copies raw bytes into a fixed-size name field (no checks at all: that is the point).
fn put_name(field: &mut [u8], name: &[u8]) {
    assert!(
        name.len() <= field.len(),
        "name longer than the header field"
    );
    field.fill(0);
    field[..name.len()].copy_from_slice(name);
}

impl Entry {
    /// An entry of any type with `name` written verbatim into the ustar name field.
    pub fn raw(name: &[u8], kind: EntryType, data: Vec<u8>) -> Entry {
        Entry::raw_in(Header::new_ustar(), name, kind, data)
    }

    /// As [`Entry::raw`], starting from `header` (ustar or GNU).
    pub fn raw_in(mut header: Header, name: &[u8], kind: EntryType, data: Vec<u8>) -> Entry {
        let mode = if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        };
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        header.set_size(data.len() as u64);
        header.set_entry_type(kind);
        header.set_username("root").expect("user name");
        header.set_groupname("root").expect("group name");
        put_name(&mut header.as_old_mut().name, name);
        header.set_cksum();
        Entry {
            header,
            data,
            pax: Vec::new(),
            gnu_long_name: None,
        }
    }

    pub fn file(name: &[u8], data: &[u8]) -> Entry {
        Entry::raw(name, EntryType::Regular, data.to_vec())
    }

    pub fn dir(name: &[u8]) -> Entry {
        Entry::raw(name, EntryType::Directory, Vec::new())
    }

    pub fn symlink(name: &[u8], target: &[u8]) -> Entry {
        Entry::raw(name, EntryType::Symlink, Vec::new()).link_name(target)
    }

    pub fn hardlink(name: &[u8], target: &[u8]) -> Entry {
        Entry::raw(name, EntryType::Link, Vec::new()).link_name(target)
    }

    pub fn char_device(name: &[u8], major: u32, minor: u32) -> Entry {
        let mut e = Entry::raw(name, EntryType::Char, Vec::new());
        e.header.set_mode(0o666);
        e.header.set_device_major(major).expect("major");
        e.header.set_device_minor(minor).expect("minor");
        e.header.set_cksum();
        e
    }

    /// A GNU sparse file (type `S`): 4 KiB of hole, then one 512-byte data block.
    pub fn gnu_sparse(name: &[u8]) -> Entry {
        let mut header = Header::new_gnu();
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        header.set_size(512);
        header.set_entry_type(EntryType::GNUSparse);
        put_name(&mut header.as_old_mut().name, name);
        let gnu = header.as_gnu_mut().expect("a GNU header");
        octal(&mut gnu.sparse[0].offset, 4096);
        octal(&mut gnu.sparse[0].numbytes, 512);
        octal(&mut gnu.realsize, 4096 + 512);
        header.set_cksum();
        Entry {
            header,
            data: noise(512, 7),
            pax: Vec::new(),
            gnu_long_name: None,
        }
    }

    /// Sets the link name field verbatim.
    pub fn link_name(mut self, target: &[u8]) -> Entry {
        put_name(&mut self.header.as_old_mut().linkname, target);
        self.header.set_cksum();
        self
    }

    /// Adds a record to a PAX extended header in front of this entry.
    pub fn pax(mut self, key: &str, value: &[u8]) -> Entry {
        self.pax.push((key.to_owned(), value.to_vec()));
        self
    }

    /// Puts a GNU `L` long-name entry in front of this one.
    pub fn gnu_long_name(mut self, name: &[u8]) -> Entry {
        self.gnu_long_name = Some(name.to_vec());
        self
    }

    /// The path as the archive states it in the header's own name field.
    pub fn name(&self) -> Vec<u8> {
        self.header.path_bytes().into_owned()
    }
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `len` counts the whole record.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    assert_eq!(rec.len(), len);
    rec
}

/// Appends `entries` to `builder` (extension headers first where asked for).
pub fn append_entries<W: Write>(builder: &mut tar::Builder<W>, entries: &[Entry]) {
    for e in entries {
        if let Some(long) = &e.gnu_long_name {
            let mut data = long.clone();
            data.push(0);
            let h = Entry::raw_in(
                Header::new_gnu(),
                b"././@LongLink",
                EntryType::GNULongName,
                data,
            );
            builder.append(&h.header, &h.data[..]).expect("append");
        }
        if !e.pax.is_empty() {
            let data: Vec<u8> = e.pax.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            let h = Entry::raw(b"PaxHeaders/entry", EntryType::XHeader, data);
            builder.append(&h.header, &h.data[..]).expect("append");
        }
        builder.append(&e.header, &e.data[..]).expect("append");
    }
}

/// A plain tar of `entries`, with the two zero end blocks.
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    append_entries(&mut builder, entries);
    builder.into_inner().expect("finish the tar")
}

/// The entries of the valid base image.
pub fn base_entries() -> Vec<Entry> {
    vec![
        Entry::file(b"manifest", MANIFEST.as_bytes()),
        Entry::dir(b"rootfs/"),
        Entry::dir(b"rootfs/dir/"),
        Entry::file(b"rootfs/file", &noise(FILE_SIZE, 42)),
    ]
}

/// The valid base image as a plain tar.
pub fn base() -> Vec<u8> {
    tar(&base_entries())
}

/// The base image with one change made to its entry list.
pub fn with(change: impl FnOnce(&mut Vec<Entry>)) -> Vec<u8> {
    let mut entries = base_entries();
    change(&mut entries);
    tar(&entries)
}

/// The base image with `extra` appended after its entries.
pub fn plus(extra: Vec<Entry>) -> Vec<u8> {
    with(|e| e.extend(extra))
}

/// Index of the entry named `name` in `entries`.
pub fn position(entries: &[Entry], name: &[u8]) -> usize {
    entries
        .iter()
        .position(|e| e.name() == name)
        .expect("entry in the base image")
}

/// Offset of the header block of the entry named `name` in a plain tar (walks the headers).
pub fn header_offset(tar: &[u8], name: &[u8]) -> usize {
    let mut off = 0;
    while off + 512 <= tar.len() {
        let mut block = [0u8; 512];
        block.copy_from_slice(&tar[off..off + 512]);
        let h = Header::from_byte_slice(&block);
        if h.path_bytes().as_ref() == name {
            return off;
        }
        let size = h.entry_size().expect("size");
        off += 512 + (size as usize).div_ceil(512) * 512;
    }
    panic!("no entry {:?} in the tar", String::from_utf8_lossy(name));
}

/// `sha512-<hex>` of `data`: the image ID of an uncompressed tar.
pub fn image_id(data: &[u8]) -> String {
    let digest = Sha512::digest(data);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha512-{hex}")
}

/// The compressions an image may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Codec {
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Bzip2,
        Codec::Xz,
        Codec::Zstd,
    ];
    pub const COMPRESSED: [Codec; 4] = [Codec::Gzip, Codec::Bzip2, Codec::Xz, Codec::Zstd];

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Bzip2 => "bzip2",
            Codec::Xz => "xz",
            Codec::Zstd => "zstd",
        }
    }
}

/// A compressing writer over any `Write`; [`Encoder::finish`] writes the trailer.
pub enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Bzip2(bzip2::write::BzEncoder<W>),
    Xz(liblzma::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Starts a stream as `appcctl image build` writes it (every codec with its checksum).
    pub fn new(w: W, codec: Codec) -> Encoder<W> {
        match codec {
            Codec::None => Encoder::None(w),
            Codec::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::fast(),
            )),
            Codec::Bzip2 => {
                Encoder::Bzip2(bzip2::write::BzEncoder::new(w, bzip2::Compression::fast()))
            }
            Codec::Xz => Encoder::Xz(liblzma::write::XzEncoder::new(w, 1)),
            Codec::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, 3).expect("zstd encoder");
                e.include_checksum(true).expect("zstd checksum");
                Encoder::Zstd(e)
            }
        }
    }

    pub fn finish(self) -> W {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Bzip2(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
        .expect("finish the compressed stream")
    }

    fn inner(&mut self) -> &mut dyn Write {
        match self {
            Encoder::None(w) => w,
            Encoder::Gzip(e) => e,
            Encoder::Bzip2(e) => e,
            Encoder::Xz(e) => e,
            Encoder::Zstd(e) => e,
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner().flush()
    }
}

/// `data` compressed with `codec`.
pub fn compress(data: &[u8], codec: Codec) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new(), codec);
    e.write_all(data).expect("compress");
    e.finish()
}

/// The first half of `data`.
pub fn cut_in_half(data: &[u8]) -> Vec<u8> {
    data[..data.len() / 2].to_vec()
}

/// `data` with 16 bytes in its middle inverted.
pub fn flip_middle(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mid = out.len() / 2;
    for b in &mut out[mid - 8..mid + 8] {
        *b = !*b;
    }
    out
}

/// A decompression bomb: the base layout whose `rootfs/zeros` holds `expanded` zero bytes,
/// streamed through `codec` without ever holding the expanded tar in memory.
pub fn bomb(codec: Codec, expanded: u64) -> Vec<u8> {
    let mut builder = tar::Builder::new(Encoder::new(Vec::new(), codec));
    append_entries(
        &mut builder,
        &[
            Entry::file(b"manifest", MANIFEST.as_bytes()),
            Entry::dir(b"rootfs/"),
        ],
    );
    let mut zeros = Entry::raw(b"rootfs/zeros", EntryType::Regular, Vec::new());
    zeros.header.set_size(expanded);
    zeros.header.set_cksum();
    builder
        .append(&zeros.header, io::repeat(0).take(expanded))
        .expect("append the zeros");
    builder.into_inner().expect("finish the tar").finish()
}

/// A plain-tar image of exactly `total` bytes (a multiple of 512): the base layout plus a
/// padding file sized to fill it.
pub fn image_of_size(total: u64) -> Vec<u8> {
    assert_eq!(total % 512, 0);
    let head = [
        Entry::file(b"manifest", MANIFEST.as_bytes()),
        Entry::dir(b"rootfs/"),
    ];
    // manifest header + data blocks, rootfs header, padding header, two end blocks
    let fixed = 512 + (MANIFEST.len() as u64).div_ceil(512) * 512 + 512 + 512 + 1024;
    let pad = total - fixed;
    let mut entries: Vec<Entry> = head.into_iter().collect();
    entries.push(Entry::file(b"rootfs/pad", &noise(pad as usize, 9)));
    let out = tar(&entries);
    assert_eq!(out.len() as u64, total);
    out
}
