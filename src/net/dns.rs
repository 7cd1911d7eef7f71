//! `/etc/resolv.conf` and `/etc/hosts` of the apps (`--dns`, `--dns-search`, `--dns-opt`,
//! `--hosts-entry`; reference/rkt.md §1.3, §2.14).
//!
//! Policy, as rkt had it and as OS-SPEC.md asks (appc-requirements.md §2.6):
//! - **resolv.conf** is provided only when something says what it should hold: `--dns=host`
//!   (a copy of the host's file, taken at start), `--dns`/`--dns-search`/`--dns-opt`, or the
//!   network's `dns` section. Otherwise the image's own file (or none) is left alone.
//! - **hosts**: without `--hosts-entry` the image's own file is never modified (OS-SPEC.md "SHOULD
//!   NOT"); an image without one gets a default with `localhost` and the pod's host name. With
//!   `--hosts-entry` (or `host`, a copy of the host's file) the user asked, and the pod's file
//!   replaces the image's.
//!
//! Provided files are written once per run into the pod dir (`<pod>/etc/`) and bind-mounted on
//! each app's path by the init, so the image's tree (overlay lower layer or rendered copy) is never
//! written to and a read-only root works too.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::NetError;
use super::config::DnsConfig;

/// The host's files `host` copies.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
const HOST_HOSTS: &str = "/etc/hosts";
/// glibc reads at most 3 nameservers (resolv.conf(5) MAXNS) and 6 search domains.
const MAX_NAMESERVERS: usize = 3;

/// What the command line asked for; kept with the pod in `options.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DnsOptions {
    /// `--dns IP` (repeatable).
    pub servers: Vec<IpAddr>,
    /// `--dns=host`: copy the host's resolv.conf (not combinable with the other `--dns*`).
    pub host_resolv_conf: bool,
    /// `--dns-search DOMAIN` (repeatable).
    pub search: Vec<String>,
    /// `--dns-opt OPTION` (repeatable), e.g. `ndots:2`.
    pub options: Vec<String>,
    /// `--hosts-entry IP=HOST` (repeatable).
    pub hosts_entries: Vec<HostsEntry>,
    /// `--hosts-entry=host`: start from a copy of the host's /etc/hosts.
    pub host_hosts: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostsEntry {
    pub ip: IpAddr,
    pub host: String,
}

/// The files the init puts into every app (`InitPlan::dns_files`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsFiles {
    /// Bind-mounted on each app's /etc/resolv.conf; `None`: the image's file stays.
    pub resolv_conf: Option<PathBuf>,
    /// Bind-mounted on each app's /etc/hosts; `None`: the image's file stays.
    pub hosts: Option<PathBuf>,
    /// Written as /etc/hosts where the image has none (and `hosts` is `None`).
    pub default_hosts: String,
}

impl DnsOptions {
    /// Applies one `--dns` value: an IP address, or `host`.
    pub fn add_server(&mut self, value: &str) -> Result<(), String> {
        if value == "host" {
            self.host_resolv_conf = true;
        } else {
            let ip: IpAddr = value
                .parse()
                .map_err(|_| format!("{value:?} is not an IP address or `host`"))?;
            self.servers.push(ip);
        }
        self.check_resolv()
    }

    pub fn add_search(&mut self, value: &str) -> Result<(), String> {
        check_word(value)?;
        self.search.push(value.into());
        self.check_resolv()
    }

    pub fn add_option(&mut self, value: &str) -> Result<(), String> {
        check_word(value)?;
        self.options.push(value.into());
        self.check_resolv()
    }

    /// Applies one `--hosts-entry` value: `IP=HOST`, or `host`.
    pub fn add_hosts_entry(&mut self, value: &str) -> Result<(), String> {
        if value == "host" {
            self.host_hosts = true;
            return Ok(());
        }
        let bad = || format!("{value:?} is not IP=HOST (e.g. 10.1.2.3=db.example.com) or `host`");
        let (ip, host) = value.split_once('=').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        check_hostname(host)?;
        self.hosts_entries.push(HostsEntry {
            ip,
            host: host.into(),
        });
        Ok(())
    }

    fn check_resolv(&self) -> Result<(), String> {
        let mixed = !self.servers.is_empty() || !self.search.is_empty() || !self.options.is_empty();
        if self.host_resolv_conf && mixed {
            return Err(
                "--dns=host copies the host's resolv.conf; it cannot be combined with --dns IP, --dns-search or --dns-opt".into(),
            );
        }
        if self.servers.len() > MAX_NAMESERVERS {
            return Err(format!(
                "at most {MAX_NAMESERVERS} --dns servers are used by resolvers (resolv.conf(5))"
            ));
        }
        Ok(())
    }
}

/// A search domain or resolver option: one printable word.
pub fn check_word(word: &str) -> Result<(), String> {
    if word.is_empty() || word.len() > 253 || !word.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{word:?} must be one word of printable characters (at most 253)"
        ));
    }
    Ok(())
}

fn check_hostname(host: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!("{host:?} is not a host name"));
    }
    Ok(())
}

