//! Socket activation (sd_listen_fds(3)): the listeners systemd passes from
//! `appc-metadata.socket`, as descriptors 3 … 3+`LISTEN_FDS`-1, meant for this process when
//! `LISTEN_PID` is our PID.
//!
//! The two listeners are told apart by their address family, not by `LISTEN_FDNAMES`: one
//! socket unit names all its descriptors alike (`FileDescriptorName=` is per unit), and the
//! family cannot be misconfigured. The names are still reported in errors.

use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, SocketType};

use super::MetadataError;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The passed listeners, by role.
#[derive(Debug)]
pub struct Activated {
    pub registration: std::os::unix::net::UnixListener,
    pub public: Vec<std::net::TcpListener>,
}

/// The listeners passed by systemd, or `None` when the service was started without them
/// (standalone). The variables stay in the environment (removing them is `unsafe` in edition
/// 2024); the service starts no processes that could inherit them.
pub fn listeners_from_env() -> Result<Option<Activated>, MetadataError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(None);
    };
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None); // meant for another process (inherited by accident)
    }
    let count: i32 = count
        .parse()
        .map_err(|_| MetadataError::Activation(format!("LISTEN_FDS={count:?} is not a number")))?;
    let names: Vec<&str> = names.split(':').collect();
    let mut registration = None;
    let mut public = Vec::new();
    for i in 0..count {
        let fd_number = LISTEN_FDS_START + i;
        let label = match names.get(i as usize).filter(|n| !n.is_empty()) {
            Some(name) => format!("{fd_number} ({name})"),
            None => fd_number.to_string(),
        };
        let fd = crate::sys::take_inherited_fd(fd_number)
            .map_err(|e| MetadataError::Activation(format!("descriptor {label}: {e}")))?;
        match classify(&fd, &label)? {
            Role::Registration => registration = Some(std::os::unix::net::UnixListener::from(fd)),
            Role::Public => public.push(std::net::TcpListener::from(fd)),
        }
    }
    let registration = registration.ok_or_else(|| {
        MetadataError::Activation(
            "no unix stream socket passed (ListenStream=/run/appc/metadata.sock)".into(),
        )
    })?;
    if public.is_empty() {
        return Err(MetadataError::Activation(
            "no TCP socket passed (ListenStream=18112)".into(),
        ));
    }
    Ok(Some(Activated {
        registration,
        public,
    }))
}

enum Role {
    Registration,
    Public,
}

fn classify(fd: &OwnedFd, label: &str) -> Result<Role, MetadataError> {
    let bad = |why: String| MetadataError::Activation(format!("descriptor {label}: {why}"));
    let kind =
        rustix::net::sockopt::socket_type(fd).map_err(|e| bad(format!("not a socket ({e})")))?;
    if kind != SocketType::STREAM {
        return Err(bad("not a stream socket; use ListenStream=".into()));
    }
    let addr = rustix::net::getsockname(fd).map_err(|e| bad(e.to_string()))?;
    match addr.address_family() {
        AddressFamily::UNIX => Ok(Role::Registration),
        AddressFamily::INET | AddressFamily::INET6 => Ok(Role::Public),
        other => Err(bad(format!("unexpected address family {other:?}"))),
    }
}
