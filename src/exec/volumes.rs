//! Volumes: from the reified pod manifest to the bind mounts of each app. spec/ace.md Volume
//! Setup and spec/pods.md volumes/mounts; requirements V1–V12 (appc-requirements.md §2.5.3) and
//! P2/P5 (§2.4).
//!
//! This module plans; the pod init executes. [`create_empty_volumes`] makes the `empty`
//! volumes' directories on the host, [`plan_app_mounts`] turns one app's `mounts` into
//! [`MountPlan`]s, and the init prepares each target with
//! [`prepare_mount_target`](super::inroot::prepare_mount_target) (V2–V5, V7, V10) and bind
//! mounts the source onto it.
//!
//! Decisions:
//! - V6: overlapping or nested targets of one app are an error naming both mounts (targets are
//!   compared after lexical normalisation, so `/a/../b` and `/b` collide).
//! - V8: no host path is ever created for a `host` volume; a missing source is an error (V9).
//! - V11: a `host` source that is a symlink, or below a symlinked directory, is an error; so is
//!   a source with `.` or `..` components (it would hide which directories are walked). Symlink
//!   sources are not supported, so there is no per-pod switch. The init should still open the
//!   source with `openat2(RESOLVE_NO_SYMLINKS)` at mount time to close the check-to-mount race.
//! - V12 (unspecified): a mount is read-only if the volume or the image's mount point says so.
//! - `recursive` unset on a host volume means recursive (the spec's SHOULD); `empty` volumes are
//!   plain directories and are never recursive.
//! - A mount point of the app without a mount at its path is an error, not a warning: P5 says a
//!   reified manifest satisfies every mount point, and the manifest composer adds implicit
//!   `empty` volumes before this runs, so a gap here is a bug or a hand-written manifest.
//! - A mount's `appVolume` overrides the pod volume of the same name for that mount only.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, chown};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::inroot::{InRootError, normalize_in_root};
use crate::schema::{AcName, App, Mount, PodManifest, RuntimeApp, Volume, VolumeKind};

/// One bind mount of one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// The volume's name.
    pub volume: String,
    /// The host path to bind.
    pub source: PathBuf,
    /// Absolute, normalised path inside the app root.
    pub target: String,
    pub read_only: bool,
    /// `MS_REC`: submounts of the source come along.
    pub recursive: bool,
    /// The source is not a directory (V10): the target must be a file.
    pub is_file: bool,
}

/// A volume that cannot be created or mounted.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "app {app}: the mount at {path} names volume {volume}, which the pod does not define; \
         add it to the pod's volumes (--volume)"
    )]
    UnknownVolume {
        app: String,
        volume: String,
        path: String,
    },
    #[error("app {app}: mount point {name} at {path} has no volume; pass --volume/--mount for it")]
    MountPointWithoutVolume {
        app: String,
        name: String,
        path: String,
    },
    #[error(
        "app {app}: volume {volume_a} at {path_a} and volume {volume_b} at {path_b} overlap; \
         nested or identical mount paths are not allowed, move one of them"
    )]
    Overlap {
        app: String,
        volume_a: String,
        path_a: String,
        volume_b: String,
        path_b: String,
    },
    #[error("app {app}: volume {volume} cannot be mounted at {path}: {source}")]
    Target {
        app: String,
        volume: String,
        path: String,
        source: InRootError,
    },
    #[error(
        "app {app}: volume {volume} cannot be mounted at {path}, the whole root; pick a directory"
    )]
    RootTarget {
        app: String,
        volume: String,
        path: String,
    },
    #[error(
        "volume {volume}: host source {} does not exist; create it or fix the volume's source",
        source_path.display()
    )]
    MissingSource {
        volume: String,
        source_path: PathBuf,
    },
    #[error(
        "volume {volume}: host source {} is a symlink or lies below one ({}); symlinks are not \
         followed, name the real path",
        source_path.display(), symlink.display()
    )]
    SymlinkSource {
        volume: String,
        source_path: PathBuf,
        symlink: PathBuf,
    },
    #[error(
        "volume {volume}: host source {} has '.' or '..' components; name the normalised path",
        source_path.display()
    )]
    UnnormalizedSource {
        volume: String,
        source_path: PathBuf,
    },
    #[error("volume {volume}: cannot inspect host path {}: {source}", path.display())]
    StatSource {
        volume: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("volume {volume}: cannot {op} {}: {source}", path.display())]
    CreateEmpty {
        volume: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "volume {volume}: {} exists but is not a directory; remove it or the pod",
        path.display()
    )]
    EmptyNotDirectory { volume: String, path: PathBuf },
    #[error(
        "volume {volume}: defined twice as an empty volume with different mode, uid or gid; \
         give the app volume another name"
    )]
    ConflictingEmpty { volume: String },
}

