//! HTTP(S) for discovery pages, images, signatures and keys: reqwest with rustls.
//!
//! - Timeouts: 20 s to connect, 60 s without a byte while reading; no limit on a whole
//!   download (images are large).
//! - Redirects: followed (DS12), at most 10; a redirect to plain http is refused unless
//!   `--insecure-options=http`. reqwest drops the `Authorization` header when a redirect changes
//!   host, port or scheme, so credentials never follow a redirect elsewhere.
//! - Retries: connection failures, timeouts, 429 and 5xx answers, and bodies cut short are
//!   retried up to [`MAX_ATTEMPTS`] times with doubling pauses; a cut-short image download
//!   resumes where it stopped (`Range` + `If-Range`), also in a later run (the partial file and
//!   its validator stay in the store's `tmp/`).
//! - TLS: the system's roots plus the PEM bundle named by `SSL_CERT_FILE` (the usual CA
//!   option: how tests trust their own CA, and how a site adds an internal one);
//!   `--insecure-options=tls` stops checking certificates.
//! - `APPC_TEST_RESOLVE=host=IP:PORT[,host=IP:PORT]`: a test hook that sends requests for
//!   `host` to that address (reqwest's `resolve`), so discovery names like `example.com/app`
//!   reach a test server on loopback. Like the proxy variables it only redirects connections:
//!   certificates are still checked against the name.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Client, Response, StatusCode, redirect};
use serde::{Deserialize, Serialize};
use url::Url;

use super::FetchError;
use super::auth::{AuthConfig, Credentials};
use crate::discovery::Page;

/// Attempts per request before a transient failure becomes an error.
pub const MAX_ATTEMPTS: u32 = 5;
/// The largest discovery page, signature or key file read into memory.
pub const MAX_SMALL_BODY: usize = 4 << 20;

/// The settings a client is built from.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// `--insecure-options=http`.
    pub allow_http: bool,
    /// `--insecure-options=tls`.
    pub insecure_tls: bool,
    /// Extra CA certificates (PEM), from `SSL_CERT_FILE`.
    pub ca_file: Option<PathBuf>,
    pub auth: AuthConfig,
    /// Name → address overrides (the `APPC_TEST_RESOLVE` hook).
    pub resolve: Vec<(String, SocketAddr)>,
    /// Where `auth.d` lives (for messages).
    pub config_dir: PathBuf,
}

impl HttpConfig {
    /// The environment's part: `SSL_CERT_FILE` and `APPC_TEST_RESOLVE`.
    pub fn from_env(mut self) -> Result<HttpConfig, FetchError> {
        self.ca_file = std::env::var_os("SSL_CERT_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        if let Ok(spec) = std::env::var("APPC_TEST_RESOLVE") {
            self.resolve = parse_resolve(&spec)?;
        }
        Ok(self)
    }
}

/// `host=IP:PORT,host=IP:PORT`.
fn parse_resolve(spec: &str) -> Result<Vec<(String, SocketAddr)>, FetchError> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let bad = || FetchError::Client {
                reason: format!("APPC_TEST_RESOLVE: {item:?} is not host=IP:PORT"),
            };
            let (host, addr) = item.trim().split_once('=').ok_or_else(bad)?;
            let addr: SocketAddr = addr.parse().map_err(|_| bad())?;
            Ok((host.to_ascii_lowercase(), addr))
        })
        .collect()
}

/// A configured client.
#[derive(Debug, Clone)]
pub struct Http {
    client: Client,
    cfg: HttpConfig,
}

/// How a download ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Downloaded {
    /// 304: the cached image is current.
    NotModified { max_age: Option<i64> },
    /// The whole file is in the partial file.
    Complete {
        etag: Option<String>,
        max_age: Option<i64>,
    },
}

/// What is remembered beside a partial download so a later attempt can resume it.
#[derive(Debug, Serialize, Deserialize)]
struct PartialMeta {
    url: String,
    /// A strong ETag or a Last-Modified date: the `If-Range` value.
    validator: String,
}

