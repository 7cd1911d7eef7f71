//! Pod networking (DESIGN.md "Networking"; appc-requirements.md §2.5.4 N1, N2; reference/rkt.md
//! §2.14): `--net=default` (a veth pair per pod on the bridge `appc0`, an address from the
//! network's subnet, a default route via the bridge, masquerade and `--port` forwards in the
//! nftables table `inet appc`), `--net=host` (the host's namespace) and `--net=none` (loopback
//! only). Loopback is always up (N1); on `default` the pod also has `eth0` with one IPv4
//! address (N2).
//!
//! The life of a pod's network, driven by `exec::launch`:
//!
//! 1. [`PodNet::prepare`], before the plan: loads the network's config (`config`), resolves the
//!    `--port` names (`ports`), reclaims dead leases and takes an address (`ipam`), so the plan
//!    (hosts file, `AC_METADATA_URL`) can name the address.
//! 2. [`PodNet::attach`], once the pod init is spawned and placed and before it starts anything:
//!    bridge, sysctls, veth pair, the pod side (`link`), firewall rules (`nft`).
//! 3. [`PodNet::teardown`] when the pod ends or its start fails (also on drop): rules, veth,
//!    lease — in that order, so a crash in between leaves a lease that [`gc`] finishes.
//!
//! A `kill -9` of `appcctl` leaves the pod running (it holds the lock); once it is stopped, the
//! kernel removes the veth with the pod's namespace, and `appcctl gc` (or the next pod start
//! on the network) removes the lease and the rules.
//!
//! Every change to a network happens under its lock (`ipam`), so concurrent `appcctl`
//! processes neither pick the same address nor interleave rule changes.

pub mod config;
pub mod dns;
pub mod ipam;
pub mod link;
pub mod nft;
pub mod ports;
pub mod subnet;

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use config::{DEFAULT_NETWORK, NetConfig};
pub use dns::{DnsFiles, DnsOptions};
use ipam::{Ipam, IpamLock, Lease};
pub use ports::PortMap;
pub use subnet::Subnet;

pub use crate::pod::compose::NetMode;
use crate::schema::{PodManifest, PodUuid};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot {op}: {source}")]
    Io { op: String, source: std::io::Error },
    #[error(transparent)]
    Pod(Box<crate::pod::PodError>),
    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    #[error("{}: {reason}; remove it or run `appcctl gc`", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("no network {name:?} is configured in {}", dir.display())]
    UnknownNetwork { name: String, dir: PathBuf },
    #[error(
        "network {network}: no free address in {subnet} ({leases} pods hold one); stop pods or give the network a larger subnet in net.d"
    )]
    Exhausted {
        network: String,
        subnet: String,
        leases: usize,
    },
    #[error(
        "--port {name}: no app of the pod declares a port named {name:?}{}",
        known_ports(.known)
    )]
    UnknownPort { name: String, known: Vec<String> },
    #[error("--port {name}: {reason}")]
    BadPort { name: String, reason: String },
    #[error(
        "--port {name}: host port {port} is already forwarded to {holder}; pick another host port"
    )]
    PortClash {
        port: String,
        name: String,
        holder: String,
    },
    #[error(
        "--port needs --net=default: with --net={mode} the pod has no address of its own to forward to"
    )]
    PortsNeedNetwork { mode: &'static str },
    #[error("cannot {op}: {message}")]
    Netlink { op: String, message: String },
    #[error(
        "nft (nftables) is not installed; install the nftables package, or run the pod with --net=host or --net=none"
    )]
    NftMissing,
    #[error("{op} failed: {message}")]
    Nft { op: String, message: String },
}

fn known_ports(known: &[String]) -> String {
    if known.is_empty() {
        " (the apps declare no ports)".into()
    } else {
        format!(" (declared: {})", known.join(", "))
    }
}

