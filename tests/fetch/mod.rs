//! Test support for the fetch tests: an HTTPS server on loopback inside the test process (axum
//! over tokio-rustls, with a CA and certificate made by rcgen for this run), ACI archives, and
//! OpenPGP keys and signatures made with sequoia.
//!
//! The server answers from a table the test fills: each path (with its query) maps to a
//! [`Route`] that can carry an ETag, a max-age, required credentials, a redirect, a forced
//! status, or a connection drop after some bytes. Every request is logged for assertions.
//! `appcctl` reaches it by name through `APPC_TEST_RESOLVE` and trusts the CA through
//! `SSL_CERT_FILE`.
#![allow(dead_code)] // each test crate uses a different subset

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio_rustls::rustls;

/// The names the test certificate is valid for; `APPC_TEST_RESOLVE` sends them all to us.
pub const HOSTS: &[&str] = &["example.com", "other.example.com", "keys.example.com"];

/// What the server does for one path.
#[derive(Debug, Clone, Default)]
pub struct Route {
    pub body: Vec<u8>,
    pub content_type: Option<&'static str>,
    pub etag: Option<String>,
    pub max_age: Option<u64>,
    /// The `Authorization` value required; anything else gets 401.
    pub auth: Option<String>,
    /// Answer with a redirect to this location (absolute or relative).
    pub redirect: Option<String>,
    /// Answer with this status and an empty body.
    pub status: Option<u16>,
    /// Drop the connection after this many body bytes, this many times.
    pub drop_after: Option<(usize, usize)>,
}

impl Route {
    pub fn bytes(body: impl Into<Vec<u8>>) -> Route {
        Route {
            body: body.into(),
            ..Route::default()
        }
    }

    pub fn html(body: &str) -> Route {
        Route {
            body: body.as_bytes().to_vec(),
            content_type: Some("text/html"),
            ..Route::default()
        }
    }

    pub fn status(code: u16) -> Route {
        Route {
            status: Some(code),
            ..Route::default()
        }
    }

    pub fn redirect(to: &str) -> Route {
        Route {
            redirect: Some(to.to_owned()),
            ..Route::default()
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub host: String,
    pub path: String,
    pub range: Option<String>,
    pub if_none_match: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct Shared {
    routes: Mutex<HashMap<String, Route>>,
    log: Mutex<Vec<Logged>>,
}

/// A running server; it stops with the test process.
pub struct Server {
    pub addr: SocketAddr,
    pub tls: bool,
    shared: Arc<Shared>,
}

/// A CA and a server certificate for [`HOSTS`], made fresh.
pub struct Pki {
    pub ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "appc-pod test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = HOSTS.iter().map(|h| h.to_string()).collect();
        let params = CertificateParams::new(names).expect("params");
        let cert = params.signed_by(&key, &issuer).expect("cert");
        Pki {
            ca_pem: ca_cert.pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }
}

impl Server {
    /// An HTTPS server with a certificate from `pki`.
    pub fn https(pki: &Pki) -> Server {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let cert = rustls::pki_types::CertificateDer::from(pki.cert_der.clone());
        let key = rustls::pki_types::PrivateKeyDer::try_from(pki.key_der.clone()).expect("key");
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("tls config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self::start(Some(Arc::new(config)))
    }

    /// A plain-http server.
    pub fn http() -> Server {
        Self::start(None)
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let shared = Arc::new(Shared::default());
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let state = Arc::clone(&shared);
        let is_tls = tls.is_some();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let tcp = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let app = axum::Router::new().fallback(handle).with_state(state);
                match tls {
                    Some(config) => {
                        let listener = TlsListener::new(tcp, config);
                        axum::serve(listener, app).await.expect("serve");
                    }
                    None => axum::serve(tcp, app).await.expect("serve"),
                }
            });
        });
        Server {
            addr,
            tls: is_tls,
            shared,
        }
    }

    pub fn route(&self, path: &str, route: Route) {
        self.shared
            .routes
            .lock()
            .expect("routes")
            .insert(path.to_owned(), route);
    }

    pub fn log(&self) -> Vec<Logged> {
        self.shared.log.lock().expect("log").clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Logged> {
        self.log().into_iter().filter(|l| l.path == path).collect()
    }

    /// `https://example.com:PORT` (or http).
    pub fn base(&self, host: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}:{}", self.addr.port())
    }