impl Http {
    pub fn new(cfg: HttpConfig) -> Result<Http, FetchError> {
        let allow_http = cfg.allow_http;
        let policy = redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                attempt.error("more than 10 redirects")
            } else if attempt.url().scheme() == "http" && !allow_http {
                let msg = format!(
                    "redirected to plain http ({}); allow it with --insecure-options=http",
                    attempt.url()
                );
                attempt.error(msg)
            } else {
                attempt.follow()
            }
        });
        let mut b = Client::builder()
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("appcctl/", env!("CARGO_PKG_VERSION")))
            .redirect(policy);
        if cfg.insecure_tls {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| FetchError::CaFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| FetchError::CaFile {
                    path: path.clone(),
                    reason: chain(&e),
                })?;
            b = b.tls_certs_merge(certs);
        }
        for (host, addr) in &cfg.resolve {
            b = b.resolve(host, *addr);
        }
        let client = b
            .build()
            .map_err(|e| FetchError::Client { reason: chain(&e) })?;
        Ok(Http { client, cfg })
    }

    pub fn config(&self) -> &HttpConfig {
        &self.cfg
    }

    /// Refuses plain http unless allowed; other schemes are never fetched.
    pub fn check_scheme(&self, url: &Url) -> Result<(), FetchError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.cfg.allow_http => Ok(()),
            "http" => Err(FetchError::InsecureHttp {
                url: url.to_string(),
            }),
            other => Err(FetchError::Scheme {
                url: url.to_string(),
                scheme: other.to_owned(),
            }),
        }
    }

    /// GET with the domain's credentials, retrying transient failures.
    async fn send(&self, url: &Url, headers: &HeaderMap) -> Result<Response, FetchError> {
        self.check_scheme(url)?;
        let mut attempt = 1;
        loop {
            let mut req = self.client.get(url.clone()).headers(headers.clone());
            req = match self.cfg.auth.for_url(url) {
                Some(Credentials::Basic { user, password }) => req.basic_auth(user, Some(password)),
                Some(Credentials::Bearer { token }) => req.bearer_auth(token),
                None => req,
            };
            let retry = match req.send().await {
                Ok(resp) if transient_status(resp.status()) => {
                    format!("{} {}", url, resp.status())
                }
                Ok(resp) => return Ok(resp),
                Err(e) if transient_error(&e) => chain(&e),
                Err(e) => {
                    return Err(FetchError::Http {
                        url: url.to_string(),
                        reason: chain(&e),
                    });
                }
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(FetchError::Http {
                    url: url.to_string(),
                    reason: format!("{retry} (gave up after {attempt} attempts)"),
                });
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Turns a final non-success status into the error the user should see.
    fn status_error(&self, url: &Url, status: StatusCode) -> FetchError {
        if status == StatusCode::UNAUTHORIZED {
            return FetchError::Unauthorized {
                url: url.to_string(),
                hint: self.auth_hint(url),
            };
        }
        FetchError::Status {
            url: url.to_string(),
            status: status.to_string(),
        }
    }

    fn auth_hint(&self, url: &Url) -> String {
        let host = url.host_str().unwrap_or_default();
        let auth_d = self.cfg.config_dir.join("auth.d");
        if url.scheme() != "https" {
            format!("credentials are never sent over plain http; use https://{host}")
        } else if self.cfg.auth.has_host(url) {
            format!(
                "the credentials for {host} in {} were refused",
                auth_d.display()
            )
        } else {
            format!(
                "add credentials for {host} to {} (rkt's auth.d format)",
                auth_d.display()
            )
        }
    }

    /// A discovery page: its body on 2xx, `ClientError` on 4xx (the walk goes up), an error on
    /// 401 (a credentials problem, not a missing page) and on anything else.
    pub async fn get_page(&self, url: &Url) -> Result<Page, FetchError> {
        let resp = self.send(url, &HeaderMap::new()).await?;
        let status = resp.status();
        if status.is_success() {
            let body = read_small(url, resp).await?;
            return Ok(Page::Found(String::from_utf8_lossy(&body).into_owned()));
        }
        if status.is_client_error() && status != StatusCode::UNAUTHORIZED {
            return Ok(Page::ClientError(status.as_u16()));
        }
        Err(self.status_error(url, status))
    }

    /// A small file (signature, keys) into memory.
    pub async fn get_small(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        let resp = self.send(url, &HeaderMap::new()).await?;
        if !resp.status().is_success() {
            return Err(self.status_error(url, resp.status()));
        }
        read_small(url, resp).await
    }

    /// Downloads `url` into `part`, resuming what an earlier attempt left there. `etag` is the
    /// cached copy's: a 304 answer means that copy is current.
    pub async fn download(
        &self,
        url: &Url,
        part: &Path,
        etag: Option<&str>,
        bar: &indicatif::ProgressBar,
    ) -> Result<Downloaded, FetchError> {
        let meta_path = meta_path(part);
        let mut failures = 1;
        loop {
            let resume = resume_point(url, part, &meta_path);
            let mut headers = HeaderMap::new();
            if let Some((offset, validator)) = &resume {
                headers.insert(header::RANGE, header_value(&format!("bytes={offset}-")));
                headers.insert(header::IF_RANGE, header_value(validator));
            } else if let Some(tag) = etag {
                headers.insert(header::IF_NONE_MATCH, header_value(tag));
            }
            let resp = self.send(url, &headers).await?;
            let max_age = max_age(resp.headers());
            let status = resp.status();
            if status == StatusCode::NOT_MODIFIED && resume.is_none() && etag.is_some() {
                return Ok(Downloaded::NotModified { max_age });
            }
            if status == StatusCode::RANGE_NOT_SATISFIABLE && resume.is_some() {
                discard(part, &meta_path);
                continue;
            }
            if !status.is_success() {
                return Err(self.status_error(url, status));
            }
            let offset = match (status, &resume) {
                (StatusCode::PARTIAL_CONTENT, Some((offset, _)))
                    if content_range_start(resp.headers()) == Some(*offset) =>
                {
                    *offset
                }
                (StatusCode::PARTIAL_CONTENT, _) => {
                    // A range we did not ask for: start over without one.
                    discard(part, &meta_path);
                    continue;
                }
                _ => 0,
            };
            let new_etag = write_meta(url, resp.headers(), &meta_path)?;
            match self.receive(url, resp, part, offset, bar).await {
                Ok(()) => {
                    let _ = std::fs::remove_file(&meta_path); // best effort: the file is complete
                    return Ok(Downloaded::Complete {
                        etag: new_etag,
                        max_age,
                    });
                }
                Err(reason) if failures < MAX_ATTEMPTS => {
                    tracing_note(url, &reason);
                    tokio::time::sleep(backoff(failures)).await;
                    failures += 1;
                }
                Err(reason) => {
                    return Err(FetchError::Http {
                        url: url.to_string(),
                        reason: format!(
                            "{reason} (gave up after {failures} attempts; run the command again to resume)"
                        ),
                    });
                }
            }
        }
    }

    /// Streams the body into `part` from `offset`; `Err` is a transient failure (the part is
    /// kept for a resume).
    async fn receive(
        &self,
        url: &Url,
        resp: Response,
        part: &Path,
        offset: u64,
        bar: &indicatif::ProgressBar,
    ) -> Result<(), String> {
        let mut file = open_part(part, offset).map_err(|e| format!("{}: {e}", part.display()))?;
        if let Some(len) = resp.content_length() {
            bar.set_length(offset + len);
        }
        bar.set_position(offset);
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("{url}: {}", chain(&e)))?;
            file.write_all(&chunk)
                .map_err(|e| format!("{}: {e}", part.display()))?;
            bar.inc(chunk.len() as u64);
        }
        file.sync_all()
            .map_err(|e| format!("{}: {e}", part.display()))?;
        Ok(())
    }
}

