//! Address management for a bridge network: one lease file per pod, under a per-network flock.
//!
//! ```text
//! <state>/<network>/lock             flock: every change to the network (leases, links, rules)
//! <state>/<network>/last             the address handed out last (allocation goes round-robin,
//!                                    so a freed address is not reused at once)
//! <state>/<network>/<pod uuid>.json  Lease: address, host veth, port maps, the pod's dir
//! ```
//!
//! `<state>` is `/run/appc/net` (a tmpfs: leases vanish at reboot with the links and rules
//! they describe), or `$APPC_NET_DIR`. Lease files are written temp + fsync + rename.
//!
//! A lease is *live* while its pod's lock (`<pod dir>/lock`) is held: the runner and the pod
//! init hold it for the pod's whole life (src/pod, rkt's rule), and the kernel drops it when
//! they die, so a `kill -9` leaves a lease whose lock is free — dead, and reclaimed by the next
//! allocation or by `appcctl gc` (rkt leaked these; reference/rkt.md §2.14). The check needs
//! nothing but the lease, so it works across data dirs (`--dir`) sharing one state dir.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

use super::NetError;
use super::config::NetConfig;
use super::ports::PortMap;
use crate::schema::PodUuid;

/// The state directory unless `APPC_NET_DIR` names another (tests, several installations).
pub const DEFAULT_STATE_DIR: &str = "/run/appc/net";

pub fn state_dir() -> PathBuf {
    std::env::var_os("APPC_NET_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from)
}

/// A pod's claim on an address of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub uuid: PodUuid,
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// The host end of the pod's veth pair.
    pub host_veth: String,
    /// Whose lock says whether the pod lives.
    pub pod_dir: PathBuf,
    #[serde(default)]
    pub ports: Vec<PortMap>,
}

impl Lease {
    /// Whether the pod holding the lease still runs (its lock is held by someone).
    pub fn is_live(&self) -> bool {
        let path = self.pod_dir.join("lock");
        let Ok(file) = File::open(&path) else {
            return false; // the pod is gone
        };
        // Another open file description conflicts even within this process, so a runner
        // checking its own lease sees it live.
        matches!(
            flock(&file, FlockOperation::NonBlockingLockShared),
            Err(rustix::io::Errno::WOULDBLOCK)
        )
    }
}

/// One network's state directory.
pub struct Ipam {
    dir: PathBuf,
}

/// The network's lock, held while leases, links and rules change.
pub struct IpamLock<'a> {
    ipam: &'a Ipam,
    _file: File,
}

fn io(op: String) -> impl FnOnce(std::io::Error) -> NetError {
    move |source| NetError::Io { op, source }
}

impl Ipam {
    pub fn new(state: &Path, network: &str) -> Ipam {
        Ipam {
            dir: state.join(network),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits for the network's lock (other appcctl processes hold it for milliseconds).
    pub fn lock(&self) -> Result<IpamLock<'_>, NetError> {
        std::fs::create_dir_all(&self.dir).map_err(io(format!("create {}", self.dir.display())))?;
        let path = self.dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(format!("open {}", path.display())))?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| io(format!("lock {}", path.display()))(e.into()))?;
        Ok(IpamLock {
            ipam: self,
            _file: file,
        })
    }

    /// The leases without taking the lock (for display; a lease is written atomically).
    pub fn leases_unlocked(&self) -> Result<Vec<Lease>, NetError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(format!("read {}", self.dir.display()))(e)),
        };
        let mut leases = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if PodUuid::parse(stem).is_err() {
                continue; // temp files and strangers
            }
            let path = entry.path();
            let text = std::fs::read(&path).map_err(io(format!("read {}", path.display())))?;
            let lease: Lease = serde_json::from_slice(&text).map_err(|e| NetError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            leases.push(lease);
        }
        leases.sort_by_key(|l| l.ip);
        Ok(leases)
    }
}

