//! The key files on disk: `trustedkeys/prefix.d/<prefix>/<FINGERPRINT>` and
//! `trustedkeys/root.d/<FINGERPRINT>`, under the configuration and the vendor directory (rkt's
//! layout, reference/rkt.md §2.13).
//!
//! A prefix is a path of image-name components, and trust is hierarchical on whole components:
//! `prefix.d/example.com/team/K` trusts `example.com/team` and `example.com/team/app`, never
//! `example.com/teamx`. Looking keys up by walking the name's ancestors as directories gives
//! that rule by construction.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sequoia_openpgp::Cert;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;

use super::TrustError;
use crate::schema::AcIdentifier;

/// Directory under the configuration or vendor directory that holds the keys.
pub const TRUSTED_KEYS: &str = "trustedkeys";
const PREFIX_D: &str = "prefix.d";
const ROOT_D: &str = "root.d";
/// Temporary files of an interrupted write start with this; lookups and listings skip them.
const TMP_PREFIX: &str = ".tmp-";
/// A prefix tree deeper than this is not an image name (guards against symlink loops).
const MAX_DEPTH: usize = 64;

/// An image-name prefix keys can be trusted for: an AC Identifier whose `/`-separated
/// components are each a plain name (no empty, `.` or `..` component), so it maps onto a
/// directory below `prefix.d` and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix(String);

impl Prefix {
    pub fn parse(s: &str) -> Result<Prefix, TrustError> {
        let invalid = |reason: String| TrustError::InvalidPrefix {
            prefix: s.to_owned(),
            reason,
        };
        AcIdentifier::parse(s).map_err(|e| invalid(e.to_string()))?;
        if s.starts_with('/') {
            return Err(invalid("it must not be an absolute path".into()));
        }
        if let Some(c) = s
            .split('/')
            .find(|c| c.is_empty() || *c == "." || *c == "..")
        {
            return Err(invalid(format!("path component {c:?} is not allowed")));
        }
        Ok(Prefix(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefixes that trust `name`, shortest first: `a.com`, `a.com/team`, `a.com/team/app`.
    pub fn ancestors_of(name: &AcIdentifier) -> Result<Vec<Prefix>, TrustError> {
        let full = Prefix::parse(name.as_str()).map_err(|e| match e {
            TrustError::InvalidPrefix { reason, .. } => TrustError::InvalidName {
                name: name.to_string(),
                reason,
            },
            other => other,
        })?;
        let mut out = Vec::new();
        for (i, c) in full.0.char_indices() {
            if c == '/' {
                out.push(Prefix(full.0[..i].to_owned()));
            }
        }
        out.push(full);
        Ok(out)
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a key is trusted for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Every image (`root.d`).
    Root,
    /// Images named by the prefix or below it (`prefix.d/<prefix>`).
    Prefix(Prefix),
}

impl Scope {
    /// The prefix as `Verified` reports it: `""` for root.
    pub fn prefix_str(&self) -> &str {
        match self {
            Scope::Root => "",
            Scope::Prefix(p) => p.as_str(),
        }
    }

    fn dir(&self, base: &Path) -> PathBuf {
        match self {
            Scope::Root => base.join(TRUSTED_KEYS).join(ROOT_D),
            Scope::Prefix(p) => base.join(TRUSTED_KEYS).join(PREFIX_D).join(&p.0),
        }
    }
}

/// Which tree a key file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The configuration directory (`/etc/appc`): the administrator's keys.
    Config,
    /// The vendor directory (`/usr/lib/appc`): keys shipped with the distribution.
    Vendor,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Vendor => "vendor",
        }
    }
}

/// One key file and what it trusts.
#[derive(Debug)]
pub struct KeyFile {
    pub scope: Scope,
    pub source: Source,
    pub path: PathBuf,
    /// The file name: the fingerprint it was stored under.
    pub file_name: String,
    /// The parsed certificate, or why it could not be parsed.
    pub cert: Result<Cert, String>,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> TrustError + 'a {
    move |source| TrustError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// The key files directly in `scope`'s directory under `base` (sub-prefix directories are not
/// descended into). A missing directory holds no keys.
pub fn keys_in(base: &Path, source: Source, scope: &Scope) -> Result<Vec<KeyFile>, TrustError> {
    let dir = scope.dir(base);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read directory", &dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("read directory", &dir))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('.') {
            continue; // temporary files of a write in progress, editor droppings
        }
        let path = entry.path();
        // Follows symlinks: a packager may link a key file into place. A dangling link is
        // a broken key file, reported with its path.
        let cert = match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => continue, // a sub-prefix
            Ok(meta) if meta.is_file() => read_cert(&path),
            // Never read a FIFO or device: it could block or never end.
            Ok(_) => Err("not a regular file".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        out.push(KeyFile {
            scope: scope.clone(),
            source,
            path,
            file_name,
            cert,
        });
    }
    out.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(out)
}

fn read_cert(path: &Path) -> Result<Cert, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    Cert::from_bytes(&bytes).map_err(|e| format!("{e:#}"))
}

