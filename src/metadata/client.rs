//! `appcctl`'s side: the URL its apps get, and registration over the unix socket (HTTP/1.1,
//! one request per connection; connecting is what activates the service).
//!
//! Synchronous on purpose: `appcctl run` has no async runtime outside D-Bus calls, and two
//! small requests per pod do not need one.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::registry::{AppImage, InitProcess, Registration};
use super::{DEFAULT_PORT, DEFAULT_SOCKET, MetadataError, persist};
use crate::schema::{PodManifest, PodUuid};
use crate::store::Store;

/// Overrides the registration socket (tests run their own service).
pub const SOCKET_ENV: &str = "APPC_METADATA_SOCKET";
/// Overrides the port in `AC_METADATA_URL`.
pub const PORT_ENV: &str = "APPC_METADATA_PORT";
/// A socket-activated service may need a moment to start; a hung one must not hold a pod.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The registration socket: `$APPC_METADATA_SOCKET` or `/run/appc/metadata.sock`.
pub fn socket_path() -> PathBuf {
    std::env::var_os(SOCKET_ENV).map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from)
}

/// The pods' port: `$APPC_METADATA_PORT` or 18112.
pub fn public_port() -> u16 {
    std::env::var(PORT_ENV)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_PORT)
}

/// How a pod reaches the service and is known to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// By a secret path segment: host and no networking.
    Token(String),
    /// By its own address on the pod network, through the bridge's gateway address.
    Address { gateway: IpAddr },
}

impl Access {
    /// For a pod with an address on the pod network (`gateway` is the network's gateway):
    /// known by that address; otherwise by a new token.
    pub fn for_pod(gateway: Option<IpAddr>) -> Result<Access, MetadataError> {
        match gateway {
            Some(gateway) => Ok(Access::Address { gateway }),
            None => Self::new_token(),
        }
    }

    /// A fresh 256-bit token (MD3: at least 128 bits, unguessable, not the pod UUID).
    pub fn new_token() -> Result<Access, MetadataError> {
        Ok(Access::Token(persist::hex(&persist::random_bytes(32)?)))
    }

    /// `AC_METADATA_URL`, without a trailing slash (apps append `/acMetadata/v1/…`).
    pub fn url(&self) -> String {
        let port = public_port();
        match self {
            Access::Token(t) => format!("http://127.0.0.1:{port}/{t}"),
            Access::Address {
                gateway: IpAddr::V4(a),
            } => format!("http://{a}:{port}"),
            Access::Address {
                gateway: IpAddr::V6(a),
            } => format!("http://[{a}]:{port}"),
        }
    }

    fn token(&self) -> Option<String> {
        match self {
            Access::Token(t) => Some(t.clone()),
            Access::Address { .. } => None,
        }
    }
}

/// `PUT /v1/pods/<uuid>`.
pub fn register(socket: &Path, uuid: &PodUuid, reg: &Registration) -> Result<(), MetadataError> {
    let body = serde_json::to_vec(reg).unwrap_or_else(|e| unreachable!("JSON of plain data: {e}"));
    expect_success(
        socket,
        request(socket, "PUT", &format!("/v1/pods/{uuid}"), Some(&body))?,
    )
}

/// `DELETE /v1/pods/<uuid>`.
pub fn unregister(socket: &Path, uuid: &PodUuid) -> Result<(), MetadataError> {
    expect_success(
        socket,
        request(socket, "DELETE", &format!("/v1/pods/{uuid}"), None)?,
    )
}

/// `GET /v1/pods`: the registered pods.
pub fn list(socket: &Path) -> Result<serde_json::Value, MetadataError> {
    let (status, body) = request(socket, "GET", "/v1/pods", None)?;
    if status != 200 {
        return Err(protocol(
            socket,
            format!("status {status}: {}", String::from_utf8_lossy(&body).trim()),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| protocol(socket, format!("bad pod list: {e}")))
}

fn expect_success(socket: &Path, (status, body): (u16, Vec<u8>)) -> Result<(), MetadataError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&body);
    Err(protocol(
        socket,
        format!("status {status}: {}", text.trim()),
    ))
}

fn protocol(socket: &Path, reason: String) -> MetadataError {
    MetadataError::Protocol {
        socket: socket.to_owned(),
        reason,
    }
}