/// The resolv.conf content, or `None` to leave the image's.
pub fn resolv_conf(
    opts: &DnsOptions,
    network: Option<&DnsConfig>,
) -> Result<Option<String>, NetError> {
    if opts.host_resolv_conf {
        return read_host(HOST_RESOLV_CONF).map(Some);
    }
    let from_cli = !opts.servers.is_empty() || !opts.search.is_empty() || !opts.options.is_empty();
    let (servers, search, options) = match network {
        Some(n) if !from_cli => (&n.nameservers, &n.search, &n.options),
        _ => (&opts.servers, &opts.search, &opts.options),
    };
    if servers.is_empty() && search.is_empty() && options.is_empty() {
        return Ok(None);
    }
    let mut out = String::from("# written by appcctl\n");
    for s in servers {
        let _ = writeln!(out, "nameserver {s}");
    }
    if !search.is_empty() {
        let _ = writeln!(out, "search {}", search.join(" "));
    }
    if !options.is_empty() {
        let _ = writeln!(out, "options {}", options.join(" "));
    }
    Ok(Some(out))
}

/// The default /etc/hosts of an image that has none: localhost, and the host name on the pod's
/// address (or on loopback when the pod has no address of its own).
pub fn default_hosts(hostname: &str, address: Option<Ipv4Addr>) -> String {
    match address {
        Some(ip) => format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{hostname}\n"
        ),
        None => format!(
            "127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback {hostname}\n"
        ),
    }
}

/// The /etc/hosts that replaces the image's, or `None` when the user asked for nothing.
pub fn hosts_file(
    opts: &DnsOptions,
    hostname: &str,
    address: Option<Ipv4Addr>,
) -> Result<Option<String>, NetError> {
    if !opts.host_hosts && opts.hosts_entries.is_empty() {
        return Ok(None);
    }
    let mut out = if opts.host_hosts {
        read_host(HOST_HOSTS)?
    } else {
        default_hosts(hostname, address)
    };
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !opts.hosts_entries.is_empty() {
        out.push_str("# --hosts-entry\n");
    }
    for e in &opts.hosts_entries {
        let _ = writeln!(out, "{}\t{}", e.ip, e.host);
    }
    Ok(Some(out))
}

fn read_host(path: &str) -> Result<String, NetError> {
    std::fs::read_to_string(path).map_err(|source| NetError::Io {
        op: format!("read the host's {path}"),
        source,
    })
}

/// Writes the provided files into `<pod_dir>/etc/` (atomically) and says where they are.
pub fn write_pod_files(
    pod_dir: &Path,
    opts: &DnsOptions,
    network: Option<&DnsConfig>,
    hostname: &str,
    address: Option<Ipv4Addr>,
) -> Result<DnsFiles, NetError> {
    let dir = pod_dir.join("etc");
    let write = |name: &str, content: &str| -> Result<PathBuf, NetError> {
        std::fs::create_dir_all(&dir).map_err(|source| NetError::Io {
            op: format!("create {}", dir.display()),
            source,
        })?;
        crate::pod::fsio::write_atomic(&dir, name, content.as_bytes(), 0o644)
            .map_err(|e| NetError::Pod(Box::new(e)))?;
        Ok(dir.join(name))
    };
    let resolv_conf = match resolv_conf(opts, network)? {
        Some(text) => Some(write("resolv.conf", &text)?),
        None => None,
    };
    let hosts = match hosts_file(opts, hostname, address)? {
        Some(text) => Some(write("hosts", &text)?),
        None => None,
    };
    Ok(DnsFiles {
        resolv_conf,
        hosts,
        default_hosts: default_hosts(hostname, address),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_flags_build_resolv_conf() {
        let mut o = DnsOptions::default();
        o.add_server("10.0.0.53").unwrap();
        o.add_server("::1").unwrap();
        o.add_search("example.com").unwrap();
        o.add_option("ndots:2").unwrap();
        let text = resolv_conf(&o, None).unwrap().unwrap();
        assert!(
            text.contains("nameserver 10.0.0.53\nnameserver ::1\n"),
            "{text}"
        );
        assert!(
            text.contains("search example.com\noptions ndots:2\n"),
            "{text}"
        );
        assert!(o.add_server("host").is_err());
        assert!(o.add_server("nope").is_err());
        assert!(o.add_search("two words").is_err());
        assert_eq!(resolv_conf(&DnsOptions::default(), None).unwrap(), None);
        let net = DnsConfig {
            nameservers: vec!["10.9.9.9".parse().unwrap()],
            ..DnsConfig::default()
        };
        let text = resolv_conf(&DnsOptions::default(), Some(&net))
            .unwrap()
            .unwrap();
        assert!(text.contains("nameserver 10.9.9.9"), "{text}");
        // The command line replaces the network's settings as a whole.
        let text = resolv_conf(&o, Some(&net)).unwrap().unwrap();
        assert!(!text.contains("10.9.9.9"), "{text}");
    }

    #[test]
    fn hosts_entries_replace_only_when_asked() {
        let ip = Some(Ipv4Addr::new(172, 16, 28, 2));
        assert_eq!(hosts_file(&DnsOptions::default(), "web", ip).unwrap(), None);
        let mut o = DnsOptions::default();
        o.add_hosts_entry("10.1.2.3=db.example.com").unwrap();
        let text = hosts_file(&o, "web", ip).unwrap().unwrap();
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"), "{text}");
        assert!(text.contains("172.16.28.2\tweb\n"), "{text}");
        assert!(text.ends_with("10.1.2.3\tdb.example.com\n"), "{text}");
        assert!(o.add_hosts_entry("10.1.2.3").is_err());
        assert!(o.add_hosts_entry("x=db").is_err());
        assert!(o.add_hosts_entry("10.1.2.3=bad host").is_err());
        let d = default_hosts("web", None);
        assert!(d.starts_with("127.0.0.1\tlocalhost web\n"), "{d}");
    }
}