/// Interrupted downloads are worth a line with `--debug`-less runs too: the user sees why a
/// download paused.
fn tracing_note(url: &Url, reason: &str) {
    eprintln!("appcctl: {url}: {reason}; resuming");
}

fn open_part(part: &Path, offset: u64) -> std::io::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(part)?;
    file.set_len(offset)?;
    file.seek(SeekFrom::Start(offset))?;
    Ok(file)
}

fn meta_path(part: &Path) -> PathBuf {
    let mut p = part.as_os_str().to_owned();
    p.push(".json");
    PathBuf::from(p)
}

/// Where to resume and with which validator, when a partial file for this URL exists.
fn resume_point(url: &Url, part: &Path, meta_path: &Path) -> Option<(u64, String)> {
    let meta: PartialMeta = serde_json::from_slice(&std::fs::read(meta_path).ok()?).ok()?;
    let len = std::fs::metadata(part).ok()?.len();
    (meta.url == url.as_str() && len > 0).then_some((len, meta.validator))
}

/// Records the validator of a response about to be written, so the download can resume, and
/// returns its ETag (kept for `If-None-Match` later). Without a usable validator (no strong
/// ETag, no Last-Modified) a cut download starts over.
fn write_meta(
    url: &Url,
    headers: &HeaderMap,
    meta_path: &Path,
) -> Result<Option<String>, FetchError> {
    let etag = headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let strong = etag.clone().filter(|e| !e.starts_with("W/"));
    let date = headers
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(validator) = strong.or(date) else {
        let _ = std::fs::remove_file(meta_path); // best effort: nothing to resume with
        return Ok(etag);
    };
    let meta = PartialMeta {
        url: url.to_string(),
        validator,
    };
    let json = serde_json::to_vec(&meta).unwrap_or_default();
    let tmp = meta_path.with_extension("json.tmp");
    let io = |source| FetchError::Io {
        op: "write",
        path: meta_path.to_owned(),
        source,
    };
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(&json).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, meta_path).map_err(io)?;
    Ok(etag)
}

