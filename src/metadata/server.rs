//! Running the service: its state, its listeners (passed by systemd, or bound here when there
//! is no systemd), and both routers served on one tokio runtime until SIGTERM or SIGINT.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;

use super::activation::Activated;
use super::identity::Identity;
use super::registry::Registry;
use super::routes::{Service, public_router, registration_router};
use super::{MetadataError, io_err, persist};

/// Loads (or creates) the key and the registrations under `state_dir` (made 0700 if missing).
pub fn open_service(state_dir: &Path) -> Result<Arc<Service>, MetadataError> {
    persist::ensure_dir(state_dir, 0o700)?;
    let identity = Identity::load_or_create(state_dir)?;
    let registry = Registry::open(state_dir)?;
    Ok(Arc::new(Service { registry, identity }))
}

/// Binds the registration socket (0600) and the public TCP addresses, for a start without
/// systemd. A socket file left by a dead service is replaced; a live one is an error.
pub fn bind_standalone(socket: &Path, public: &[SocketAddr]) -> Result<Activated, MetadataError> {
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        persist::ensure_dir(dir, 0o755)?;
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(MetadataError::Bind {
            what: socket.display().to_string(),
            source: io::Error::new(
                io::ErrorKind::AddrInUse,
                "another metadata service answers there",
            ),
        });
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove the stale socket", socket)(e)),
    }
    let bind_err = |what: String| move |source| MetadataError::Bind { what, source };
    let registration = std::os::unix::net::UnixListener::bind(socket)
        .map_err(bind_err(socket.display().to_string()))?;
    // Connections from other users are refused on accept as well, which closes the window
    // between bind(2) and this chmod.
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("chmod", socket))?;
    let public = public
        .iter()
        .map(|a| std::net::TcpListener::bind(a).map_err(bind_err(a.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Activated {
        registration,
        public,
    })
}

/// The unix listener, accepting only root and the service's own user (the socket unit's
/// `SocketMode=0600` already does; this guards a changed mode or a standalone start).
struct TrustedPeers {
    inner: tokio::net::UnixListener,
    own_uid: u32,
}

impl axum::serve::Listener for TrustedPeers {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => match stream.peer_cred() {
                    Ok(c) if c.uid() == 0 || c.uid() == self.own_uid => return (stream, addr),
                    Ok(c) => eprintln!(
                        "appc-metadata: refusing a registration connection from uid {}",
                        c.uid()
                    ),
                    Err(e) => eprintln!("appc-metadata: cannot identify a registration peer: {e}"),
                },
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("appc-metadata: accept on the registration socket: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The addresses the pods' listeners are bound to (for the start-up message and tests).
pub fn public_addresses(listeners: &Activated) -> Vec<SocketAddr> {
    listeners
        .public
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect()
}

/// Serves until `shutdown` completes; then stops accepting and lets open requests finish.
pub async fn serve(
    service: Arc<Service>,
    listeners: Activated,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), MetadataError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    let registration_addr = listeners
        .registration
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("the registration socket"));
    let unix = to_tokio_unix(listeners.registration, &registration_addr)?;
    let trusted = TrustedPeers {
        inner: unix,
        own_uid: rustix::process::geteuid().as_raw(),
    };
    let router = registration_router(service.clone());
    let stop = stopped();
    tasks.spawn(async move {
        axum::serve(trusted, router)
            .with_graceful_shutdown(stop)
            .await
    });
    for listener in listeners.public {
        let addr = listener
            .local_addr()
            .map_err(io_err("inspect", "a TCP listener"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| MetadataError::Bind {
                what: addr.to_string(),
                source: e,
            })?;
        let tcp = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| MetadataError::Bind {
                what: addr.to_string(),
                source: e,
            })?
            // Small answers on kept-alive connections: Nagle would delay each by up to 40 ms.
            .tap_io(|s| {
                let _ = s.set_nodelay(true);
            });
        let app =
            public_router(service.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let stop = stopped();
        tasks.spawn(async move { axum::serve(tcp, app).with_graceful_shutdown(stop).await });
    }
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(io_err("serve", "the metadata listeners")(e)),
            Err(e) => {
                return Err(io_err("serve", "the metadata listeners")(io::Error::other(
                    e,
                )));
            }
        }
    }
    Ok(())
}

fn to_tokio_unix(
    listener: std::os::unix::net::UnixListener,
    path: &Path,
) -> Result<tokio::net::UnixListener, MetadataError> {
    let what = path.display().to_string();
    listener
        .set_nonblocking(true)
        .map_err(|source| MetadataError::Bind {
            what: what.clone(),
            source,
        })?;
    tokio::net::UnixListener::from_std(listener)
        .map_err(|source| MetadataError::Bind { what, source })
}

/// Completes on SIGTERM (systemd's stop) or SIGINT.
pub async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the default action still ends the process.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