impl IpamLock<'_> {
    pub fn leases(&self) -> Result<Vec<Lease>, NetError> {
        self.ipam.leases_unlocked()
    }

    fn lease_path(&self, uuid: PodUuid) -> PathBuf {
        self.ipam.dir.join(format!("{uuid}.json"))
    }

    /// Picks a free host address of `config`'s subnet after the last one handed out;
    /// `taken` are the addresses of the live leases.
    pub fn pick_address(
        &self,
        config: &NetConfig,
        taken: &[Ipv4Addr],
    ) -> Result<Ipv4Addr, NetError> {
        let last: Option<Ipv4Addr> = std::fs::read_to_string(self.ipam.dir.join("last"))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        let hosts: Vec<Ipv4Addr> = config.subnet.hosts().collect();
        let start = last
            .and_then(|l| hosts.iter().position(|h| *h == l))
            .map_or(0, |i| i + 1);
        let free = (0..hosts.len())
            .map(|k| hosts[(start + k) % hosts.len()])
            .find(|ip| *ip != config.gateway && !taken.contains(ip));
        free.ok_or_else(|| NetError::Exhausted {
            network: config.name.clone(),
            subnet: config.subnet.to_string(),
            leases: taken.len(),
        })
    }

    /// Records `lease` (atomically) and remembers its address as the last handed out.
    pub fn write(&self, lease: &Lease) -> Result<(), NetError> {
        let json =
            serde_json::to_vec_pretty(lease).map_err(|e| io("encode a lease".into())(e.into()))?;
        let name = format!("{}.json", lease.uuid);
        crate::pod::fsio::write_atomic(&self.ipam.dir, &name, &json, 0o644)
            .map_err(|e| NetError::Pod(Box::new(e)))?;
        crate::pod::fsio::write_atomic(
            &self.ipam.dir,
            "last",
            lease.ip.to_string().as_bytes(),
            0o644,
        )
        .map_err(|e| NetError::Pod(Box::new(e)))
    }

    /// Removes the lease of `uuid`; a missing one is fine.
    pub fn remove(&self, uuid: PodUuid) -> Result<(), NetError> {
        let path = self.lease_path(uuid);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io(format!("remove {}", path.display()))(e))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(uuid: PodUuid, ip: [u8; 4], pod_dir: &Path) -> Lease {
        Lease {
            uuid,
            network: "default".into(),
            ip: Ipv4Addr::from(ip),
            prefix_len: 24,
            gateway: Ipv4Addr::new(172, 16, 28, 1),
            host_veth: "appcx".into(),
            pod_dir: pod_dir.into(),
            ports: Vec::new(),
        }
    }

    #[test]
    fn allocation_goes_round_robin_and_skips_taken_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), "default");
        let config = NetConfig::builtin();
        let lock = ipam.lock().unwrap();
        let a = lock.pick_address(&config, &[]).unwrap();
        assert_eq!(a, Ipv4Addr::new(172, 16, 28, 2));
        let l = lease(PodUuid::new_random(), a.octets(), dir.path());
        lock.write(&l).unwrap();
        let b = lock.pick_address(&config, &[a]).unwrap();
        assert_eq!(b, Ipv4Addr::new(172, 16, 28, 3));
        // After .254 it wraps to .2, skipping the gateway.
        crate::pod::fsio::write_atomic(ipam.dir(), "last", b"172.16.28.254", 0o644).unwrap();
        assert_eq!(lock.pick_address(&config, &[]).unwrap(), a);
        assert_eq!(lock.leases().unwrap(), vec![l.clone()]);
        lock.remove(l.uuid).unwrap();
        lock.remove(l.uuid).unwrap();
        assert!(lock.leases().unwrap().is_empty());
    }

    #[test]
    fn a_full_subnet_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), "tiny");
        let mut config = NetConfig::builtin();
        config.subnet = "10.0.0.0/30".parse().unwrap();
        config.gateway = Ipv4Addr::new(10, 0, 0, 1);
        let lock = ipam.lock().unwrap();
        let e = lock
            .pick_address(&config, &[Ipv4Addr::new(10, 0, 0, 2)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no free address") && e.contains("10.0.0.0/30"),
            "{e}"
        );
    }

    #[test]
    fn liveness_follows_the_pod_lock() {
        let dir = tempfile::tempdir().unwrap();
        let l = lease(PodUuid::new_random(), [172, 16, 28, 9], dir.path());
        assert!(!l.is_live(), "no lock file: the pod is gone");
        let f = File::create(dir.path().join("lock")).unwrap();
        assert!(!l.is_live());
        flock(&f, FlockOperation::LockExclusive).unwrap();
        assert!(l.is_live());
        drop(f);
        assert!(!l.is_live());
    }
}