/// Directory of an `empty` volume: `<pod_dir>/volumes/<name>` (an AC Name has no `/` or `.`).
pub fn empty_volume_dir(pod_dir: &Path, name: &AcName) -> PathBuf {
    pod_dir.join("volumes").join(name.as_str())
}

/// Every `empty` volume of the pod, from `volumes` and from the apps' `appVolume`s, once each.
fn empty_volumes(pod: &PodManifest) -> Result<Vec<&Volume>, VolumeError> {
    let app_volumes = pod
        .apps
        .iter()
        .flat_map(|a| a.mounts.iter().filter_map(|m| m.app_volume.as_ref()));
    let mut out: Vec<&Volume> = Vec::new();
    for v in pod.volumes.iter().chain(app_volumes) {
        if !matches!(v.kind, VolumeKind::Empty { .. }) {
            continue;
        }
        match out.iter().find(|o| o.name == v.name) {
            Some(o) if o.kind != v.kind => {
                return Err(VolumeError::ConflictingEmpty {
                    volume: v.name.to_string(),
                });
            }
            Some(_) => {}
            None => out.push(v),
        }
    }
    Ok(out)
}

/// Creates the directory of every `empty` volume with its mode, uid and gid (defaults 0755, 0,
/// 0). Idempotent: an existing directory is left as it is (the apps may have changed it).
/// Crash-safe: each is made under a temporary name, chowned, chmodded, then renamed into place,
/// so a directory at the final name is always complete.
pub fn create_empty_volumes(pod: &PodManifest, pod_dir: &Path) -> Result<(), VolumeError> {
    let volumes = empty_volumes(pod)?;
    let Some(first) = volumes.first() else {
        return Ok(());
    };
    let base = pod_dir.join("volumes");
    fs::create_dir_all(&base).map_err(|e| create_err(first, "create", &base, e))?;
    for v in &volumes {
        create_empty_volume(v, &base)?;
    }
    // The renames are durable only once the directory holding them is synced (STYLE 3.3 §12).
    fs::File::open(&base)
        .and_then(|d| d.sync_all())
        .map_err(|e| create_err(first, "sync", &base, e))
}

fn create_err(v: &Volume, op: &'static str, path: &Path, source: io::Error) -> VolumeError {
    VolumeError::CreateEmpty {
        volume: v.name.to_string(),
        op,
        path: path.to_owned(),
        source,
    }
}

fn create_empty_volume(v: &Volume, base: &Path) -> Result<(), VolumeError> {
    let VolumeKind::Empty { mode, uid, gid } = v.kind else {
        return Ok(());
    };
    let dir = base.join(v.name.as_str());
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(VolumeError::EmptyNotDirectory {
                volume: v.name.to_string(),
                path: dir,
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(create_err(v, "inspect", &dir, e)),
    }
    // A leftover from a crash is ours and incomplete: start it over.
    let tmp = base.join(format!(".tmp-{}", v.name));
    match fs::remove_dir_all(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(create_err(v, "remove", &tmp, e));
        }
        _ => {}
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(|e| create_err(v, "create", &tmp, e))?;
    // chown before chmod: chown may clear set-id bits that the mode asks for.
    chown(&tmp, Some(uid), Some(gid)).map_err(|e| create_err(v, "chown", &tmp, e))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode.bits()))
        .map_err(|e| create_err(v, "chmod", &tmp, e))?;
    fs::rename(&tmp, &dir).map_err(|e| create_err(v, "rename", &dir, e))
}

/// The bind mounts of one app, in manifest order (any order is safe: V6 nesting is refused).
/// `image_app` is the effective app section (`app.app` or the image's) whose mount points are
/// matched by path: every mount point needs a mount (P5), and its `readOnly` is ORed in (V12).
pub fn plan_app_mounts(
    pod: &PodManifest,
    app: &RuntimeApp,
    image_app: Option<&App>,
    pod_dir: &Path,
) -> Result<Vec<MountPlan>, VolumeError> {
    let mut plans: Vec<MountPlan> = Vec::with_capacity(app.mounts.len());
    for mount in &app.mounts {
        let plan = plan_mount(pod, app, image_app, mount, pod_dir)?;
        check_overlap(app, &plans, &plan)?;
        plans.push(plan);
    }
    check_mount_points(app, image_app, &plans)?;
    Ok(plans)
}

