//! Links, addresses and routes through rtnetlink: the bridge, a veth pair per pod, and the
//! pod's side configured from inside its network namespace.
//!
//! A netlink socket talks to the network namespace it was *created* in. The pod's side is
//! therefore configured from a short-lived thread that `setns(2)`s into the pod init's
//! namespace (`/proc/<pid>/ns/net`) and opens its own socket there: network namespaces are
//! per thread (unlike mount namespaces, setns with CLONE_NEWNET is allowed in a threaded
//! process), so the rest of appcctl never leaves the host's namespace. Each operation runs on
//! a current-thread tokio runtime of its own (rtnetlink is async; appcctl is not).
//!
//! The veth pair is created in one request with its peer already in the pod's namespace and
//! already named `eth0` (IFLA_NET_NS_FD on the peer), so no name can clash in the host's
//! namespace and nothing is left half-moved if appcctl dies in between.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::NetError;
use super::config::NetConfig;

/// The pod's interface name.
pub const POD_IFNAME: &str = "eth0";
/// Host ends of pod veths are `appc` + 11 hex digits of the pod's uuid (15 bytes, IFNAMSIZ):
/// gc finds them by this prefix.
pub const VETH_PREFIX: &str = "appc";

const ENODEV: i32 = libc::ENODEV;
const EEXIST: i32 = libc::EEXIST;

/// The host end's name for a pod.
pub fn host_veth_name(uuid: &crate::schema::PodUuid) -> String {
    let hex: String = uuid
        .to_string()
        .chars()
        .filter(|c| *c != '-')
        .take(11)
        .collect();
    format!("{VETH_PREFIX}{hex}")
}

fn nl_err(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let op = op.into();
    move |e| NetError::Netlink {
        op,
        message: errno_text(&e),
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

fn errno_text(e: &rtnetlink::Error) -> String {
    match errno(e) {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => e.to_string(),
    }
}

/// Runs `f` with a fresh netlink connection of the calling thread's network namespace.
fn with_handle<T, F, Fut>(f: F) -> Result<T, NetError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: std::future::Future<Output = Result<T, NetError>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|source| NetError::Io {
            op: "start a tokio runtime for netlink".into(),
            source,
        })?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetError::Io {
            op: "open a netlink socket".into(),
            source,
        })?;
        let task = tokio::spawn(conn);
        let result = f(handle).await;
        task.abort();
        result
    })
}

async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, NetError> {
    let mut links = std::pin::pin!(handle.link().get().match_name(name.to_owned()).execute());
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(nl_err(format!("look up link {name}"))(e)),
    }
}

/// A locally administered MAC fixed per bridge address: a bridge otherwise takes the lowest
/// MAC of its ports, which changes as pods come and go and makes the pods' ARP caches stale.
fn bridge_mac(gateway: Ipv4Addr) -> Vec<u8> {
    let o = gateway.octets();
    vec![0x02, 0x61, o[0], o[1], o[2], o[3]]
}

/// Creates the bridge if missing, gives it the gateway address, and brings it up; returns its
/// index. Idempotent (called under the network's lock).
pub fn ensure_bridge(config: &NetConfig) -> Result<u32, NetError> {
    with_handle(|handle| async move {
        let name = &config.bridge;
        let index = match link_by_name(&handle, name).await? {
            Some(link) => link.header.index,
            None => {
                let mut msg = LinkBridge::new(name).address(bridge_mac(config.gateway));
                if let Some(mtu) = config.mtu {
                    msg = msg.mtu(mtu);
                }
                match handle.link().add(msg.build()).execute().await {
                    Err(e) if errno(&e) != Some(EEXIST) => {
                        return Err(nl_err(format!("create bridge {name}"))(e));
                    }
                    _ => {}
                }
                link_by_name(&handle, name)
                    .await?
                    .ok_or_else(|| NetError::Netlink {
                        op: format!("create bridge {name}"),
                        message: "it vanished right after its creation".into(),
                    })?
                    .header
                    .index
            }
        };
        let prefix = config.subnet.prefix_len();
        match handle
            .address()
            .add(index, IpAddr::V4(config.gateway), prefix)
            .execute()
            .await
        {
            Err(e) if errno(&e) != Some(EEXIST) => {
                return Err(nl_err(format!(
                    "add address {}/{prefix} to {name}",
                    config.gateway
                ))(e));
            }
            _ => {}
        }
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl_err(format!("bring {name} up")))?;
        Ok(index)
    })
}

