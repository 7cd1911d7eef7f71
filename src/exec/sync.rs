//! The `appcctl` ↔ `appc-init` channel (STYLE.md rule 6): a `SOCK_SEQPACKET` socketpair, one
//! JSON message per packet, so a message is never split or merged.
//!
//! ```text
//! appcctl                                   appc-init (PID 1 of the pod)
//!   spawn init in new namespaces  ───────▶  reads plan.json, waits            (sync 1)
//!   moves it into the pod cgroup
//!   Go                            ───────▶  builds each app's root, runs pre-start
//!                                           handlers, starts the apps
//!   waits                         ◀───────  Started | Failed                   (sync 2)
//!   records Running, waits for the init's exit
//! ```

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, recv, send, socketpair,
};
use serde::{Deserialize, Serialize};

/// The largest message (an error text); longer ones are truncated by the sender.
const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToInit {
    /// sync 1: the init is placed (its cgroup, scope or kept service); go on. With
    /// `journal`, apps' stdout and stderr are journald streams naming `unit` (known only now).
    Go { journal: bool, unit: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromInit {
    /// sync 2: every app runs; (app, pid in the pod's PID namespace).
    Started { apps: Vec<(String, i32)> },
    /// sync 2: setup failed; `code` is a failing pre-start handler's exit status.
    Failed { error: String, code: Option<i32> },
}

/// Creates the pair: (appcctl's end, the init's end), both close-on-exec.
pub fn channel() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

pub fn send_msg<T: Serialize>(fd: impl AsFd, msg: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    bytes.truncate(MAX_MESSAGE);
    send(fd, &bytes, SendFlags::NOSIGNAL)?;
    Ok(())
}

/// The next message; `Ok(None)` when the other end closed without sending one (it died).
pub fn recv_msg<T: for<'de> Deserialize<'de>>(fd: impl AsFd) -> io::Result<Option<T>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let n = loop {
        match recv(&fd, &mut buf, RecvFlags::empty()) {
            Ok((n, _)) => break n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if n == 0 {
        return Ok(None);
    }
    serde_json::from_slice(&buf[..n])
        .map(Some)
        .map_err(|e| io::Error::other(format!("malformed message from the other end: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_and_eof_is_none() {
        let (a, b) = channel().unwrap();
        let go = ToInit::Go {
            journal: true,
            unit: Some("appc-x.scope".into()),
        };
        send_msg(&a, &go).unwrap();
        assert_eq!(recv_msg::<ToInit>(&b).unwrap(), Some(go));
        let failed = FromInit::Failed {
            error: "x".into(),
            code: Some(3),
        };
        send_msg(&b, &failed).unwrap();
        assert_eq!(recv_msg::<FromInit>(&a).unwrap(), Some(failed));
        drop(b);
        assert_eq!(recv_msg::<FromInit>(&a).unwrap(), None);
    }
}
