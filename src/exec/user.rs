//! The user and group an app runs as: spec/aci.md `app.user`/`app.group` and spec/ace.md Apps
//! perspective, requirements X5 and X6 (appc-requirements.md §2.5.6).
//!
//! X5 order, for the user and the group alike: (1) the name in the image's own `/etc/passwd`
//! resp. `/etc/group`; (2) if not found and all digits, that number; (3) if it starts with `/`,
//! the owner uid resp. group gid of that path inside the image. The image files are read through
//! [`inroot`](super::inroot), so `etc -> /etc` reads the image's, never the host's. X6: the
//! `supplementaryGIDs` are the process's groups, deduplicated, in order; groups from
//! `/etc/group` membership are not added (the spec does not ask for `initgroups`).
//!
//! Parsing is that of glibc's files backend, made total: blank lines, `#` comments, NIS `+`/`-`
//! lines and lines with too few fields or a non-numeric id are skipped; the first match wins.
//! The files are read with a size limit, so a hostile image can neither panic us nor make us
//! read gigabytes. The id 4294967295 (`(uid_t)-1`, "unchanged" to setuid/chown) is refused.

use std::os::fd::BorrowedFd;

use serde::{Deserialize, Serialize};

use super::inroot::{InRootError, read_in_root, stat_in_root};
use crate::schema::{App, UserGroup};

/// Largest `/etc/passwd` or `/etc/group` we read (real ones are a few KiB).
pub const MAX_ACCOUNT_FILE: u64 = 4 << 20;
const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// The resolved identity of an app's processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (X6), deduplicated, in manifest order.
    pub groups: Vec<u32>,
}

/// A user or group that cannot be resolved; `kind` is "user" or "group".
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(
        "{kind} {name:?} not found: it is not in the image's {file}{absent}, not a number and not \
         an absolute path"
    )]
    NotFound {
        kind: &'static str,
        name: String,
        file: &'static str,
        /// ", which does not exist" when the image has no such file.
        absent: &'static str,
    },
    #[error("{kind} {name:?}: the id is out of range (0 to 4294967294)")]
    OutOfRange { kind: &'static str, name: String },
    #[error("{kind} {name:?}: the path does not exist in the image, so it has no owner to use")]
    MissingPath { kind: &'static str, name: String },
    #[error("{kind} {name:?}: cannot read the image's {file}: {source}")]
    ReadFile {
        kind: &'static str,
        name: String,
        file: &'static str,
        source: InRootError,
    },
    #[error("{kind} {name:?}: cannot stat the path in the image: {source}")]
    StatPath {
        kind: &'static str,
        name: String,
        source: InRootError,
    },
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("supplementary gid 4294967295 is out of range")]
    SupplementaryOutOfRange,
}

/// Which account database a lookup uses.
#[derive(Clone, Copy)]
struct Db {
    kind: &'static str,
    file: &'static str,
    /// Index of the id field (passwd: uid is field 2; group: gid is field 2).
    id_field: usize,
    /// Fewest fields a valid line has (passwd needs name:pw:uid:gid, group name:pw:gid).
    min_fields: usize,
}

const USERS: Db = Db {
    kind: "user",
    file: PASSWD,
    id_field: 2,
    min_fields: 4,
};
const GROUPS: Db = Db {
    kind: "group",
    file: GROUP,
    id_field: 2,
    min_fields: 3,
};