/// Every key file under `base`: root.d and the whole prefix.d tree.
pub fn all_keys(base: &Path, source: Source) -> Result<Vec<KeyFile>, TrustError> {
    let mut out = keys_in(base, source, &Scope::Root)?;
    let top = base.join(TRUSTED_KEYS).join(PREFIX_D);
    walk_prefixes(base, source, &top, "", 0, &mut out)?;
    Ok(out)
}

fn walk_prefixes(
    base: &Path,
    source: Source,
    dir: &Path,
    rel: &str,
    depth: usize,
    out: &mut Vec<KeyFile>,
) -> Result<(), TrustError> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    if !rel.is_empty() {
        // A directory whose path is not a valid prefix cannot match any image name.
        if let Ok(p) = Prefix::parse(rel) {
            out.extend(keys_in(base, source, &Scope::Prefix(p))?);
        }
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read directory", dir)(e)),
    };
    let mut subdirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("read directory", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            subdirs.push(name);
        }
    }
    subdirs.sort();
    for name in subdirs {
        let rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        walk_prefixes(base, source, &dir.join(&name), &rel, depth + 1, out)?;
    }
    Ok(())
}

/// Writes `cert` (public parts, ASCII-armored) as `<scope dir>/<FINGERPRINT>` under `base`,
/// creating directories with mode 0755; the file (0644) appears whole or not at all.
pub fn write_key(base: &Path, scope: &Scope, cert: &Cert) -> Result<PathBuf, TrustError> {
    let dir = scope.dir(base);
    create_dirs(&dir)?;
    let name = cert.fingerprint().to_hex();
    let bytes = cert.armored().to_vec().map_err(|e| TrustError::Serialize {
        fingerprint: name.clone(),
        reason: format!("{e:#}"),
    })?;
    let target = dir.join(&name);
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    if let Err(e) = write_new(&tmp, &bytes) {
        let _ = fs::remove_file(&tmp); // best effort: the write already failed
        return Err(io_err("write", &tmp)(e));
    }
    fs::rename(&tmp, &target).map_err(io_err("rename into place", &target))?;
    sync_dir(&dir)?;
    Ok(target)
}

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    // Explicit, so the umask cannot make a trusted key unreadable for `appcctl trust list`.
    f.set_permissions(Permissions::from_mode(0o644))?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> Result<(), TrustError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

/// `create_dir_all` with mode 0755 on every directory it creates, whatever the umask.
fn create_dirs(dir: &Path) -> Result<(), TrustError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            fs::set_permissions(dir, Permissions::from_mode(0o755))
                .map_err(io_err("set permissions of", dir))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(io_err("create directory", dir)(e)),
    }
}

/// Removes the key file and then the prefix directories it leaves empty (up to `prefix.d`).
pub fn remove_key(base: &Path, key: &KeyFile) -> Result<(), TrustError> {
    fs::remove_file(&key.path).map_err(io_err("remove", &key.path))?;
    let Some(dir) = key.path.parent() else {
        return Ok(());
    };
    sync_dir(dir)?;
    if let Scope::Prefix(_) = key.scope {
        let stop = base.join(TRUSTED_KEYS).join(PREFIX_D);
        let mut d = dir.to_path_buf();
        // remove_dir fails on a non-empty directory, which is where we stop.
        while d.starts_with(&stop) && d != stop && fs::remove_dir(&d).is_ok() {
            match d.parent() {
                Some(p) => d = p.to_path_buf(),
                None => break,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(Prefix::parse("example.com/team").is_ok());
        assert!(Prefix::parse("example.com").is_ok());
        for bad in [
            "",
            "/etc",
            "example.com/../etc",
            "a/./b",
            "a//b",
            "Example.com",
            "a/",
        ] {
            assert!(Prefix::parse(bad).is_err(), "{bad:?} accepted");
        }
        let name = AcIdentifier::parse("example.com/team/app").unwrap();
        let a: Vec<String> = Prefix::ancestors_of(&name)
            .unwrap()
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(
            a,
            ["example.com", "example.com/team", "example.com/team/app"]
        );
        let evil = AcIdentifier::parse("victim.com/../evil.com").unwrap();
        assert!(Prefix::ancestors_of(&evil).is_err());
    }
}