/// Where a pod is on its network. This is the stable type other modules use: the metadata
/// service computes `AC_METADATA_URL` (`http://<gateway>:18112`) from it and identifies the pod
/// by `ip`. Stored in the pod's record (`PodRecord::net`) as `{"networks": [PodAddress]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodAddress {
    /// The network's name (`default`).
    pub network: String,
    /// The pod's interface (`eth0`).
    pub interface: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// The host's address on the network (the bridge), the pod's default route.
    pub gateway: Ipv4Addr,
}

impl PodAddress {
    fn of(lease: &Lease) -> PodAddress {
        PodAddress {
            network: lease.network.clone(),
            interface: link::POD_IFNAME.into(),
            ip: lease.ip,
            prefix_len: lease.prefix_len,
            gateway: lease.gateway,
        }
    }

    /// The addresses recorded in a pod's record (`PodRecord::net`); empty without any.
    pub fn from_record(net: Option<&serde_json::Value>) -> Vec<PodAddress> {
        net.and_then(|v| v.get("networks"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// The value for `PodRecord::net`.
    pub fn to_record(addresses: &[PodAddress]) -> serde_json::Value {
        serde_json::json!({ "networks": addresses })
    }
}

/// What [`PodNet::prepare`] needs.
pub struct NetRequest<'a> {
    pub mode: NetMode,
    /// `--config-dir`: `net.d/` is read from it.
    pub config_dir: &'a Path,
    pub uuid: PodUuid,
    pub pod_dir: &'a Path,
    pub manifest: &'a PodManifest,
}

/// A pod's network from its lease to its teardown.
pub struct PodNet {
    state: PathBuf,
    config: Option<NetConfig>,
    lease: Option<Lease>,
}

impl PodNet {
    /// Checks the ports and, on `default`, takes an address (see the module docs).
    pub fn prepare(req: &NetRequest<'_>) -> Result<PodNet, NetError> {
        let maps = ports::resolve(req.manifest)?;
        let mut net = PodNet {
            state: ipam::state_dir(),
            config: None,
            lease: None,
        };
        let mode = match req.mode {
            NetMode::Default => "default",
            NetMode::Host => "host",
            NetMode::None => "none",
        };
        if req.mode != NetMode::Default {
            if !maps.is_empty() {
                return Err(NetError::PortsNeedNetwork { mode });
            }
            return Ok(net);
        }
        let config = NetConfig::load(req.config_dir, DEFAULT_NETWORK)?;
        let ipam = Ipam::new(&net.state, &config.name);
        let lock = ipam.lock()?;
        let mut live = Vec::new();
        for lease in lock.leases()? {
            // A lease of this very pod is from an earlier run that crashed: reclaimed too.
            if lease.uuid != req.uuid && lease.is_live() {
                live.push(lease);
            } else {
                release(&lock, &lease)?;
            }
        }
        check_port_clashes(&maps, &live)?;
        let taken: Vec<Ipv4Addr> = live.iter().map(|l| l.ip).collect();
        let ip = lock.pick_address(&config, &taken)?;
        let lease = Lease {
            uuid: req.uuid,
            network: config.name.clone(),
            ip,
            prefix_len: config.subnet.prefix_len(),
            gateway: config.gateway,
            host_veth: link::host_veth_name(&req.uuid),
            pod_dir: req.pod_dir.to_owned(),
            ports: maps,
        };
        lock.write(&lease)?;
        net.lease = Some(lease);
        net.config = Some(config);
        Ok(net)
    }

    /// The pod's address, on `default`.
    pub fn address(&self) -> Option<PodAddress> {
        self.lease.as_ref().map(PodAddress::of)
    }

    /// The value for `PodRecord::net`.
    pub fn record(&self) -> Option<serde_json::Value> {
        self.address().map(|a| PodAddress::to_record(&[a]))
    }

    /// The network's DNS settings (used when the command line gives none).
    pub fn dns_config(&self) -> Option<&config::DnsConfig> {
        self.config.as_ref().map(|c| &c.dns)
    }

    /// Wires the pod (whose init is `init_pid`, not yet started) into its network.
    pub fn attach(&mut self, init_pid: u32) -> Result<(), NetError> {
        let (Some(config), Some(lease)) = (&self.config, &self.lease) else {
            return Ok(());
        };
        let ipam = Ipam::new(&self.state, &config.name);
        let _lock = ipam.lock()?;
        let bridge = link::ensure_bridge(config)?;
        host_sysctls(config);
        nft::ensure_network(config)?;
        let ns_path = format!("/proc/{init_pid}/ns/net");
        let netns = File::open(&ns_path).map_err(|source| NetError::Io {
            op: format!("open {ns_path}"),
            source,
        })?;
        link::create_veth(&lease.host_veth, bridge, config.mtu, &netns)?;
        let side = link::PodSide {
            ip: lease.ip,
            prefix_len: lease.prefix_len,
            gateway: lease.gateway,
        };
        link::configure_pod_side(netns, side)?;
        nft::add_pod_rules(lease.uuid, lease.ip, &lease.ports)
    }

    /// Removes the pod's rules, veth and lease; idempotent.
    pub fn teardown(&mut self) -> Result<(), NetError> {
        let Some(lease) = self.lease.take() else {
            return Ok(());
        };
        let ipam = Ipam::new(&self.state, &lease.network);
        let lock = ipam.lock()?;
        let result = release(&lock, &lease);
        if result.is_err() {
            self.lease = Some(lease); // gc retries from the lease file
        }
        result
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        // Best effort on error paths that did not tear down; a failure leaves the lease for gc.
        let _ = self.teardown();
    }
}

fn check_port_clashes(maps: &[PortMap], live: &[Lease]) -> Result<(), NetError> {
    for m in maps {
        for lease in live {
            if let Some(other) = lease.ports.iter().find(|p| p.clashes_with(m)) {
                return Err(NetError::PortClash {
                    port: m.host_side(),
                    name: m.name.clone(),
                    holder: format!("port {} of pod {}", other.name, lease.uuid),
                });
            }
        }
    }
    Ok(())
}

/// Frees what `lease` describes (under its network's lock): rules, veth, then the lease itself.
fn release(lock: &IpamLock<'_>, lease: &Lease) -> Result<(), NetError> {
    if !lease.ports.is_empty() {
        nft::remove_pod_rules(&[lease.uuid.to_string()])?;
    }
    link::delete_link(&lease.host_veth)?;
    lock.remove(lease.uuid)
}

/// Host sysctls the default network needs, set in the network namespace appcctl runs in:
/// - `net.ipv4.ip_forward=1` so pods reach beyond the host and forwarded ports reach pods
///   (a host-wide switch: it is announced on stderr when appcctl turns it on);
/// - `route_localnet=1` on the bridge only, so `localhost:PORT` can be DNAT'ed to a pod (see
///   `nft`).
///
/// Failures are warnings: a read-only /proc/sys (a container) still gives pods that reach the
/// host and each other.
fn host_sysctls(config: &NetConfig) {
    let forward = Path::new("/proc/sys/net/ipv4/ip_forward");
    let on = std::fs::read_to_string(forward).is_ok_and(|v| v.trim() == "1");
    if !on {
        match std::fs::write(forward, "1") {
            Ok(()) => eprintln!(
                "appcctl: enabled net.ipv4.ip_forward so that pods on network {} reach beyond this host",
                config.name
            ),
            Err(e) => eprintln!(
                "appcctl: warning: cannot enable net.ipv4.ip_forward ({e}); pods reach only this host"
            ),
        }
    }
    let localnet = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", config.bridge);
    if let Err(e) = std::fs::write(&localnet, "1") {
        eprintln!(
            "appcctl: warning: cannot set {localnet} ({e}); forwarded ports are not reachable through localhost"
        );
    }
}

/// What [`gc`] reclaimed.
#[derive(Debug, Default)]
pub struct NetGc {
    /// Dead pods whose lease (and veth and rules) were released: (network, pod, address).
    pub released: Vec<(String, PodUuid, Ipv4Addr)>,
    /// Host veths and pod rules that no lease accounts for, removed.
    pub strays: Vec<String>,
}

/// Releases the leases of dead pods on every network, then removes pod veths and pod rules
/// that no live lease accounts for (a crash between creating them and recording them cannot
/// happen, since the lease is written first, but a hand-deleted lease file can).
pub fn gc() -> Result<NetGc, NetError> {
    let state = ipam::state_dir();
    let mut report = NetGc::default();
    let mut networks: Vec<String> = match std::fs::read_dir(&state) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(NetError::Io {
                op: format!("read {}", state.display()),
                source,
            });
        }
    };
    networks.sort();
    let ipams: Vec<Ipam> = networks.iter().map(|n| Ipam::new(&state, n)).collect();
    // Every network's lock, in name order (no deadlock with another gc), for the whole pass.
    let locks = ipams
        .iter()
        .map(Ipam::lock)
        .collect::<Result<Vec<_>, _>>()?;
    let mut live: Vec<Lease> = Vec::new();
    for lock in &locks {
        for lease in lock.leases()? {
            if lease.is_live() {
                live.push(lease);
            } else {
                release(lock, &lease)?;
                report
                    .released
                    .push((lease.network.clone(), lease.uuid, lease.ip));
            }
        }
    }
    sweep_strays(&live, &mut report)?;
    Ok(report)
}

