//! `--port NAME:[HOSTIP:]HOSTPORT`: the pod manifest's `ports` (ExposedPort, spec/pods.md)
//! resolved against the ports the apps declare (`app.ports`, spec/aci.md), before anything runs.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::NetError;
use crate::schema::{ExposedPort, PodManifest};

/// A transport protocol a port map forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One forwarding: host `[host_ip:]host_port..+count` to the pod's `pod_port..+count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMap {
    pub name: String,
    pub protocol: Protocol,
    /// `None`: every local address of the host.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub pod_port: u16,
    pub count: u16,
}

impl PortMap {
    /// Whether two maps claim the same host port (same protocol, overlapping ranges and
    /// addresses; "every address" overlaps any address).
    pub fn clashes_with(&self, other: &PortMap) -> bool {
        let ips = match (self.host_ip, other.host_ip) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        let (a0, a1) = (
            u32::from(self.host_port),
            u32::from(self.host_port) + u32::from(self.count),
        );
        let (b0, b1) = (
            u32::from(other.host_port),
            u32::from(other.host_port) + u32::from(other.count),
        );
        self.protocol == other.protocol && ips && a0 < b1 && b0 < a1
    }

    /// `www:8080`, `www:127.0.0.1:8080` (as given to `--port`).
    pub fn host_side(&self) -> String {
        match self.host_ip {
            Some(ip) => format!("{ip}:{}", self.host_port),
            None => self.host_port.to_string(),
        }
    }
}

/// Parses `NAME:[HOSTIP:]HOSTPORT` (the `--port` value) into the manifest's form.
pub fn parse_port_flag(value: &str) -> Result<ExposedPort, String> {
    let bad =
        || format!("{value:?} is not NAME:[HOSTIP:]HOSTPORT (e.g. www:8080 or www:127.0.0.1:8080)");
    let (name, rest) = value.split_once(':').ok_or_else(bad)?;
    let name = crate::schema::AcName::parse(name).map_err(|e| format!("port name: {e}"))?;
    let (ip, port) = match rest.rsplit_once(':') {
        Some((ip, port)) => (Some(ip), port),
        None => (None, rest),
    };
    let host_port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    let host_ip = match ip {
        Some(ip) => match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => Some(IpAddr::V4(v4)),
            Ok(IpAddr::V6(_)) => {
                return Err(format!("{ip}: only IPv4 host addresses can be forwarded"));
            }
            Err(_) => return Err(bad()),
        },
        None => None,
    };
    Ok(ExposedPort {
        name,
        host_port,
        host_ip,
        pod_port: None,
    })
}

/// Every exposed port of `manifest`, resolved to the app port it names.
pub fn resolve(manifest: &PodManifest) -> Result<Vec<PortMap>, NetError> {
    let mut maps: Vec<PortMap> = Vec::new();
    for exposed in &manifest.ports {
        let map = resolve_one(manifest, exposed)?;
        if let Some(other) = maps.iter().find(|m| m.clashes_with(&map)) {
            return Err(NetError::PortClash {
                port: map.host_side(),
                name: map.name.clone(),
                holder: format!("port {} of this pod", other.name),
            });
        }
        maps.push(map);
    }
    Ok(maps)
}

fn resolve_one(manifest: &PodManifest, exposed: &ExposedPort) -> Result<PortMap, NetError> {
    let name = exposed.name.as_str();
    let declared: Vec<_> = manifest
        .apps
        .iter()
        .filter_map(|a| a.app.as_ref())
        .flat_map(|a| a.ports.iter())
        .collect();
    let port = match &exposed.pod_port {
        Some(p) => p,
        None => declared
            .iter()
            .find(|p| p.name.as_str() == name)
            .copied()
            .ok_or_else(|| NetError::UnknownPort {
                name: name.into(),
                known: declared.iter().map(|p| p.name.to_string()).collect(),
            })?,
    };
    let protocol = match port.protocol.as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => {
            return Err(NetError::BadPort {
                name: name.into(),
                reason: format!("protocol {other:?} cannot be forwarded (tcp or udp)"),
            });
        }
    };
    if u32::from(exposed.host_port) + u32::from(port.count) > 65536 {
        return Err(NetError::BadPort {
            name: name.into(),
            reason: format!(
                "host port {} + count {} goes past 65535",
                exposed.host_port, port.count
            ),
        });
    }
    let host_ip = match exposed.host_ip {
        None => None,
        Some(IpAddr::V4(ip)) => Some(ip),
        Some(IpAddr::V6(ip)) => {
            return Err(NetError::BadPort {
                name: name.into(),
                reason: format!("host address {ip}: only IPv4 can be forwarded"),
            });
        }
    };
    Ok(PortMap {
        name: name.into(),
        protocol,
        host_ip,
        host_port: exposed.host_port,
        pod_port: port.port,
        count: port.count.max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_flags_parse() {
        let p = parse_port_flag("www:8080").unwrap();
        assert_eq!(
            (p.name.as_str(), p.host_port, p.host_ip),
            ("www", 8080, None)
        );
        let p = parse_port_flag("www:127.0.0.1:8080").unwrap();
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        for bad in [
            "www",
            "www:0",
            "www:x",
            "WWW:80",
            "www:1.2.3:80",
            "www:70000",
        ] {
            assert!(parse_port_flag(bad).is_err(), "{bad}");
        }
        assert!(parse_port_flag("www:::1:80").unwrap_err().contains("IPv4"));
    }

    #[test]
    fn clashes() {
        let m = |ip: Option<[u8; 4]>, port, count| PortMap {
            name: "a".into(),
            protocol: Protocol::Tcp,
            host_ip: ip.map(Ipv4Addr::from),
            host_port: port,
            pod_port: 80,
            count,
        };
        assert!(m(None, 80, 1).clashes_with(&m(Some([127, 0, 0, 1]), 80, 1)));
        assert!(!m(Some([10, 0, 0, 1]), 80, 1).clashes_with(&m(Some([127, 0, 0, 1]), 80, 1)));
        assert!(m(None, 80, 5).clashes_with(&m(None, 84, 1)));
        assert!(!m(None, 80, 4).clashes_with(&m(None, 84, 1)));
        let mut udp = m(None, 80, 1);
        udp.protocol = Protocol::Udp;
        assert!(!udp.clashes_with(&m(None, 80, 1)));
    }
}
