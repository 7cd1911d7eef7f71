//! Firewall rules in one nftables table of our own, `inet appc` (inet NAT exists since Linux
//! 5.2; Debian 12 ships 6.1), never touching any other table.
//!
//! The rules are applied with the `nft` tool: a script on stdin (`nft -f -`) is one kernel
//! transaction, so a pod's rules appear or vanish together. No crate is used: the Rust nftables
//! crates either wrap this same tool or need libnftnl bindings, and the script text is what an
//! administrator reads in `nft list ruleset`.
//!
//! Every network and every pod with forwarded ports has base chains of its own, so each change
//! is one idempotent script that needs no lookup of rule handles:
//!
//! ```text
//! table inet appc {
//!   chain net-default-post { type nat hook postrouting priority srcnat; ... }   # flushed + refilled
//!   chain pod-<uuid>-pre   { type nat hook prerouting priority dstnat; ... }    # --port from outside
//!   chain pod-<uuid>-out   { type nat hook output priority -100; ... }          # --port from the host
//! }
//! ```
//!
//! - `net-<network>-post`: masquerade of the subnet's outbound traffic (`ipMasq`), of DNAT'ed
//!   traffic from `127.0.0.0/8` leaving through the bridge, and of hairpin traffic (a pod
//!   reaching another through a host port). Rewritten (flush + add) at every pod start, so a
//!   change of `net.d` takes effect without a gap in the masquerade.
//! - `pod-<uuid>-pre|out`: one DNAT per forwarded port, restricted to packets addressed to the
//!   host itself (`fib daddr type local`) or to the given host IP. Removed with
//!   `add chain; flush chain; delete chain` (which works whether the chain exists or not).
//!
//! Reaching a forwarded port through `localhost` is where rkt kept breaking (rkt#1256, #2283,
//! #1932, #3886): the output-chain DNAT rewrites 127.0.0.1:PORT to the pod, but the kernel
//! refuses to route a packet with a loopback source out of a non-loopback device unless
//! `route_localnet` is set on that device (here the bridge only, see `net::host_sysctls`), and
//! the pod could not answer 127.0.0.1 anyway, so the source is masqueraded to the bridge address.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::NetError;
use super::config::NetConfig;
use super::ports::PortMap;
use crate::schema::PodUuid;

pub const TABLE: &str = "appc";
const POD_TAG: &str = "appc-pod:";
const NET_TAG: &str = "appc-net:";
const POD_CHAIN: &str = "pod-";
const NET_CHAIN: &str = "net-";

/// Where `nft` is looked for when PATH does not have it (units may run with a minimal PATH).
const NFT_PATHS: [&str; 3] = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"];

fn nft_binary() -> Result<std::path::PathBuf, NetError> {
    let in_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nft"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    in_path
        .into_iter()
        .chain(NFT_PATHS.iter().map(Into::into))
        .find(|p| p.is_file())
        .ok_or(NetError::NftMissing)
}

/// Runs `nft` with `args`, `stdin` as its input; the output on success.
fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
    let mut child = Command::new(nft_binary()?)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetError::Io {
            op: "run nft".into(),
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A failing write shows up as nft's own error below.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| NetError::Io {
        op: "run nft".into(),
        source,
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(NetError::Nft {
        op: format!("nft {}", args.join(" ")),
        message: String::from_utf8_lossy(&out.stderr)
            .trim()
            .replace('\n', "; "),
    })
}

/// Applies a script as one transaction.
fn apply(script: &str) -> Result<(), NetError> {
    nft(&["-f", "-"], Some(script)).map(drop)
}

/// The pod chains of the table (their pod uuids); empty when the table does not exist.
pub fn pods_with_rules() -> Result<Vec<String>, NetError> {
    let text = match nft(&["-j", "list", "table", "inet", TABLE], None) {
        Ok(t) => t,
        Err(NetError::Nft { message, .. }) if message.contains("No such file or directory") => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    parse_pod_chains(&text)
}

fn parse_pod_chains(text: &str) -> Result<Vec<String>, NetError> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| NetError::Nft {
        op: "parse nft -j output".into(),
        message: e.to_string(),
    })?;
    let mut pods: Vec<String> = json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["chain"]["name"].as_str())
        .filter_map(|n| {
            let rest = n.strip_prefix(POD_CHAIN)?;
            rest.strip_suffix("-pre")
                .or_else(|| rest.strip_suffix("-out"))
        })
        .map(str::to_owned)
        .collect();
    pods.sort();
    pods.dedup();
    Ok(pods)
}

/// `add table` and `add chain` of an existing object with the same definition are no-ops.
fn base_chain(name: &str, hook: &str, priority: i32) -> String {
    format!(
        "add chain inet {TABLE} {name} {{ type nat hook {hook} priority {priority}; policy accept; }}\n"
    )
}

fn net_chain(network: &str) -> String {
    format!("{NET_CHAIN}{network}-post")
}