/// Veths named like ours and pod rules that no live lease accounts for.
fn sweep_strays(live: &[Lease], report: &mut NetGc) -> Result<(), NetError> {
    let ours = |name: &str| {
        name.len() == 15
            && name[link::VETH_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
    };
    for name in link::links_with_prefix(link::VETH_PREFIX)? {
        if ours(&name) && !live.iter().any(|l| l.host_veth == name) && link::delete_link(&name)? {
            report.strays.push(format!("link {name}"));
        }
    }
    let with_rules = match nft::pods_with_rules() {
        Err(NetError::NftMissing) => return Ok(()),
        other => other?,
    };
    let stray: Vec<String> = with_rules
        .into_iter()
        .filter(|u| !live.iter().any(|l| l.uuid.to_string() == *u))
        .collect();
    nft::remove_pod_rules(&stray)?;
    report
        .strays
        .extend(stray.iter().map(|u| format!("port forwards of pod {u}")));
    Ok(())
}

/// Releases the network of pod `uuid` if it is dead (for `appcctl rm` of a pod whose runner
/// was killed); nothing when it has no lease.
pub fn release_pod(uuid: PodUuid) -> Result<(), NetError> {
    let state = ipam::state_dir();
    let Ok(entries) = std::fs::read_dir(&state) else {
        return Ok(());
    };
    for entry in entries.flatten().filter(|e| e.path().is_dir()) {
        let ipam = Ipam::new(&state, &entry.file_name().to_string_lossy());
        let lock = ipam.lock()?;
        for lease in lock.leases()? {
            if lease.uuid == uuid && !lease.is_live() {
                release(&lock, &lease)?;
            }
        }
    }
    Ok(())
}

/// Checks the manifest's exposed ports against its apps and the network mode (for `prepare`,
/// so that a wrong `--port` is refused before the pod is created).
pub fn check_ports(manifest: &PodManifest, mode: NetMode) -> Result<(), NetError> {
    let maps = ports::resolve(manifest)?;
    match mode {
        NetMode::Default => Ok(()),
        _ if maps.is_empty() => Ok(()),
        NetMode::Host => Err(NetError::PortsNeedNetwork { mode: "host" }),
        NetMode::None => Err(NetError::PortsNeedNetwork { mode: "none" }),
    }
}
