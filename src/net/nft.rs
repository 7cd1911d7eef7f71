//! Firewall rules in one nftables table of our own, `inet appc` (inet NAT exists since Linux
//! 5.2; Debian 12 ships 6.1), never touching any other table.
//!
//! The rules are applied with the `nft` tool: a script on stdin (`nft -f -`) is one kernel
//! transaction, so a pod's rules appear or vanish together, and rules are found again by their
//! comment in `nft -j list table inet appc` (JSON, parsed with serde_json) and deleted by
//! handle. No crate is used: the Rust nftables crates either wrap this same tool or need
//! libnftnl bindings, and the script text is what an administrator reads in `nft list ruleset`.
//!
//! ```text
//! table inet appc {
//!   chain prerouting  { type nat hook prerouting priority dstnat; }   # --port from outside
//!   chain output      { type nat hook output priority -100; }        # --port from the host itself
//!   chain postrouting { type nat hook postrouting priority srcnat; }
//! }
//! ```
//!
//! - `appc-net:<network>` rules (postrouting): masquerade of the subnet's outbound traffic
//!   (`ipMasq`), masquerade of DNAT'ed traffic from `127.0.0.0/8` leaving through the bridge, and
//!   of hairpin traffic (a pod reaching another through a host port).
//! - `appc-pod:<uuid>` rules (prerouting and output): one DNAT per forwarded port, restricted
//!   to packets addressed to the host itself (`fib daddr type local`) or to the given host IP.
//!
//! Reaching a forwarded port through `localhost` is where rkt kept breaking (rkt#1256, #2283,
//! #1932, #3886): the output-chain DNAT rewrites 127.0.0.1:PORT to the pod, but the kernel
//! refuses to route a packet with a loopback source out of a non-loopback device unless
//! `route_localnet` is set on that device (here the bridge only, see `link`), and the pod could
//! not answer 127.0.0.1 anyway, so the source is masqueraded to the bridge address.

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

/// A rule of our table: where it is, and its comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub handle: u64,
    pub comment: String,
}

/// The tagged rules of the table; empty when the table does not exist.
pub fn rules() -> Result<Vec<Rule>, NetError> {
    let text = match nft(&["-j", "list", "table", "inet", TABLE], None) {
        Ok(t) => t,
        Err(NetError::Nft { message, .. }) if message.contains("No such file or directory") => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    parse_rules(&text)
}

fn parse_rules(text: &str) -> Result<Vec<Rule>, NetError> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| NetError::Nft {
        op: "parse nft -j output".into(),
        message: e.to_string(),
    })?;
    let items = json["nftables"].as_array().cloned().unwrap_or_default();
    Ok(items
        .iter()
        .filter_map(|i| {
            let r = i.get("rule")?;
            let comment = r["comment"].as_str()?;
            Some(Rule {
                chain: r["chain"].as_str()?.to_owned(),
                handle: r["handle"].as_u64()?,
                comment: comment.to_owned(),
            })
        })
        .filter(|r| r.comment.starts_with(POD_TAG) || r.comment.starts_with(NET_TAG))
        .collect())
}

/// The pod a rule belongs to, if it is a pod rule.
pub fn pod_of(rule: &Rule) -> Option<&str> {
    rule.comment.strip_prefix(POD_TAG)
}

fn pod_tag(uuid: PodUuid) -> String {
    format!("{POD_TAG}{uuid}")
}

fn delete_script(rules: &[&Rule]) -> String {
    rules
        .iter()
        .map(|r| format!("delete rule inet {TABLE} {} handle {}\n", r.chain, r.handle))
        .collect()
}

/// The base chains (idempotent: `add` of an existing table or identical chain is a no-op).
fn table_script() -> String {
    format!(
        "add table inet {TABLE}\n\
         add chain inet {TABLE} prerouting {{ type nat hook prerouting priority -100; policy accept; }}\n\
         add chain inet {TABLE} output {{ type nat hook output priority -100; policy accept; }}\n\
         add chain inet {TABLE} postrouting {{ type nat hook postrouting priority 100; policy accept; }}\n"
    )
}

