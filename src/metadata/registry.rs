//! Registered pods: validated once at registration into ready-made answers (every GET is a map
//! lookup and a reference-counted copy of bytes), persisted as `pods/<uuid>.json`.
//!
//! Readers take a read lock only to clone an `Arc`; registrations are serialised by their own
//! mutex and do their file I/O (fsync) before taking the write lock, so a registration never
//! stalls the pods' requests for the length of a disk flush.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;
use serde::{Deserialize, Serialize};

use super::{MetadataError, persist};
use crate::schema::{ImageManifest, PodManifest, PodUuid};

/// The registrations' directory under the state directory.
pub const PODS_DIR: &str = "pods";

/// What `appcctl` sends for one pod (the body of `PUT /v1/pods/<uuid>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// The reified pod manifest (every app has its image id).
    pub manifest: PodManifest,
    /// Per pod app name: its image.
    pub apps: BTreeMap<String, AppImage>,
    /// The pod's addresses on the pod network (empty for host and no networking).
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// The token of `AC_METADATA_URL`, for pods not known by an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The pod's init, to drop the registration once it is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitProcess>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppImage {
    pub image_id: String,
    /// The image manifest exactly as stored in the image ("original image manifest").
    pub image_manifest: String,
}

/// A process, identified across PID reuse by its start time (field 22 of /proc/PID/stat).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitProcess {
    pub pid: u32,
    pub start_time: u64,
}

impl InitProcess {
    fn is_alive(&self) -> bool {
        crate::exec::launch::process_start_time(self.pid) == Some(self.start_time)
    }
}

/// One app's answers.
#[derive(Debug)]
pub struct AppEntry {
    /// The image's annotations with the pod app's applied (pod wins, in place).
    pub annotations: Bytes,
    pub image_manifest: Bytes,
    pub image_id: Bytes,
}

/// One pod's answers.
#[derive(Debug)]
pub struct PodEntry {
    pub uuid: PodUuid,
    /// Canonical form, no trailing newline (the ACE validator parses it as is).
    pub uuid_text: Bytes,
    /// The reified manifest; `annotations` is always present (`[]` when empty).
    pub manifest: Bytes,
    /// Exactly the manifest's `annotations` array.
    pub annotations: Bytes,
    pub apps: HashMap<String, AppEntry>,
    pub registration: Registration,
}

impl PodEntry {
    /// Validates a registration and computes every answer.
    pub fn build(uuid: &str, reg: Registration) -> Result<PodEntry, MetadataError> {
        let invalid = |reason: String| MetadataError::Invalid {
            pod: uuid.to_owned(),
            reason,
        };
        let pod_uuid = PodUuid::parse(uuid).map_err(|e| invalid(e.to_string()))?;
        if let Some(t) = &reg.token {
            check_token(t).map_err(invalid)?;
        }
        if let Some(a) = reg
            .addresses
            .iter()
            .find(|a| a.is_unspecified() || a.is_multicast())
        {
            return Err(invalid(format!("{a} cannot be a pod address")));
        }
        if let Some(name) = reg.apps.keys().find(|n| {
            !reg.manifest
                .apps
                .iter()
                .any(|a| a.name.as_str() == n.as_str())
        }) {
            return Err(invalid(format!("app {name:?} is not in the pod manifest")));
        }
        let mut apps = HashMap::new();
        for rt in &reg.manifest.apps {
            let name = rt.name.as_str();
            let id = rt.image.id.as_ref().ok_or_else(|| {
                invalid(format!(
                    "app {name}: the pod manifest has no image id (not reified)"
                ))
            })?;
            let image = reg
                .apps
                .get(name)
                .ok_or_else(|| invalid(format!("app {name}: no image manifest given")))?;
            if image.image_id != id.to_string() {
                return Err(invalid(format!(
                    "app {name}: image id {} differs from the pod manifest's {id}",
                    image.image_id
                )));
            }
            let manifest = ImageManifest::parse(&image.image_manifest)
                .map_err(|e| invalid(format!("app {name}: image manifest: {e}")))?
                .value;
            let merged = manifest.annotations.merged_with(&rt.annotations);
            apps.insert(
                name.to_owned(),
                AppEntry {
                    annotations: json_bytes(&merged),
                    image_manifest: Bytes::from(image.image_manifest.clone()),
                    image_id: Bytes::from(id.to_string()),
                },
            );
        }
        Ok(PodEntry {
            uuid: pod_uuid,
            uuid_text: Bytes::from(pod_uuid.to_string()),
            // PodManifest always serialises `annotations`, so the manifest and the
            // `pod/annotations` answer agree, also when there are none (ACE validator §5.1).
            manifest: Bytes::from(reg.manifest.to_canonical_json()),
            annotations: json_bytes(&reg.manifest.annotations),
            apps,
            registration: reg,
        })
    }

    fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.registration.addresses.iter().map(|a| a.to_canonical())
    }
}

fn json_bytes<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(
        serde_json::to_vec(value).unwrap_or_else(|e| unreachable!("JSON of plain data: {e}")),
    )
}

/// MD3: at least 128 bits, in hex (so it is one safe path segment).
fn check_token(token: &str) -> Result<(), String> {
    if (32..=128).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err("the token must be 32 to 128 hex digits (at least 128 bits)".into())
    }
}

#[derive(Default)]
struct Maps {
    by_uuid: HashMap<PodUuid, Arc<PodEntry>>,
    by_token: HashMap<String, Arc<PodEntry>>,
    by_addr: HashMap<IpAddr, Arc<PodEntry>>,
}

