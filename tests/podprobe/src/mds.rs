//! The metadata service as an app sees it: a minimal HTTP/1.1 client over `std::net` (the
//! probe has no other dependencies), reporting status, `Content-Type` and body exactly, so
//! tests can assert on the bytes the ACE validator compares (no trailing newline, exact types).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::json::J;

/// One answer.
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

impl Answer {
    pub fn to_json(&self, request: &str) -> J {
        J::obj(vec![
            ("request", J::from(request)),
            ("status", J::from(u64::from(self.status))),
            ("content_type", J::from(self.content_type.clone())),
            ("body", J::from(self.body.clone())),
        ])
    }
}

/// `AC_METADATA_URL` + `path` when `path` starts with `/`, else `path` as a full URL.
pub fn resolve(path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        let base = std::env::var("AC_METADATA_URL")
            .map_err(|_| "AC_METADATA_URL is not set".to_owned())?;
        Ok(format!("{base}{path}"))
    } else {
        Ok(path.to_owned())
    }
}

/// `application/x-www-form-urlencoded` of `NAME=VALUE` pairs.
pub fn form(fields: &[&str]) -> Result<String, String> {
    let mut out = Vec::new();
    for f in fields {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| format!("form field {f:?} is not NAME=VALUE"))?;
        out.push(format!("{}={}", encode(k), encode(v)));
    }
    Ok(out.join("&"))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One request (`Connection: close`), with the ACE validator's header; `form` makes it a POST.
pub fn request(method: &str, url: &str, form: Option<&str>) -> Result<Answer, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
    let timeout = Some(Duration::from_secs(5));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nMetadata-Flavor: AppContainer\r\nConnection: close\r\n"
    );
    let body = form.unwrap_or_default();
    if form.is_some() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream
        .write_all(req.as_bytes())
        .map_err(|e| format!("send to {host}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from {host}: {e}"))?;
    parse(&raw).ok_or_else(|| {
        format!(
            "{url}: not an HTTP answer: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let mut body = raw[end + 4..].to_vec();
    if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        body = dechunk(&body)?;
    } else if let Some(n) = header("content-length").and_then(|n| n.parse::<usize>().ok()) {
        body.truncate(n);
    }
    Some(Answer {
        status,
        content_type: header("content-type"),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = body.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&body[..eol])
                .ok()?
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        body = &body[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// What the ACE validator's `main` mode reads, for this app (`AC_APP_NAME`): every GET, then a
/// signature of `content` and its verification with the pod's own UUID.
pub fn metadata(content: &str) -> Result<J, String> {
    let app = std::env::var("AC_APP_NAME").map_err(|_| "AC_APP_NAME is not set".to_owned())?;
    let url =
        std::env::var("AC_METADATA_URL").map_err(|_| "AC_METADATA_URL is not set".to_owned())?;
    let v1 = "/acMetadata/v1";
    let mut pairs: Vec<(String, J)> = vec![("url".into(), J::from(url.as_str()))];
    let mut get = |key: &str, path: String| -> Result<Answer, String> {
        let a = request("GET", &resolve(&path)?, None)?;
        pairs.push((key.into(), a.to_json(&path)));
        Ok(a)
    };
    let uuid = get("pod/uuid", format!("{v1}/pod/uuid"))?;
    get("pod/manifest", format!("{v1}/pod/manifest"))?;
    get("pod/annotations", format!("{v1}/pod/annotations"))?;
    get("app/annotations", format!("{v1}/apps/{app}/annotations"))?;
    get(
        "app/image/manifest",
        format!("{v1}/apps/{app}/image/manifest"),
    )?;
    get("app/image/id", format!("{v1}/apps/{app}/image/id"))?;
    let sign_path = format!("{v1}/pod/hmac/sign");
    let sig = request(
        "POST",
        &resolve(&sign_path)?,
        Some(&form(&[&format!("content={content}")])?),
    )?;
    pairs.push(("sign".into(), sig.to_json(&sign_path)));
    let verify_path = format!("{v1}/pod/hmac/verify");
    let fields = [
        format!("content={content}"),
        format!("uuid={}", uuid.body),
        format!("signature={}", sig.body),
    ];
    let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    let ok = request("POST", &resolve(&verify_path)?, Some(&form(&refs)?))?;
    pairs.push(("verify".into(), ok.to_json(&verify_path)));
    Ok(J::O(pairs))
}
