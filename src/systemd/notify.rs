//! sd_notify(3) for `appcctl run` under a `Type=notify` unit: `READY=1` once every app has
//! started, `STATUS=` lines a `systemctl status` shows, `STOPPING=1` when the pod stops.
//!
//! The protocol is one datagram per message to `$NOTIFY_SOCKET`, a filesystem path or, when it
//! starts with `@`, an abstract socket name. Without `$NOTIFY_SOCKET` (not under systemd, or not
//! `Type=notify`) every call does nothing, as libsystemd's does.

use std::os::unix::net::{SocketAddr, UnixDatagram};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot notify systemd through {socket:?}: {source}")]
    Send {
        socket: String,
        source: std::io::Error,
    },
    #[error("NOTIFY_SOCKET={socket:?} is not a path or an abstract socket name")]
    BadSocket { socket: String },
}

/// The messages we send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify<'a> {
    Ready,
    Stopping,
    Status(&'a str),
    /// The main process of the unit is this pid (the pod init is not: appcctl stays it).
    MainPid(u32),
}

impl Notify<'_> {
    fn encode(&self) -> String {
        match self {
            Notify::Ready => "READY=1".into(),
            Notify::Stopping => "STOPPING=1".into(),
            // A newline would end the assignment early: systemd reads one per line.
            Notify::Status(s) => format!("STATUS={}", s.replace('\n', " ")),
            Notify::MainPid(pid) => format!("MAINPID={pid}"),
        }
    }
}

/// Sends `messages` as one datagram to `$NOTIFY_SOCKET`; `Ok(false)` when there is none.
pub fn notify(messages: &[Notify<'_>]) -> Result<bool, NotifyError> {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = socket.to_string_lossy().into_owned();
    send_to(&socket, messages)?;
    Ok(true)
}

/// Sends `messages` to the socket named as `$NOTIFY_SOCKET` would name it.
pub fn send_to(socket: &str, messages: &[Notify<'_>]) -> Result<(), NotifyError> {
    let addr = address(socket)?;
    let text: Vec<String> = messages.iter().map(Notify::encode).collect();
    let send_err = |source| NotifyError::Send {
        socket: socket.to_owned(),
        source,
    };
    let sock = UnixDatagram::unbound().map_err(send_err)?;
    sock.send_to_addr(text.join("\n").as_bytes(), &addr)
        .map_err(send_err)?;
    Ok(())
}

fn address(socket: &str) -> Result<SocketAddr, NotifyError> {
    use std::os::linux::net::SocketAddrExt;
    let bad = || NotifyError::BadSocket {
        socket: socket.to_owned(),
    };
    match socket.as_bytes().first() {
        Some(b'@') => SocketAddr::from_abstract_name(&socket.as_bytes()[1..]).map_err(|_| bad()),
        Some(b'/') => SocketAddr::from_pathname(socket).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_encoded_one_per_line() {
        let m = [Notify::Ready, Notify::Status("2 apps\nrunning")];
        let text: Vec<String> = m.iter().map(Notify::encode).collect();
        assert_eq!(text.join("\n"), "READY=1\nSTATUS=2 apps running");
    }

    #[test]
    fn datagrams_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        send_to(
            path.to_str().unwrap(),
            &[Notify::Ready, Notify::MainPid(42)],
        )
        .unwrap();
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nMAINPID=42");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("appc-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(&format!("@{name}"), &[Notify::Stopping]).unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_bad_socket_name_is_an_error() {
        assert!(matches!(
            send_to("relative", &[Notify::Ready]),
            Err(NotifyError::BadSocket { .. })
        ));
        let missing = send_to("/nonexistent/notify", &[Notify::Ready]);
        assert!(matches!(missing, Err(NotifyError::Send { .. })));
    }
}