impl Maps {
    fn remove(&mut self, uuid: &PodUuid) -> Option<Arc<PodEntry>> {
        let old = self.by_uuid.remove(uuid)?;
        if let Some(t) = &old.registration.token {
            self.by_token.remove(t);
        }
        for a in old.addresses() {
            if self.by_addr.get(&a).is_some_and(|e| e.uuid == *uuid) {
                self.by_addr.remove(&a);
            }
        }
        Some(old)
    }

    fn insert(&mut self, entry: Arc<PodEntry>) {
        if let Some(t) = &entry.registration.token {
            self.by_token.insert(t.clone(), entry.clone());
        }
        for a in entry.addresses() {
            self.by_addr.insert(a, entry.clone());
        }
        self.by_uuid.insert(entry.uuid, entry);
    }
}

/// The registered pods of one service.
pub struct Registry {
    dir: PathBuf,
    writer: Mutex<()>,
    maps: RwLock<Maps>,
}

impl Registry {
    /// Loads `state_dir/pods/*.json`, dropping registrations whose init is gone and files that
    /// no longer validate (with a message on stderr).
    pub fn open(state_dir: &Path) -> Result<Registry, MetadataError> {
        let dir = state_dir.join(PODS_DIR);
        persist::ensure_dir(&dir, 0o700)?;
        let registry = Registry {
            dir,
            writer: Mutex::new(()),
            maps: RwLock::new(Maps::default()),
        };
        let entries =
            std::fs::read_dir(&registry.dir).map_err(super::io_err("read", &registry.dir))?;
        for file in entries.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let Some(uuid) = name
                .strip_suffix(".json")
                .filter(|_| !name.starts_with('.'))
            else {
                continue; // temp files of an interrupted write
            };
            match registry.load_one(uuid, &file.path()) {
                Ok(Some(entry)) => registry.write_maps().insert(Arc::new(entry)),
                Ok(None) => {
                    let _ = persist::remove(&registry.dir, &name); // best effort: the pod is gone
                }
                Err(e) => eprintln!("appc-metadata: ignoring {}: {e}", file.path().display()),
            }
        }
        Ok(registry)
    }

    fn load_one(&self, uuid: &str, path: &Path) -> Result<Option<PodEntry>, MetadataError> {
        let bytes = std::fs::read(path).map_err(super::io_err("read", path))?;
        let reg: Registration =
            serde_json::from_slice(&bytes).map_err(|e| MetadataError::Invalid {
                pod: uuid.to_owned(),
                reason: e.to_string(),
            })?;
        if reg.init.is_some_and(|i| !i.is_alive()) {
            return Ok(None);
        }
        PodEntry::build(uuid, reg).map(Some)
    }

    fn write_maps(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than stopping to serve: take the data anyway.
        self.maps.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read_maps(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Validates, persists and publishes a registration; replaces an earlier one of the pod.
    pub fn register(&self, uuid: &str, reg: Registration) -> Result<(), MetadataError> {
        let entry = Arc::new(PodEntry::build(uuid, reg)?);
        let _serial = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let json = serde_json::to_vec(&entry.registration).unwrap_or_else(|e| unreachable!("{e}"));
        persist::write_atomic(&self.dir, &file_name(&entry.uuid), &json, 0o600)?;
        let stale = self.stale_for(&entry);
        for old in &stale {
            persist::remove(&self.dir, &file_name(old))?;
        }
        let mut maps = self.write_maps();
        stale.iter().for_each(|u| drop(maps.remove(u)));
        maps.remove(&entry.uuid);
        maps.insert(entry);
        Ok(())
    }

    /// Other pods that this registration makes unreachable or that are gone: the holders of
    /// its addresses, and registrations whose init has exited.
    fn stale_for(&self, entry: &PodEntry) -> Vec<PodUuid> {
        let maps = self.read_maps();
        let mut stale: Vec<PodUuid> = entry
            .addresses()
            .filter_map(|a| maps.by_addr.get(&a))
            .map(|e| e.uuid)
            .filter(|u| *u != entry.uuid)
            .collect();
        stale.extend(
            maps.by_uuid
                .values()
                .filter(|e| {
                    e.uuid != entry.uuid && e.registration.init.is_some_and(|i| !i.is_alive())
                })
                .map(|e| e.uuid),
        );
        stale.sort();
        stale.dedup();
        stale
    }

    /// Forgets a pod; unknown pods are fine.
    pub fn unregister(&self, uuid: &str) -> Result<(), MetadataError> {
        let uuid = PodUuid::parse(uuid).map_err(|e| MetadataError::Invalid {
            pod: uuid.to_owned(),
            reason: e.to_string(),
        })?;
        let _serial = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        persist::remove(&self.dir, &file_name(&uuid))?;
        self.write_maps().remove(&uuid);
        Ok(())
    }

    pub fn by_token(&self, token: &str) -> Option<Arc<PodEntry>> {
        self.read_maps().by_token.get(token).cloned()
    }

    pub fn by_address(&self, addr: IpAddr) -> Option<Arc<PodEntry>> {
        self.read_maps().by_addr.get(&addr.to_canonical()).cloned()
    }

    /// Every registered pod, by uuid.
    pub fn list(&self) -> Vec<Arc<PodEntry>> {
        let mut all: Vec<_> = self.read_maps().by_uuid.values().cloned().collect();
        all.sort_by_key(|e| e.uuid);
        all
    }
}

fn file_name(uuid: &PodUuid) -> String {
    format!("{uuid}.json")
}