/// The network's rules as a script of `add rule` lines.
fn network_rules(config: &NetConfig) -> String {
    let tag = format!("{NET_TAG}{}", config.name);
    let (subnet, bridge) = (config.subnet, &config.bridge);
    let mut out = String::new();
    let mut add = |rule: String| {
        out.push_str(&format!(
            "add rule inet {TABLE} postrouting {rule} comment \"{tag}\"\n"
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

/// Creates the table and (re)writes the network's rules in one transaction, so a change of
/// `net.d` takes effect and the masquerade never has a gap. Called under the network's lock.
pub fn ensure_network(config: &NetConfig) -> Result<(), NetError> {
    apply(&table_script())?;
    let tag = format!("{NET_TAG}{}", config.name);
    let existing = rules()?;
    let old: Vec<&Rule> = existing.iter().filter(|r| r.comment == tag).collect();
    let script = format!("{}{}", delete_script(&old), network_rules(config));
    apply(&script)
}

/// The DNAT rules forwarding `maps` to `ip`.
fn pod_rules(uuid: PodUuid, ip: Ipv4Addr, maps: &[PortMap]) -> String {
    let tag = pod_tag(uuid);
    let mut out = String::new();
    for m in maps {
        let dest = match m.host_ip {
            Some(h) => format!("ip daddr {h}"),
            None => "fib daddr type local".to_owned(),
        };
        for i in 0..m.count {
            let (host, pod) = (m.host_port + i, m.pod_port + i);
            for chain in ["prerouting", "output"] {
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
    apply(&pod_rules(uuid, ip, maps))
}

/// Removes every rule of the pods `dead` says are dead, in one transaction; idempotent.
pub fn remove_pod_rules(dead: impl Fn(&str) -> bool) -> Result<usize, NetError> {
    let existing = rules()?;
    let doomed: Vec<&Rule> = existing
        .iter()
        .filter(|r| pod_of(r).is_some_and(&dead))
        .collect();
    if !doomed.is_empty() {
        apply(&delete_script(&doomed))?;
    }
    Ok(doomed.len())
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
        let s = pod_rules(uuid, Ipv4Addr::new(172, 16, 28, 2), &maps);
        assert_eq!(s.lines().count(), 6, "{s}");
        assert!(s.contains(&format!(
            "add rule inet appc output meta nfproto ipv4 fib daddr type local meta l4proto tcp th dport 8081 dnat ip to 172.16.28.2:81 comment \"appc-pod:{uuid}\""
        )), "{s}");
        assert!(
            s.contains(
                "ip daddr 127.0.0.1 meta l4proto udp th dport 5353 dnat ip to 172.16.28.2:53"
            ),
            "{s}"
        );
    }

    #[test]
    fn rules_are_read_back_from_json() {
        let json = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
            {"table":{"family":"inet","name":"appc","handle":1}},
            {"rule":{"family":"inet","table":"appc","chain":"output","handle":7,"comment":"appc-pod:x","expr":[]}},
            {"rule":{"family":"inet","table":"appc","chain":"postrouting","handle":4,"comment":"appc-net:default","expr":[]}},
            {"rule":{"family":"inet","table":"appc","chain":"output","handle":9,"expr":[]}}]}"#;
        let r = parse_rules(json).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(pod_of(&r[0]), Some("x"));
        assert_eq!(pod_of(&r[1]), None);
        assert_eq!(
            delete_script(&[&r[0]]),
            "delete rule inet appc output handle 7\n"
        );
    }

    #[test]
    fn network_rules_follow_the_config() {
        let mut c = NetConfig::builtin();
        let s = network_rules(&c);
        assert!(s.contains("ip saddr 172.16.28.0/24 ip daddr != 172.16.28.0/24 masquerade comment \"appc-net:default\""), "{s}");
        assert!(
            s.contains("oifname \"appc0\" ip saddr 127.0.0.0/8 masquerade"),
            "{s}"
        );
        c.ip_masq = false;
        assert!(!network_rules(&c).contains("daddr != "));
    }
}
