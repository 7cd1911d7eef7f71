//! Credentials for downloads (DS16): `<config>/auth.d/*.json`, in rkt's format, so existing
//! rkt configurations work unchanged:
//!
//! ```json
//! {"rktKind": "auth", "rktVersion": "v1", "domains": ["example.com"],
//!  "type": "basic", "credentials": {"user": "alice", "password": "secret"}}
//! {"rktKind": "auth", "rktVersion": "v1", "domains": ["example.com"],
//!  "type": "oauth", "credentials": {"token": "sometoken"}}
//! ```
//!
//! A domain matches a request's host exactly (`host` or `host:port`). Files are read in name
//! order and a later file wins for a domain it repeats. Credentials go with every https request
//! to their domain, as rkt sent them (DS16's "on 401" policy without the extra round trip), and
//! a 401 then says whether credentials were refused or missing. They are sent only over https:
//! never in clear text, whatever the insecure options say.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::FetchError;

/// How to authenticate to one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { user: String, password: String },
    Bearer { token: String },
}

/// Every domain's credentials.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    entries: Vec<(String, Credentials)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(rename = "rktKind")]
    kind: String,
    #[serde(rename = "rktVersion")]
    version: String,
    domains: Vec<String>,
    #[serde(rename = "type")]
    auth_type: String,
    credentials: serde_json::Map<String, serde_json::Value>,
}

impl AuthConfig {
    /// Reads `<config_dir>/auth.d/*.json`; a missing directory means no credentials.
    pub fn load(config_dir: &Path) -> Result<AuthConfig, FetchError> {
        let dir = config_dir.join("auth.d");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(FetchError::Io {
                    op: "read",
                    path: dir,
                    source,
                });
            }
        };
        files.sort();
        let mut config = AuthConfig::default();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| FetchError::Io {
                op: "read",
                path: path.clone(),
                source,
            })?;
            let (domains, creds) = parse_auth(&text).map_err(|reason| FetchError::Auth {
                path: path.clone(),
                reason,
            })?;
            for d in domains {
                config.entries.retain(|(known, _)| *known != d);
                config.entries.push((d, creds.clone()));
            }
        }
        Ok(config)
    }

    /// The credentials for `url`, if any and if it is https.
    pub fn for_url(&self, url: &url::Url) -> Option<&Credentials> {
        if url.scheme() != "https" {
            return None;
        }
        let host = url.host_str()?.to_ascii_lowercase();
        let with_port = url.port().map(|p| format!("{host}:{p}"));
        self.entries
            .iter()
            .find(|(d, _)| *d == host || Some(d) == with_port.as_ref())
            .map(|(_, c)| c)
    }

    /// Whether any credentials exist for the host of `url` (for the hint on a 401).
    pub fn has_host(&self, url: &url::Url) -> bool {
        let mut https = url.clone();
        let _ = https.set_scheme("https"); // best effort: only the host matters here
        self.for_url(&https).is_some()
    }
}

fn parse_auth(text: &str) -> Result<(Vec<String>, Credentials), String> {
    let file: AuthFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if file.kind != "auth" {
        return Err(format!("rktKind is {:?}, expected \"auth\"", file.kind));
    }
    if file.version != "v1" {
        return Err(format!("rktVersion is {:?}, expected \"v1\"", file.version));
    }
    if file.domains.is_empty() {
        return Err("domains is empty".into());
    }
    let field = |name: &str| {
        file.credentials
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("credentials.{name} is missing or not a string"))
    };
    let creds = match file.auth_type.as_str() {
        "basic" => Credentials::Basic {
            user: field("user")?,
            password: field("password")?,
        },
        "oauth" => Credentials::Bearer {
            token: field("token")?,
        },
        other => {
            return Err(format!("type {other:?} is not supported (basic or oauth)"));
        }
    };
    let domains = file
        .domains
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    Ok((domains, creds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rkt_files_parse() {
        let (d, c) = parse_auth(
            r#"{"rktKind":"auth","rktVersion":"v1","domains":["Example.com","b.org:8443"],
                "type":"basic","credentials":{"user":"u","password":"p"}}"#,
        )
        .unwrap();
        assert_eq!(d, ["example.com", "b.org:8443"]);
        assert_eq!(
            c,
            Credentials::Basic {
                user: "u".into(),
                password: "p".into()
            }
        );
        let (_, c) = parse_auth(
            r#"{"rktKind":"auth","rktVersion":"v1","domains":["a"],"type":"oauth","credentials":{"token":"t"}}"#,
        )
        .unwrap();
        assert_eq!(c, Credentials::Bearer { token: "t".into() });
        for bad in [
            r#"{"rktKind":"dockerAuth","rktVersion":"v1","domains":["a"],"type":"basic","credentials":{}}"#,
            r#"{"rktKind":"auth","rktVersion":"v1","domains":["a"],"type":"aws","credentials":{}}"#,
            r#"{"rktKind":"auth","rktVersion":"v1","domains":["a"],"type":"basic","credentials":{"user":"u"}}"#,
            r#"{"rktKind":"auth","rktVersion":"v1","domains":[],"type":"oauth","credentials":{"token":"t"}}"#,
        ] {
            assert!(parse_auth(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_https_gets_credentials() {
        let mut config = AuthConfig::default();
        config.entries.push((
            "example.com".into(),
            Credentials::Bearer { token: "t".into() },
        ));
        let https = url::Url::parse("https://example.com/x.aci").unwrap();
        let http = url::Url::parse("http://example.com/x.aci").unwrap();
        let other = url::Url::parse("https://example.org/x.aci").unwrap();
        assert!(config.for_url(&https).is_some());
        assert!(config.for_url(&http).is_none());
        assert!(config.for_url(&other).is_none());
    }
}