fn plan_mount(
    pod: &PodManifest,
    app: &RuntimeApp,
    image_app: Option<&App>,
    mount: &Mount,
    pod_dir: &Path,
) -> Result<MountPlan, VolumeError> {
    let volume = find_volume(pod, app, mount)?;
    let target = normalize_target(app, mount)?;
    let mount_point_ro = image_app
        .into_iter()
        .flat_map(|a| &a.mount_points)
        .any(|mp| mp.read_only && normalize_in_root(mp.path.as_str()).ok() == Some(target.clone()));
    let (source, recursive, is_file) = match &volume.kind {
        VolumeKind::Host { source, recursive } => {
            let is_file = check_host_source(volume, source.as_path())?;
            (
                source.as_path().to_owned(),
                recursive.unwrap_or(true),
                is_file,
            )
        }
        VolumeKind::Empty { .. } => (empty_volume_dir(pod_dir, &volume.name), false, false),
    };
    Ok(MountPlan {
        volume: volume.name.to_string(),
        source,
        target,
        read_only: volume.read_only.unwrap_or(false) || mount_point_ro,
        recursive,
        is_file,
    })
}

fn find_volume<'a>(
    pod: &'a PodManifest,
    app: &RuntimeApp,
    mount: &'a Mount,
) -> Result<&'a Volume, VolumeError> {
    if let Some(v) = &mount.app_volume {
        return Ok(v);
    }
    pod.volumes
        .iter()
        .find(|v| v.name == mount.volume)
        .ok_or_else(|| VolumeError::UnknownVolume {
            app: app.name.to_string(),
            volume: mount.volume.to_string(),
            path: mount.path.to_string(),
        })
}

fn normalize_target(app: &RuntimeApp, mount: &Mount) -> Result<String, VolumeError> {
    let target = normalize_in_root(mount.path.as_str()).map_err(|source| VolumeError::Target {
        app: app.name.to_string(),
        volume: mount.volume.to_string(),
        path: mount.path.to_string(),
        source,
    })?;
    if target == "/" {
        return Err(VolumeError::RootTarget {
            app: app.name.to_string(),
            volume: mount.volume.to_string(),
            path: mount.path.to_string(),
        });
    }
    Ok(target)
}

/// V9 and V11 for a host source; returns whether it is a non-directory (V10).
fn check_host_source(volume: &Volume, source: &Path) -> Result<bool, VolumeError> {
    let name = volume.name.to_string();
    if source
        .components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return Err(VolumeError::UnnormalizedSource {
            volume: name,
            source_path: source.to_owned(),
        });
    }
    // Walk from the top so the first symlink (V11) or missing directory (V9) is the one named.
    for path in source.ancestors().collect::<Vec<_>>().into_iter().rev() {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VolumeError::MissingSource {
                    volume: name,
                    source_path: source.to_owned(),
                });
            }
            Err(e) => {
                return Err(VolumeError::StatSource {
                    volume: name,
                    path: path.to_owned(),
                    source: e,
                });
            }
        };
        if meta.file_type().is_symlink() {
            return Err(VolumeError::SymlinkSource {
                volume: name,
                source_path: source.to_owned(),
                symlink: path.to_owned(),
            });
        }
        if path == source {
            return Ok(!meta.is_dir());
        }
    }
    Ok(false)
}