    /// `APPC_TEST_RESOLVE` for every name of [`HOSTS`].
    pub fn resolve_env(&self) -> String {
        HOSTS
            .iter()
            .map(|h| format!("{h}={}", self.addr))
            .collect::<Vec<_>>()
            .join(",")
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let get = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let host = get(header::HOST).unwrap_or_default();
    let route = {
        let mut routes = shared.routes.lock().expect("routes");
        let route = routes.get_mut(&path).cloned();
        // A drop counts down on the stored route.
        if let Some(r) = routes.get_mut(&path)
            && let Some((at, times)) = r.drop_after
        {
            r.drop_after = (times > 1).then_some((at, times - 1));
        }
        route
    };
    let resp = respond(route, &headers);
    shared.log.lock().expect("log").push(Logged {
        host,
        path,
        range: get(header::RANGE),
        if_none_match: get(header::IF_NONE_MATCH),
        authorization: get(header::AUTHORIZATION),
        status: resp.status().as_u16(),
    });
    resp
}

fn respond(route: Option<Route>, headers: &HeaderMap) -> Response {
    let Some(route) = route else {
        return status(StatusCode::NOT_FOUND);
    };
    if let Some(wanted) = &route.auth {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(wanted.as_str()) {
            let mut r = status(StatusCode::UNAUTHORIZED);
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"test\""),
            );
            return r;
        }
    }
    if let Some(code) = route.status {
        return status(StatusCode::from_u16(code).expect("status"));
    }
    if let Some(to) = &route.redirect {
        let mut r = status(StatusCode::FOUND);
        r.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(to).expect("location"),
        );
        return r;
    }
    let etag_matches = route.etag.as_ref().is_some_and(|tag| {
        headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            == Some(tag.as_str())
    });
    let mut builder = Response::builder();
    if let Some(tag) = &route.etag {
        builder = builder.header(header::ETAG, tag);
    }
    if let Some(age) = route.max_age {
        builder = builder.header(header::CACHE_CONTROL, format!("max-age={age}"));
    }
    if let Some(ct) = route.content_type {
        builder = builder.header(header::CONTENT_TYPE, ct);
    }
    if etag_matches {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("response");
    }
    let total = route.body.len();
    let start = range_start(headers, &route).filter(|s| *s < total);
    let (code, body) = match start {
        Some(s) => {
            builder = builder.header(
                header::CONTENT_RANGE,
                format!("bytes {s}-{}/{total}", total - 1),
            );
            (StatusCode::PARTIAL_CONTENT, route.body[s..].to_vec())
        }
        None => (StatusCode::OK, route.body.clone()),
    };
    builder = builder
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::ACCEPT_RANGES, "bytes");
    let body = match route.drop_after {
        Some((at, _)) if at < body.len() => {
            // Promise the whole length, send part of it, then fail the stream: hyper aborts
            // the connection, which is what a dropped download looks like to the client. The
            // pause makes the body poll pending, so hyper flushes the part before the abort.
            let part = Bytes::from(body[..at].to_vec());
            let chunks = futures_util::stream::unfold(0u8, move |step| {
                let part = part.clone();
                async move {
                    match step {
                        0 => Some((Ok(part), 1)),
                        1 => {
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                            Some((Err(std::io::Error::other("dropped by the test")), 2))
                        }
                        _ => None,
                    }
                }
            });
            Body::from_stream(chunks)
        }
        _ => Body::from(body),
    };
    builder.status(code).body(body).expect("response")
}

/// `Range: bytes=N-` honoured when `If-Range` matches the route's ETag (or is absent).
fn range_start(headers: &HeaderMap, route: &Route) -> Option<usize> {
    let range = headers.get(header::RANGE)?.to_str().ok()?;
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && route.etag.as_deref() != Some(if_range)
    {
        return None;
    }
    let n = range.strip_prefix("bytes=")?.strip_suffix('-')?;
    n.parse().ok()
}

fn status(code: StatusCode) -> Response {
    Response::builder()
        .status(code)
        .body(Body::empty())
        .expect("response")
}

/// TLS on top of a TCP listener: handshakes run in their own tasks and finished streams are
/// handed to axum, so one stalled client never blocks the others.
struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    addr: SocketAddr,
}

