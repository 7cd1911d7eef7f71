//! Image discovery (spec/discovery.md, DS1–DS16): from `name[:version][,label=value]` to the
//! URLs of an image, its signature and its keys.
//!
//! - [`meta`]: the `<meta name="ac-discovery…">` tags of a discovery page (DS4).
//! - [`template`]: the variables of an app string and the rendering of templates (DS2, DS8).
//! - [`walk`]: `https://{name}?ac-discovery=1`, prefix matching and the walk up parent paths
//!   (DS3, DS7, DS11); the HTTP itself (redirects DS12, auth DS16) is the fetcher's, passed in as
//!   a page source so the walk's rules are testable on their own.
//!
//! Decisions where the spec and the reference code differ (spec/appc-requirements.md §4 #16):
//! the walk moves to the parent path on a 4xx answer or a page without tags of the wanted kind,
//! as the spec says; a 5xx or a network error stops it with that error rather than being skipped
//! (Go walks on any error, which hides a broken server behind a parent's answer). Image
//! endpoints and key locations are found by two independent walks, each ending at the first
//! level that yields one of its kind, as Go does. Templates are rendered by plain substitution
//! (DS8, as Go; DS13's RFC 6570 wording is not followed) and a template with a `{variable}` left
//! over is skipped.

pub mod meta;
pub mod template;
pub mod walk;

pub use meta::{MetaKind, MetaTag, parse_meta};
pub use template::{Variables, render};
pub use walk::{Discovered, DiscoveryError, Endpoint, Page, Want, discover};