fn discard(part: &Path, meta_path: &Path) {
    let _ = std::fs::remove_file(part); // best effort: restarting from zero either way
    let _ = std::fs::remove_file(meta_path);
}

fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let range = v.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// `Cache-Control: max-age=N` in seconds; `no-cache`/`no-store` mean 0.
pub fn max_age(headers: &HeaderMap) -> Option<i64> {
    let v = headers.get(header::CACHE_CONTROL)?.to_str().ok()?;
    let mut age = None;
    for directive in v.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(0);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            age = n.trim_matches('"').parse::<i64>().ok();
        }
    }
    age
}

async fn read_small(url: &Url, resp: Response) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| FetchError::Http {
            url: url.to_string(),
            reason: chain(&e),
        })?;
        if body.len() + chunk.len() > MAX_SMALL_BODY {
            return Err(FetchError::Http {
                url: url.to_string(),
                reason: format!("answer larger than {MAX_SMALL_BODY} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn transient_status(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() && s != StatusCode::NOT_IMPLEMENTED
}

/// Timeouts, refused or reset connections and cut bodies are worth another try; certificate
/// and redirect-policy failures are not.
fn transient_error(e: &reqwest::Error) -> bool {
    if e.is_redirect() || e.is_builder() {
        return false;
    }
    let text = chain(e).to_ascii_lowercase();
    if text.contains("certificate") || text.contains("tls") && text.contains("alert") {
        return false;
    }
    e.is_timeout() || e.is_connect() || e.is_request() || e.is_body()
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64 << attempt.min(5))
}

/// An error and its sources on one line (reqwest's own message is only the outermost).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(max_age(&h("public, max-age=600")), Some(600));
        assert_eq!(max_age(&h("no-cache")), Some(0));
        assert_eq!(max_age(&h("private")), None);
        assert_eq!(max_age(&HeaderMap::new()), None);
    }

    #[test]
    fn resolve_overrides() {
        let r = parse_resolve("Example.com=127.0.0.1:8443, b.org=[::1]:443").unwrap();
        assert_eq!(r[0].0, "example.com");
        assert_eq!(r[1].1.port(), 443);
        assert!(parse_resolve("example.com").is_err());
        assert!(parse_resolve("example.com=nowhere").is_err());
    }
}