impl TlsListener {
    fn new(tcp: tokio::net::TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        let addr = tcp.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = tcp.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        TlsListener { rx, addr }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

// ---------------------------------------------------------------------------------------------
// Images

/// An uncompressed ACI with one file, named `name` with `labels`, and `deps` dependencies.
pub fn aci(name: &str, labels: &[(&str, &str)], deps: &[Value], content: &str) -> Vec<u8> {
    let labels: Vec<Value> = labels
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let mut manifest = json!({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
                              "labels": labels});
    if !deps.is_empty() {
        manifest["dependencies"] = Value::Array(deps.to_vec());
    }
    let mut b = tar::Builder::new(Vec::new());
    let text = manifest.to_string();
    let mut h = header();
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, "manifest", text.as_bytes())
        .expect("manifest");
    let mut d = header();
    d.set_entry_type(tar::EntryType::Directory);
    d.set_mode(0o755);
    d.set_mtime(1_600_000_000);
    d.set_size(0);
    b.append_data(&mut d, "rootfs", &[][..]).expect("rootfs");
    let mut f = header();
    f.set_size(content.len() as u64);
    f.set_mode(0o644);
    f.set_mtime(1_600_000_000);
    b.append_data(&mut f, "rootfs/content", content.as_bytes())
        .expect("file");
    b.into_inner().expect("tar")
}

fn header() -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// The image ID of an uncompressed ACI.
pub fn image_id(aci: &[u8]) -> String {
    use sha2::{Digest, Sha512};
    let d = Sha512::digest(aci);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha512-{hex}")
}

// ---------------------------------------------------------------------------------------------
// OpenPGP

/// A signing key made for this run.
pub struct Key {
    cert: sequoia_openpgp::Cert,
}

impl Key {
    pub fn new(user: &str) -> Key {
        use sequoia_openpgp::cert::CertBuilder;
        let (cert, _) = CertBuilder::general_purpose(Some(user))
            .generate()
            .expect("key");
        Key { cert }
    }

    /// The public key, ASCII-armored (what a pubkeys URL serves).
    pub fn public_armored(&self) -> Vec<u8> {
        use sequoia_openpgp::serialize::SerializeInto;
        self.cert.armored().to_vec().expect("armor")
    }

    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint().to_hex()
    }

    /// A detached ASCII-armored signature of `data` (the `.aci.asc` shape).
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        use std::io::Write;

        use sequoia_openpgp::armor::Kind;
        use sequoia_openpgp::policy::StandardPolicy;
        use sequoia_openpgp::serialize::stream::{Armorer, Message, Signer};
        let policy = StandardPolicy::new();
        let keypair = self
            .cert
            .keys()
            .unencrypted_secret()
            .with_policy(&policy, None)
            .supported()
            .alive()
            .revoked(false)
            .for_signing()
            .next()
            .expect("signing key")
            .key()
            .clone()
            .into_keypair()
            .expect("keypair");
        let mut out = Vec::new();
        {
            let m = Armorer::new(Message::new(&mut out))
                .kind(Kind::Signature)
                .build()
                .expect("armorer");
            let mut s = Signer::new(m, keypair)
                .expect("signer")
                .detached()
                .build()
                .expect("signer");
            s.write_all(data).expect("sign");
            s.finalize().expect("finalize");
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// appcctl

/// A store, a config dir and the server's CA for one test.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub resolve: String,
}

impl Env {
    pub fn new(pki: &Pki, server: &Server) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("config")).expect("config");
        std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).expect("ca");
        Env {
            dir,
            resolve: server.resolve_env(),
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `appcctl --dir STORE --config-dir CONFIG ARGS...` with the test CA and resolver.
    pub fn appcctl(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run appcctl")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_appcctl"));
        c.arg("--dir")
            .arg(self.store())
            .arg("--config-dir")
            .arg(self.config())
            .args(args)
            .env("SSL_CERT_FILE", self.dir.path().join("ca.pem"))
            .env("APPC_TEST_RESOLVE", &self.resolve);
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            c.env_remove(var);
        }
        c
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.appcctl(args);
        assert!(
            out.status.success(),
            "appcctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.appcctl(args);
        assert!(
            !out.status.success(),
            "appcctl {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The IDs in the store.
    pub fn stored(&self) -> Vec<String> {
        let out = self.ok(&["image", "list", "--format", "json"]);
        let v: Value = serde_json::from_str(&out).expect("json");
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Trusts `key` for `prefix` with the trust verb.
    pub fn trust(&self, prefix: &str, key: &Key) {
        let file = self.path(&format!("{}.asc", key.fingerprint()));
        std::fs::write(&file, key.public_armored()).expect("key file");
        self.ok(&[
            "trust",
            "--prefix",
            prefix,
            "--skip-fingerprint-review",
            file.to_str().expect("utf-8"),
        ]);
    }
}

/// Whether this process may write a store (imports keep owners: root).
pub fn can_import() -> bool {
    nix_is_root()
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("write");
}