/// One HTTP/1.1 exchange; the server closes the connection after its answer.
fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), MetadataError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| MetadataError::Unreachable {
        socket: socket.to_owned(),
        source,
    })?;
    let io = |e: std::io::Error| protocol(socket, e.to_string());
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: appc-metadata\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(body).map_err(io)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(io)?;
    parse_response(&answer).ok_or_else(|| protocol(socket, "not an HTTP answer".into()))
}

/// Status and body of a complete HTTP/1.1 response (fixed length or read to close; the
/// registration API never answers chunked bodies longer than this client reads).
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = &raw[end + 4..];
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    Some((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_vec()
        },
    ))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// One pod's registration, as `appcctl run` drives it: best effort, never failing the pod.
#[derive(Debug)]
pub struct PodRegistration {
    socket: PathBuf,
    uuid: PodUuid,
    body: Registration,
    registered: bool,
    debug: bool,
}

impl PodRegistration {
    /// The registration of a pod whose manifest is reified: each app's image manifest, as
    /// stored, from the image store.
    pub fn from_store(
        store: &Store,
        uuid: PodUuid,
        manifest: &PodManifest,
        access: &Access,
        debug: bool,
    ) -> Result<PodRegistration, MetadataError> {
        let mut apps = BTreeMap::new();
        for rt in &manifest.apps {
            let app = rt.name.to_string();
            let image_error = |reason: String| MetadataError::Image {
                app: app.clone(),
                reason,
            };
            let id = rt
                .image
                .id
                .as_ref()
                .ok_or_else(|| image_error("the pod manifest names no image id".into()))?;
            let image = store
                .resolve(id.as_ref())
                .map_err(|e| image_error(e.to_string()))?;
            let entry = AppImage {
                image_id: id.to_string(),
                image_manifest: image.manifest_text,
            };
            apps.insert(app, entry);
        }
        Ok(Self::new(uuid, manifest.clone(), apps, access, debug))
    }

    pub fn new(
        uuid: PodUuid,
        manifest: PodManifest,
        apps: BTreeMap<String, AppImage>,
        access: &Access,
        debug: bool,
    ) -> PodRegistration {
        PodRegistration {
            socket: socket_path(),
            uuid,
            body: Registration {
                manifest,
                apps,
                addresses: Vec::new(),
                token: access.token(),
                init: None,
            },
            registered: false,
            debug,
        }
    }

    /// Registers the pod with its init and addresses. A service that is not running is only
    /// a debug message (metadata is a SHOULD, MD1); one that refuses is a warning.
    pub fn register(&mut self, init: Option<InitProcess>, addresses: Vec<IpAddr>) {
        self.body.init = init;
        self.body.addresses = addresses;
        match register(&self.socket, &self.uuid, &self.body) {
            Ok(()) => {
                self.registered = true;
                if self.debug {
                    eprintln!(
                        "appcctl: pod {} registered with the metadata service",
                        self.uuid
                    );
                }
            }
            Err(e @ MetadataError::Unreachable { .. }) => {
                if self.debug {
                    eprintln!("appcctl: no metadata for pod {}: {e}", self.uuid);
                }
            }
            Err(e) => eprintln!("appcctl: warning: no metadata for pod {}: {e}", self.uuid),
        }
    }

    /// Unregisters a registered pod (best effort: a stale registration is harmless).
    pub fn unregister(&mut self) {
        if !std::mem::take(&mut self.registered) {
            return;
        }
        if let Err(e) = unregister(&self.socket, &self.uuid)
            && self.debug
        {
            eprintln!("appcctl: metadata service: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_length_or_chunks_parse() {
        let fixed = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 4\r\n\r\nbad\n";
        assert_eq!(parse_response(fixed), Some((400, b"bad\n".to_vec())));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Some((200, b"abcde".to_vec())));
        assert_eq!(parse_response(b"garbage"), None);
    }

    #[test]
    fn tokens_are_long_hex_and_urls_have_no_trailing_slash() {
        let Access::Token(t) = Access::new_token().unwrap() else {
            panic!("not a token")
        };
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        let v6 = Access::Address {
            gateway: "fd00::1".parse().unwrap(),
        };
        assert!(v6.url().starts_with("http://[fd00::1]:"), "{}", v6.url());
        assert!(!Access::Token(t).url().ends_with('/'));
    }
}