fn pod_chains(uuid: &str) -> [(String, &'static str, i32); 2] {
    [
        (format!("{POD_CHAIN}{uuid}-pre"), "prerouting", -100),
        (format!("{POD_CHAIN}{uuid}-out"), "output", -100),
    ]
}

/// The network's chain, flushed and refilled: one transaction.
fn network_script(config: &NetConfig) -> String {
    let tag = format!("{NET_TAG}{}", config.name);
    let chain = net_chain(&config.name);
    let (subnet, bridge) = (config.subnet, &config.bridge);
    let mut out = format!("add table inet {TABLE}\n");
    out.push_str(&base_chain(&chain, "postrouting", 100));
    out.push_str(&format!("flush chain inet {TABLE} {chain}\n"));
    let mut add = |rule: String| {
        out.push_str(&format!(
            "add rule inet {TABLE} {chain} {rule} comment \"{tag}\"\n"
        ));
    };
    if config.ip_masq {
        add(format!("ip saddr {subnet} ip daddr != {subnet} masquerade"));
    }
    add(format!(
        "oifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade"
    ));
    add(format!(
        "oifname \"{bridge}\" ip saddr {subnet} ct status dnat masquerade"
    ));
    out
}

/// Creates the table and (re)writes the network's rules. Called under the network's lock.
pub fn ensure_network(config: &NetConfig) -> Result<(), NetError> {
    apply(&network_script(config))
}

/// The pod's chains with one DNAT per forwarded port to `ip`.
fn pod_script(uuid: PodUuid, ip: Ipv4Addr, maps: &[PortMap]) -> String {
    let uuid = uuid.to_string();
    let tag = format!("{POD_TAG}{uuid}");
    let mut out = format!("add table inet {TABLE}\n");
    for (chain, hook, priority) in pod_chains(&uuid) {
        out.push_str(&base_chain(&chain, hook, priority));
        out.push_str(&format!("flush chain inet {TABLE} {chain}\n"));
        for m in maps {
            let dest = match m.host_ip {
                Some(h) => format!("ip daddr {h}"),
                None => "fib daddr type local".to_owned(),
            };
            for i in 0..m.count {
                let (host, pod) = (m.host_port + i, m.pod_port + i);
                out.push_str(&format!(
                    "add rule inet {TABLE} {chain} meta nfproto ipv4 {dest} meta l4proto {} th dport {host} dnat ip to {ip}:{pod} comment \"{tag}\"\n",
                    m.protocol.as_str()
                ));
            }
        }
    }
    out
}

/// Adds the pod's port forwards (nothing to do without any).
pub fn add_pod_rules(uuid: PodUuid, ip: Ipv4Addr, maps: &[PortMap]) -> Result<(), NetError> {
    if maps.is_empty() {
        return Ok(());
    }
    apply(&pod_script(uuid, ip, maps))
}

/// Removes the chains of the pods `uuids` in one transaction; idempotent.
fn remove_script(uuids: &[String]) -> String {
    let mut out = format!("add table inet {TABLE}\n");
    for uuid in uuids {
        for (chain, hook, priority) in pod_chains(uuid) {
            out.push_str(&base_chain(&chain, hook, priority));
            out.push_str(&format!("flush chain inet {TABLE} {chain}\n"));
            out.push_str(&format!("delete chain inet {TABLE} {chain}\n"));
        }
    }
    out
}

/// Removes the forwards of the pods `uuids`; idempotent.
pub fn remove_pod_rules(uuids: &[String]) -> Result<(), NetError> {
    if uuids.is_empty() {
        return Ok(());
    }
    apply(&remove_script(uuids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ports::Protocol;

    #[test]
    fn pod_rules_cover_both_chains_and_every_port() {
        let uuid = PodUuid::new_random();
        let maps = [
            PortMap {
                name: "www".into(),
                protocol: Protocol::Tcp,
                host_ip: None,
                host_port: 8080,
                pod_port: 80,
                count: 2,
            },
            PortMap {
                name: "dns".into(),
                protocol: Protocol::Udp,
                host_ip: Some(Ipv4Addr::new(127, 0, 0, 1)),
                host_port: 5353,
                pod_port: 53,
                count: 1,
            },
        ];
        let s = pod_script(uuid, Ipv4Addr::new(172, 16, 28, 2), &maps);
        assert_eq!(s.matches("dnat ip to").count(), 6, "{s}");
        assert!(s.contains(&format!(
            "add rule inet appc pod-{uuid}-out meta nfproto ipv4 fib daddr type local meta l4proto tcp th dport 8081 dnat ip to 172.16.28.2:81 comment \"appc-pod:{uuid}\""
        )), "{s}");
        assert!(
            s.contains(&format!(
                "add chain inet appc pod-{uuid}-pre {{ type nat hook prerouting priority -100;"
            )),
            "{s}"
        );
        assert!(
            s.contains(
                "ip daddr 127.0.0.1 meta l4proto udp th dport 5353 dnat ip to 172.16.28.2:53"
            ),
            "{s}"
        );
        let r = remove_script(&[uuid.to_string()]);
        assert!(
            r.ends_with(&format!(
                "flush chain inet appc pod-{uuid}-out\ndelete chain inet appc pod-{uuid}-out\n"
            )),
            "{r}"
        );
    }

    #[test]
    fn pod_chains_are_read_back_from_json() {
        let json = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
            {"table":{"family":"inet","name":"appc","handle":1}},
            {"chain":{"family":"inet","table":"appc","name":"pod-a1-pre","handle":2}},
            {"chain":{"family":"inet","table":"appc","name":"pod-a1-out","handle":3}},
            {"chain":{"family":"inet","table":"appc","name":"net-default-post","handle":4}},
            {"rule":{"family":"inet","table":"appc","chain":"pod-a1-out","handle":9,"expr":[]}}]}"#;
        assert_eq!(parse_pod_chains(json).unwrap(), ["a1"]);
    }

    #[test]
    fn network_rules_follow_the_config() {
        let mut c = NetConfig::builtin();
        let s = network_script(&c);
        assert!(
            s.contains("flush chain inet appc net-default-post\n"),
            "{s}"
        );
        assert!(s.contains("ip saddr 172.16.28.0/24 ip daddr != 172.16.28.0/24 masquerade comment \"appc-net:default\""), "{s}");
        assert!(
            s.contains("oifname \"appc0\" ip saddr 127.0.0.0/8 masquerade"),
            "{s}"
        );
        c.ip_masq = false;
        assert!(!network_script(&c).contains("daddr != "));
    }
}