/// Resolves `user`, `group` and the supplementary gids of an app against its root (X5, X6).
pub fn resolve_ids(
    root: BorrowedFd<'_>,
    user: &str,
    group: &str,
    supplementary: &[u32],
) -> Result<Ids, UserError> {
    let uid = resolve_one(root, USERS, user)?;
    let gid = resolve_one(root, GROUPS, group)?;
    let mut groups: Vec<u32> = Vec::with_capacity(supplementary.len());
    for &g in supplementary {
        if g == u32::MAX {
            return Err(UserError::SupplementaryOutOfRange);
        }
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(Ids { uid, gid, groups })
}

/// [`resolve_ids`] for an effective `app` section.
pub fn resolve_app_ids(root: BorrowedFd<'_>, app: &App) -> Result<Ids, UserError> {
    resolve_ids(
        root,
        app.user.as_str(),
        app.group.as_str(),
        &app.supplementary_gids,
    )
}

/// [`resolve_ids`] for already parsed [`UserGroup`]s.
pub fn resolve_user_group(
    root: BorrowedFd<'_>,
    user: &UserGroup,
    group: &UserGroup,
    supplementary: &[u32],
) -> Result<Ids, UserError> {
    resolve_ids(root, user.as_str(), group.as_str(), supplementary)
}

fn resolve_one(root: BorrowedFd<'_>, db: Db, name: &str) -> Result<u32, UserError> {
    if name.is_empty() {
        return Err(UserError::Empty { kind: db.kind });
    }
    let read_err = |source| UserError::ReadFile {
        kind: db.kind,
        name: name.to_owned(),
        file: db.file,
        source,
    };
    let file = read_in_root(root, db.file, MAX_ACCOUNT_FILE).map_err(read_err)?;
    if let Some(id) = file.as_deref().and_then(|f| lookup(f, db, name)) {
        return Ok(id);
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return parse_id(name).ok_or_else(|| UserError::OutOfRange {
            kind: db.kind,
            name: name.to_owned(),
        });
    }
    if name.starts_with('/') {
        return path_owner(root, db, name);
    }
    Err(UserError::NotFound {
        kind: db.kind,
        name: name.to_owned(),
        file: db.file,
        absent: if file.is_none() {
            ", which does not exist"
        } else {
            ""
        },
    })
}

/// X5 (3): the owner of a file inside the root, following symlinks inside the root.
fn path_owner(root: BorrowedFd<'_>, db: Db, path: &str) -> Result<u32, UserError> {
    let st = stat_in_root(root, path)
        .map_err(|source| UserError::StatPath {
            kind: db.kind,
            name: path.to_owned(),
            source,
        })?
        .ok_or_else(|| UserError::MissingPath {
            kind: db.kind,
            name: path.to_owned(),
        })?;
    Ok(if db.kind == USERS.kind {
        st.st_uid
    } else {
        st.st_gid
    })
}

/// A decimal id as the account files and manifests write it; `None` if malformed or
/// `(uid_t)-1`.
fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|id| *id != u32::MAX)
}

/// The id of the first line of an account file whose name is `name`.
fn lookup(file: &[u8], db: Db, name: &str) -> Option<u32> {
    file.split(|b| *b == b'\n')
        .filter_map(|line| parse_line(line, db))
        .find(|(n, _)| *n == name.as_bytes())
        .map(|(_, id)| id)
}

/// `name` and id of one line; `None` for blank, comment, NIS and malformed lines.
fn parse_line(line: &[u8], db: Db) -> Option<(&[u8], u32)> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if matches!(line.first(), None | Some(b'#' | b'+' | b'-')) {
        return None;
    }
    let fields: Vec<&[u8]> = line.splitn(db.min_fields + 1, |b| *b == b':').collect();
    if fields.len() < db.min_fields || fields[0].is_empty() {
        return None;
    }
    let id = parse_id(std::str::from_utf8(fields[db.id_field]).ok()?)?;
    Some((fields[0], id))
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::fs::symlink;

    use proptest::prelude::*;

    use super::*;
    use crate::exec::inroot::open_root;

    const PASSWD_TEXT: &str = "\
# comment: root:x:5:5
root:x:0:0:root:/root:/bin/sh