/// Whether `outer` is `inner` or one of its ancestors (both normalised and absolute).
fn contains(outer: &str, inner: &str) -> bool {
    outer == inner
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// V6: a new mount may neither sit on, nor above, nor below an earlier one.
fn check_overlap(
    app: &RuntimeApp,
    plans: &[MountPlan],
    new: &MountPlan,
) -> Result<(), VolumeError> {
    match plans
        .iter()
        .find(|p| contains(&p.target, &new.target) || contains(&new.target, &p.target))
    {
        Some(p) => Err(VolumeError::Overlap {
            app: app.name.to_string(),
            volume_a: p.volume.clone(),
            path_a: p.target.clone(),
            volume_b: new.volume.clone(),
            path_b: new.target.clone(),
        }),
        None => Ok(()),
    }
}

/// P5: every mount point of the effective app has a mount at its path.
fn check_mount_points(
    app: &RuntimeApp,
    image_app: Option<&App>,
    plans: &[MountPlan],
) -> Result<(), VolumeError> {
    for mp in image_app.into_iter().flat_map(|a| &a.mount_points) {
        let path = normalize_in_root(mp.path.as_str()).ok();
        if !plans.iter().any(|p| Some(&p.target) == path.as_ref()) {
            return Err(VolumeError::MountPointWithoutVolume {
                app: app.name.to_string(),
                name: mp.name.to_string(),
                path: mp.path.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;
    use crate::schema::decode::decode_document;

    fn pod(json: &str) -> PodManifest {
        decode_document::<PodManifest>(json).unwrap().value
    }

    fn app_json(mounts: &str) -> String {
        format!(
            r#"{{"name":"web","image":{{"id":"sha512-{}"}},"mounts":{mounts}}}"#,
            "0".repeat(64)
        )
    }

    fn pod_with(volumes: &str, mounts: &str) -> PodManifest {
        pod(&format!(
            r#"{{"acKind":"PodManifest","acVersion":"0.8.11","apps":[{}],"volumes":{volumes}}}"#,
            app_json(mounts)
        ))
    }

    fn plan(p: &PodManifest, image_app: Option<&App>) -> Result<Vec<MountPlan>, VolumeError> {
        plan_app_mounts(p, &p.apps[0], image_app, Path::new("/pods/x"))
    }

    #[test]
    fn v1_host_and_empty_plans() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("f"), "x").unwrap();
        let src = host.path().display();
        let p = pod_with(
            &format!(
                r#"[{{"name":"h","kind":"host","source":"{src}","readOnly":true}},
                    {{"name":"f","kind":"host","source":"{src}/f","recursive":false}},
                    {{"name":"e","kind":"empty"}}]"#
            ),
            r#"[{"volume":"h","path":"/data"},{"volume":"f","path":"/etc/./x.conf"},
                {"volume":"e","path":"/scratch"}]"#,
        );
        let plans = plan(&p, None).unwrap();
        assert_eq!(
            plans,
            vec![
                MountPlan {
                    volume: "h".into(),
                    source: host.path().to_owned(),
                    target: "/data".into(),
                    read_only: true,
                    recursive: true,
                    is_file: false
                },
                MountPlan {
                    volume: "f".into(),
                    source: host.path().join("f"),
                    target: "/etc/x.conf".into(),
                    read_only: false,
                    recursive: false,
                    is_file: true
                },
                MountPlan {
                    volume: "e".into(),
                    source: "/pods/x/volumes/e".into(),
                    target: "/scratch".into(),
                    read_only: false,
                    recursive: false,
                    is_file: false
                },
            ]
        );
    }

    #[test]
    fn v6_overlap_names_both() {
        let p = pod_with(
            r#"[{"name":"a","kind":"empty"},{"name":"b","kind":"empty"}]"#,
            r#"[{"volume":"a","path":"/srv"},{"volume":"b","path":"/srv/x/../sub"}]"#,
        );
        let e = plan(&p, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "app web: volume a at /srv and volume b at /srv/sub overlap; nested or identical \
             mount paths are not allowed, move one of them"
        );
        // Siblings sharing a prefix are fine.
        let p = pod_with(
            r#"[{"name":"a","kind":"empty"},{"name":"b","kind":"empty"}]"#,
            r#"[{"volume":"a","path":"/srv"},{"volume":"b","path":"/srv2"}]"#,
        );
        assert_eq!(plan(&p, None).unwrap().len(), 2);
    }

    #[test]
    fn unknown_volume_and_root_target() {
        // The decoder refuses this already; plans are also made from composed manifests.
        let mut p = pod_with(
            r#"[{"name":"a","kind":"empty"}]"#,
            r#"[{"volume":"a","path":"/x"}]"#,
        );
        p.apps[0].mounts[0].volume = AcName::parse("nope").unwrap();
        let e = plan(&p, None).unwrap_err().to_string();
        assert!(
            e.contains("volume nope") && e.contains("/x") && e.contains("app web"),
            "{e}"
        );
        let p = pod_with(
            r#"[{"name":"a","kind":"empty"}]"#,
            r#"[{"volume":"a","path":"/.."}]"#,
        );
        assert!(matches!(
            plan(&p, None),
            Err(VolumeError::RootTarget { .. })
        ));
    }

    #[test]
    fn v9_v11_host_sources() {
        let host = tempfile::tempdir().unwrap();
        let real = host.path().join("real");
        std::fs::create_dir_all(real.join("sub")).unwrap();
        symlink(&real, host.path().join("link")).unwrap();
        let check = |src: PathBuf| {
            let p = pod_with(
                &format!(
                    r#"[{{"name":"h","kind":"host","source":"{}"}}]"#,
                    src.display()
                ),
                r#"[{"volume":"h","path":"/data"}]"#,
            );
            plan(&p, None)
        };
        assert!(check(real.join("sub")).is_ok());
        assert!(matches!(
            check(host.path().join("missing")),
            Err(VolumeError::MissingSource { .. })
        ));
        match check(host.path().join("link")) {
            Err(VolumeError::SymlinkSource { symlink, .. }) => {
                assert_eq!(symlink, host.path().join("link"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check(host.path().join("link/sub")),
            Err(VolumeError::SymlinkSource { .. })
        ));
        assert!(matches!(
            check(real.join("sub/..")),
            Err(VolumeError::UnnormalizedSource { .. })
        ));
    }

    #[test]
    fn v12_mount_point_read_only_and_p5() {
        let app: App = decode_document(
            r#"{"exec":["/bin/sh"],"user":"0","group":"0",
                "mountPoints":[{"name":"data","path":"/data/","readOnly":true}]}"#,
        )
        .unwrap()
        .value;
        let p = pod_with(
            r#"[{"name":"data","kind":"empty","readOnly":false}]"#,
            r#"[{"volume":"data","path":"/data"}]"#,
        );
        assert!(plan(&p, Some(&app)).unwrap()[0].read_only);
        let p = pod_with(r#"[]"#, r#"[]"#);
        let e = plan(&p, Some(&app)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "app web: mount point data at /data/ has no volume; pass --volume/--mount for it"
        );
    }

    #[test]
    fn empty_volumes_created_with_mode_and_owner() {
        let pod_dir = tempfile::tempdir().unwrap();
        let p = pod_with(
            r#"[{"name":"a","kind":"empty","mode":"1770","uid":1000,"gid":2000},
                {"name":"b","kind":"empty"}, {"name":"h","kind":"host","source":"/"}]"#,
            r#"[{"volume":"c","path":"/c","appVolume":{"name":"c","kind":"empty","mode":"0700"}}]"#,
        );
        create_empty_volumes(&p, pod_dir.path()).unwrap();
        let stat = |n: &str| {
            let m = std::fs::symlink_metadata(pod_dir.path().join("volumes").join(n)).unwrap();
            (m.is_dir(), m.mode() & 0o7777, m.uid(), m.gid())
        };
        assert_eq!(stat("a"), (true, 0o1770, 1000, 2000));
        assert_eq!(stat("b"), (true, 0o755, 0, 0));
        assert_eq!(stat("c"), (true, 0o700, 0, 0));
        assert!(!pod_dir.path().join("volumes/h").exists());
        // Idempotent, and an app's changes survive a second call.
        std::fs::write(pod_dir.path().join("volumes/a/kept"), "x").unwrap();
        create_empty_volumes(&p, pod_dir.path()).unwrap();
        assert!(pod_dir.path().join("volumes/a/kept").exists());
        let names: Vec<_> = std::fs::read_dir(pod_dir.path().join("volumes"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "no temporary directories left: {names:?}");
    }

    #[test]
    fn empty_volume_leftovers_and_conflicts() {
        let pod_dir = tempfile::tempdir().unwrap();
        let vols = pod_dir.path().join("volumes");
        std::fs::create_dir_all(vols.join(".tmp-a/junk")).unwrap();
        std::fs::write(vols.join("b"), "not a dir").unwrap();
        let p = pod_with(r#"[{"name":"a","kind":"empty"}]"#, "[]");
        create_empty_volumes(&p, pod_dir.path()).unwrap();
        assert!(std::fs::read_dir(vols.join("a")).unwrap().next().is_none());
        assert!(!vols.join(".tmp-a").exists());
        let p = pod_with(r#"[{"name":"b","kind":"empty"}]"#, "[]");
        assert!(matches!(
            create_empty_volumes(&p, pod_dir.path()),
            Err(VolumeError::EmptyNotDirectory { .. })
        ));
        let p = pod_with(
            r#"[{"name":"c","kind":"empty"}]"#,
            r#"[{"volume":"c","path":"/c","appVolume":{"name":"c","kind":"empty","mode":"0700"}}]"#,
        );
        assert!(matches!(
            create_empty_volumes(&p, pod_dir.path()),
            Err(VolumeError::ConflictingEmpty { .. })
        ));
    }
}
