//! Network configuration: `<config-dir>/net.d/*.json` (rkt read `net.d/*.conf` the same way,
//! reference/rkt.md §2.14). Each file is one JSON object describing a network:
//!
//! ```json
//! {
//!   "name": "default",
//!   "bridge": "appc0",
//!   "subnet": "172.16.28.0/24",
//!   "gateway": "172.16.28.1",
//!   "ipMasq": true,
//!   "mtu": 1500,
//!   "dns": { "nameservers": ["172.16.28.1"], "search": ["example.com"], "options": ["ndots:2"] }
//! }
//! ```
//!
//! Only `name` is required; the rest defaults to the built-in `default` network (bridge `appc0`,
//! subnet `172.16.28.0/24`, gateway = the first host address, masquerade on, the kernel's MTU,
//! no DNS). `--net=default` uses the network named `default`; files are read in lexical order
//! and other names are accepted and ignored for now. Unknown fields are refused, so a typo is an
//! error rather than a silently ignored setting.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::NetError;
use super::subnet::Subnet;

/// The name `--net=default` uses.
pub const DEFAULT_NETWORK: &str = "default";
const DEFAULT_BRIDGE: &str = "appc0";
const DEFAULT_SUBNET: &str = "172.16.28.0/24";

/// A network, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    pub name: String,
    pub bridge: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// Masquerade traffic from the subnet to anywhere else (outbound NAT).
    pub ip_masq: bool,
    pub mtu: Option<u32>,
    /// DNS settings pods get when the command line gives none.
    pub dns: DnsConfig,
    /// The file it came from; `None` for the built-in network.
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    #[serde(default)]
    pub nameservers: Vec<IpAddr>,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NetFile {
    name: String,
    bridge: Option<String>,
    subnet: Option<Subnet>,
    gateway: Option<Ipv4Addr>,
    ip_masq: Option<bool>,
    mtu: Option<u32>,
    #[serde(default)]
    dns: DnsConfig,
}

impl NetConfig {
    /// The built-in `default` network.
    pub fn builtin() -> NetConfig {
        let subnet: Subnet = DEFAULT_SUBNET
            .parse()
            .unwrap_or_else(|_| unreachable!("the built-in subnet parses"));
        NetConfig {
            name: DEFAULT_NETWORK.into(),
            bridge: DEFAULT_BRIDGE.into(),
            gateway: subnet.first_host(),
            subnet,
            ip_masq: true,
            mtu: None,
            dns: DnsConfig::default(),
            source: None,
        }
    }

    /// The network `name` from `<config_dir>/net.d`, or the built-in one for `default`.
    pub fn load(config_dir: &Path, name: &str) -> Result<NetConfig, NetError> {
        let dir = config_dir.join("net.d");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(NetError::Io {
                    op: format!("read {}", dir.display()),
                    source,
                });
            }
        };
        files.sort();
        let mut found: Option<NetConfig> = None;
        for path in files {
            let config = parse_file(&path)?;
            if config.name != name {
                continue;
            }
            if let Some(first) = &found {
                return Err(NetError::Config {
                    path: path.clone(),
                    reason: format!(
                        "network {name:?} is also defined in {}; keep one",
                        first.source.as_deref().unwrap_or(Path::new("?")).display()
                    ),
                });
            }
            found = Some(config);
        }
        match found {
            Some(c) => Ok(c),
            None if name == DEFAULT_NETWORK => Ok(NetConfig::builtin()),
            None => Err(NetError::UnknownNetwork {
                name: name.into(),
                dir,
            }),
        }
    }
}

fn parse_file(path: &Path) -> Result<NetConfig, NetError> {
    let config_err = |reason: String| NetError::Config {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| NetError::Io {
        op: format!("read {}", path.display()),
        source,
    })?;
    let file: NetFile = serde_json::from_str(&text).map_err(|e| config_err(e.to_string()))?;
    validate(file, path).map_err(config_err)
}

fn validate(file: NetFile, path: &Path) -> Result<NetConfig, String> {
    let builtin = NetConfig::builtin();
    if file.name.is_empty()
        || !file
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(format!("name {:?}: use letters, digits and '-'", file.name));
    }
    let bridge = file.bridge.unwrap_or(builtin.bridge);
    check_ifname(&bridge).map_err(|e| format!("bridge: {e}"))?;
    let subnet = file.subnet.unwrap_or(builtin.subnet);
    let gateway = file.gateway.unwrap_or_else(|| subnet.first_host());
    if !subnet.is_host(gateway) {
        return Err(format!(
            "gateway {gateway} is not a host address of subnet {subnet}"
        ));
    }
    if let Some(mtu) = file.mtu
        && !(68..=65535).contains(&mtu)
    {
        return Err(format!("mtu {mtu} is out of range (68 to 65535)"));
    }
    for word in file.dns.search.iter().chain(&file.dns.options) {
        super::dns::check_word(word).map_err(|e| format!("dns: {e}"))?;
    }
    Ok(NetConfig {
        name: file.name,
        bridge,
        subnet,
        gateway,
        ip_masq: file.ip_masq.unwrap_or(true),
        mtu: file.mtu,
        dns: file.dns,
        source: Some(path.to_owned()),
    })
}

/// A Linux interface name: 1 to 15 bytes (IFNAMSIZ - 1), no '/', ':' or white space.
pub fn check_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an interface name (1 to 15 characters, no '/', ':' or spaces)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir.join("net.d")).unwrap();
        std::fs::write(dir.join("net.d").join(name), text).unwrap();
    }

    #[test]
    fn builtin_without_files_and_overrides_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = NetConfig::load(dir.path(), "default").unwrap();
        assert_eq!(c.bridge, "appc0");
        assert_eq!(c.gateway, Ipv4Addr::new(172, 16, 28, 1));
        write(
            dir.path(),
            "10-default.json",
            r#"{"name":"default","subnet":"10.88.0.0/16","ipMasq":false}"#,
        );
        write(dir.path(), "20-other.json", r#"{"name":"other"}"#);
        let c = NetConfig::load(dir.path(), "default").unwrap();
        assert_eq!(c.subnet.to_string(), "10.88.0.0/16");
        assert_eq!(c.gateway, Ipv4Addr::new(10, 88, 0, 1));
        assert!(!c.ip_masq);
        assert_eq!(c.bridge, "appc0");
    }

    #[test]
    fn bad_files_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.json", r#"{"name":"default","subnett":"x"}"#);
        let e = NetConfig::load(dir.path(), "default")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.json") && e.contains("subnett"), "{e}");
        write(
            dir.path(),
            "a.json",
            r#"{"name":"default","subnet":"10.0.0.0/24","gateway":"10.0.1.1"}"#,
        );
        let e = NetConfig::load(dir.path(), "default")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a host address"), "{e}");
        write(
            dir.path(),
            "a.json",
            r#"{"name":"default","bridge":"a-very-long-bridge-name"}"#,
        );
        let e = NetConfig::load(dir.path(), "default")
            .unwrap_err()
            .to_string();
        assert!(e.contains("interface name"), "{e}");
        write(dir.path(), "a.json", r#"{"name":"default"}"#);
        write(dir.path(), "b.json", r#"{"name":"default"}"#);
        let e = NetConfig::load(dir.path(), "default")
            .unwrap_err()
            .to_string();
        assert!(e.contains("also defined"), "{e}");
    }
}
