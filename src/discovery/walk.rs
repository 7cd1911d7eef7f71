//! The discovery walk (DS3, DS7, DS11): fetch `https://{path}?ac-discovery=1` for the name and
//! then each parent path until the wanted kinds of tags are found.

use super::meta::{MetaKind, MetaTag, parse_meta};
use super::template::{Variables, render};
use crate::schema::AppString;

/// What a discovery page request gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// A 2xx answer (after redirects) and its body.
    Found(String),
    /// A 4xx answer: try the parent path (DS11).
    ClientError(u16),
}

/// The URLs of one image (DS1, DS5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub aci: String,
    pub asc: String,
}

/// Which kinds of locations to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub images: bool,
    pub pubkeys: bool,
}

/// What discovery found: image endpoints in page order, then key URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    pub endpoints: Vec<Endpoint>,
    pub pubkeys: Vec<String>,
    /// Every discovery URL asked, in order (for messages).
    pub tried: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("{url}: {reason}")]
    Page { url: String, reason: String },
    #[error(
        "no image found by discovery for {app}: no ac-discovery template for it at {}",
        .tried.join(", ")
    )]
    NoEndpoints { app: String, tried: Vec<String> },
    #[error(
        "no public keys found by discovery for {app}: no ac-discovery-pubkeys tag for it at {}",
        .tried.join(", ")
    )]
    NoPubkeys { app: String, tried: Vec<String> },
}

/// The discovery URL of a path (DS3). `scheme` is `https`, or `http` when the user allowed it.
pub fn discovery_url(scheme: &str, path: &str) -> String {
    format!("{scheme}://{path}?ac-discovery=1")
}

/// `a.com/p/s`, `a.com/p`, `a.com`: the name and its parents, nearest first.
fn paths(name: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(name);
    std::iter::from_fn(move || {
        let cur = next?;
        next = cur.rfind('/').map(|i| &cur[..i]);
        Some(cur)
    })
}

/// Walks the name's discovery pages with `get` (which follows redirects, DS12, and applies the
/// operator's auth, DS16). Each kind stops at the first level with a usable tag of its kind.
pub fn discover(
    app: &AppString,
    want: Want,
    get: &mut dyn FnMut(&str) -> Result<Page, String>,
) -> Result<Discovered, DiscoveryError> {
    let name = app.name.as_str();
    let vars = Variables::for_app(app);
    let mut found = Discovered::default();
    let (mut need_images, mut need_keys) = (want.images, want.pubkeys);
    for path in paths(name) {
        if !need_images && !need_keys {
            break;
        }
        let url = discovery_url("https", path);
        found.tried.push(url.clone());
        let page = get(&url).map_err(|reason| DiscoveryError::Page {
            url: url.clone(),
            reason,
        })?;
        let Page::Found(html) = page else { continue };
        let tags: Vec<MetaTag> = parse_meta(&html)
            .into_iter()
            .filter(|t| name.starts_with(&t.prefix)) // DS7
            .collect();
        if need_images {
            found.endpoints = endpoints(&tags, &vars);
            need_images = found.endpoints.is_empty();
        }
        if need_keys {
            found.pubkeys = tags
                .iter()
                .filter(|t| t.kind == MetaKind::Pubkeys)
                .map(|t| t.value.clone())
                .collect();
            need_keys = found.pubkeys.is_empty();
        }
    }
    if need_images {
        return Err(DiscoveryError::NoEndpoints {
            app: app.to_string(),
            tried: found.tried,
        });
    }
    if need_keys {
        return Err(DiscoveryError::NoPubkeys {
            app: app.to_string(),
            tried: found.tried,
        });
    }
    Ok(found)
}

/// The rendered endpoints of the `ac-discovery` tags; templates that leave a variable are
/// skipped, and so are the ones whose image and signature URLs are the same.
fn endpoints(tags: &[MetaTag], vars: &Variables) -> Vec<Endpoint> {
    tags.iter()
        .filter(|t| t.kind == MetaKind::Discovery)
        .filter_map(|t| {
            let aci = render(&t.value, vars, "aci")?;
            let asc = render(&t.value, vars, "aci.asc")?;
            (aci != asc).then_some(Endpoint { aci, asc })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_paths() {
        assert_eq!(
            paths("a.com/p/s").collect::<Vec<_>>(),
            ["a.com/p/s", "a.com/p", "a.com"]
        );
        assert_eq!(paths("a.com").collect::<Vec<_>>(), ["a.com"]);
    }
}