/// Creates the pod's veth pair: `host` attached to the bridge and up, its peer `eth0` in the
/// network namespace `netns`.
pub fn create_veth(
    host: &str,
    bridge_index: u32,
    mtu: Option<u32>,
    netns: &File,
) -> Result<(), NetError> {
    let mut peer = LinkUnspec::new_with_name(POD_IFNAME).setns_by_fd(netns.as_raw_fd());
    let mut msg = LinkVeth::new(host, POD_IFNAME)
        .controller(bridge_index)
        .up();
    if let Some(mtu) = mtu {
        msg = msg.mtu(mtu);
        peer = peer.mtu(mtu);
    }
    let msg = msg.set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
    with_handle(|handle| async move {
        handle
            .link()
            .add(msg.build())
            .execute()
            .await
            .map_err(nl_err(format!("create veth pair {host} / {POD_IFNAME}")))
    })
}

/// Deletes link `name`; `false` if there was none.
pub fn delete_link(name: &str) -> Result<bool, NetError> {
    with_handle(|handle| async move {
        let Some(link) = link_by_name(&handle, name).await? else {
            return Ok(false);
        };
        match handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(true),
            // Gone meanwhile: its peer's namespace died.
            Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
            Err(e) => Err(nl_err(format!("delete link {name}"))(e)),
        }
    })
}

/// Names of the links whose name starts with `prefix`.
pub fn links_with_prefix(prefix: &str) -> Result<Vec<String>, NetError> {
    with_handle(|handle| async move {
        let mut links = std::pin::pin!(handle.link().get().execute());
        let mut names = Vec::new();
        while let Some(link) = links.try_next().await.map_err(nl_err("list links"))? {
            for attr in &link.attributes {
                if let LinkAttribute::IfName(n) = attr
                    && n.starts_with(prefix)
                {
                    names.push(n.clone());
                }
            }
        }
        Ok(names)
    })
}

/// What the pod's side gets.
#[derive(Debug, Clone, Copy)]
pub struct PodSide {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// Configures `eth0` and `lo` inside the network namespace `netns` (of the pod init): address,
/// up, default route via the gateway.
pub fn configure_pod_side(netns: File, side: PodSide) -> Result<(), NetError> {
    let thread = std::thread::Builder::new()
        .name("appc-netns".into())
        .spawn(move || {
            // This thread alone enters the pod's namespace, and ends there.
            nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                NetError::Io {
                    op: "enter the pod's network namespace".into(),
                    source: e.into(),
                }
            })?;
            with_handle(|handle| configure_inside(handle, side))
        })
        .map_err(|source| NetError::Io {
            op: "start the netns thread".into(),
            source,
        })?;
    thread.join().unwrap_or_else(|_| {
        Err(NetError::Netlink {
            op: "configure the pod's network".into(),
            message: "the netns thread panicked".into(),
        })
    })
}

async fn configure_inside(handle: Handle, side: PodSide) -> Result<(), NetError> {
    for name in ["lo", POD_IFNAME] {
        let link = link_by_name(&handle, name)
            .await?
            .ok_or_else(|| NetError::Netlink {
                op: format!("find {name} in the pod"),
                message: "no such interface".into(),
            })?;
        let index = link.header.index;
        if name == POD_IFNAME {
            handle
                .address()
                .add(index, IpAddr::V4(side.ip), side.prefix_len)
                .execute()
                .await
                .map_err(nl_err(format!(
                    "add address {}/{} to {POD_IFNAME}",
                    side.ip, side.prefix_len
                )))?;
        }
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl_err(format!("bring {name} up in the pod")))?;
    }
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(side.gateway)
        .build();
    handle
        .route()
        .add(route)
        .execute()
        .await
        .map_err(nl_err(format!(
            "add the default route via {}",
            side.gateway
        )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_ifnamsiz_and_carry_the_prefix() {
        let uuid = crate::schema::PodUuid::new_random();
        let n = host_veth_name(&uuid);
        assert_eq!(n.len(), 15);
        assert!(n.starts_with(VETH_PREFIX));
        assert!(super::super::config::check_ifname(&n).is_ok());
    }
}