+nis::9:9
-nis2::9:9
short:x:7
daemon:x:1:1::/:/sbin/nologin
bad:x:abc:1::/:
neg:x:-1:1::/:
max:x:4294967295:1::/:
1000:x:2000:2000::/:
app:x:500:501::/home/app:/bin/sh\r
app:x:600:601::/:
";
    const GROUP_TEXT: &str = "root:x:0:\nwheel:x:10:app,root\ntiny:x\nstaff::50\n";

    fn image() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD_TEXT).unwrap();
        std::fs::write(dir.path().join("etc/group"), GROUP_TEXT).unwrap();
        let fd = open_root(dir.path()).unwrap();
        (dir, fd)
    }

    #[test]
    fn x5_names_from_image_files() {
        let (_d, fd) = image();
        let ids = resolve_ids(fd.as_fd(), "app", "wheel", &[3, 4, 3]).unwrap();
        assert_eq!(
            ids,
            Ids {
                uid: 500,
                gid: 10,
                groups: vec![3, 4]
            }
        );
        assert_eq!(resolve_one(fd.as_fd(), USERS, "daemon").unwrap(), 1);
        assert_eq!(resolve_one(fd.as_fd(), GROUPS, "staff").unwrap(), 50);
    }

    #[test]
    fn x5_malformed_lines_are_skipped() {
        let (_d, fd) = image();
        for name in ["short", "bad", "neg", "max", "nis", "+nis", "-nis2", "tiny"] {
            let e = resolve_one(fd.as_fd(), USERS, name).unwrap_err();
            assert!(matches!(e, UserError::NotFound { .. }), "{name}: {e}");
        }
        let e = resolve_one(fd.as_fd(), USERS, "nobody").unwrap_err();
        assert_eq!(
            e.to_string(),
            "user \"nobody\" not found: it is not in the image's /etc/passwd, not a number and \
             not an absolute path"
        );
    }

    #[test]
    fn x5_name_before_number() {
        let (_d, fd) = image();
        // A passwd entry named "1000" wins over the number (X5 step 1 before step 2).
        assert_eq!(resolve_one(fd.as_fd(), USERS, "1000").unwrap(), 2000);
        assert_eq!(resolve_one(fd.as_fd(), USERS, "1001").unwrap(), 1001);
        assert_eq!(resolve_one(fd.as_fd(), GROUPS, "0").unwrap(), 0);
        assert!(matches!(
            resolve_one(fd.as_fd(), USERS, "4294967295"),
            Err(UserError::OutOfRange { .. })
        ));
        assert!(matches!(
            resolve_one(fd.as_fd(), USERS, "99999999999"),
            Err(UserError::OutOfRange { .. })
        ));
        assert!(matches!(
            resolve_ids(fd.as_fd(), "0", "0", &[u32::MAX]),
            Err(UserError::SupplementaryOutOfRange)
        ));
    }

    #[test]
    fn x5_path_owner() {
        let (d, fd) = image();
        std::fs::create_dir(d.path().join("data")).unwrap();
        std::os::unix::fs::chown(d.path().join("data"), Some(1234), Some(4321)).unwrap();
        symlink("/data", d.path().join("link")).unwrap();
        let ids = resolve_ids(fd.as_fd(), "/data", "/link", &[]).unwrap();
        assert_eq!((ids.uid, ids.gid), (1234, 4321));
        assert!(matches!(
            resolve_one(fd.as_fd(), USERS, "/missing"),
            Err(UserError::MissingPath { .. })
        ));
    }

    #[test]
    fn x5_missing_files_and_hostile_files() {
        let d = tempfile::tempdir().unwrap();
        let fd = open_root(d.path()).unwrap();
        let e = resolve_one(fd.as_fd(), USERS, "app").unwrap_err();
        assert!(
            e.to_string().contains("/etc/passwd, which does not exist"),
            "{e}"
        );
        assert_eq!(resolve_one(fd.as_fd(), USERS, "7").unwrap(), 7);
        // /etc/passwd as a directory, then as an oversized file: errors, not panics.
        std::fs::create_dir_all(d.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_one(fd.as_fd(), USERS, "app"),
            Err(UserError::ReadFile { .. })
        ));
        std::fs::remove_dir(d.path().join("etc/passwd")).unwrap();
        let f = std::fs::File::create(d.path().join("etc/passwd")).unwrap();
        f.set_len(MAX_ACCOUNT_FILE + 1).unwrap();
        let e = resolve_one(fd.as_fd(), USERS, "app").unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    #[test]
    fn app_entry_point() {
        let (_d, fd) = image();
        let app: App = crate::schema::decode::decode_document(
            r#"{"exec":["/bin/sh"],"user":"app","group":"0","supplementaryGIDs":[10,10]}"#,
        )
        .unwrap()
        .value;
        let ids = resolve_app_ids(fd.as_fd(), &app).unwrap();
        assert_eq!(
            ids,
            Ids {
                uid: 500,
                gid: 0,
                groups: vec![10]
            }
        );
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_files_never_panics(file in proptest::collection::vec(any::<u8>(), 0..512),
                                               name in "[a-z0-9:#+-]{0,8}") {
            let _ = lookup(&file, USERS, &name);
            let _ = lookup(&file, GROUPS, &name);
        }

        #[test]
        fn a_found_id_is_on_a_matching_line(lines in proptest::collection::vec("[a-z0-9:#+\\-x]{0,20}", 0..20),
                                           name in "[a-z]{1,3}") {
            let file = lines.join("\n");
            if let Some(id) = lookup(file.as_bytes(), USERS, &name) {
                let prefix = format!("{name}:");
                let hit = lines.iter().any(|l| l.starts_with(&prefix)
                    && l.split(':').nth(2) == Some(id.to_string().as_str()));
                prop_assert!(hit);
            }
        }
    }
}
