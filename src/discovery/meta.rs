//! The discovery page's meta tags (DS4): `<meta name="ac-discovery" content="PREFIX TEMPLATE">`
//! and `<meta name="ac-discovery-pubkeys" content="PREFIX URL">`, found anywhere in the document.
//!
//! A full HTML parser would be a large dependency for two attributes of one element type; this
//! scanner reads `<meta …>` tags with quoted, single-quoted or bare attribute values, case-
//! insensitive names, and ignores everything else (comments included: a commented-out tag is
//! not a tag).

/// What a meta tag announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    /// `ac-discovery`: a template for image and signature URLs.
    Discovery,
    /// `ac-discovery-pubkeys`: a URL of the keys that sign images under the prefix.
    Pubkeys,
}

/// One `ac-discovery*` tag: the name prefix it applies to and its template or URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaTag {
    pub kind: MetaKind,
    pub prefix: String,
    pub value: String,
}

/// Every `ac-discovery` and `ac-discovery-pubkeys` tag of `html`, in document order. Tags whose
/// content is not `PREFIX VALUE` are ignored, as Go does.
pub fn parse_meta(html: &str) -> Vec<MetaTag> {
    let mut tags = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut pos = 0;
    while let Some(found) = next_tag(&lower, pos) {
        match found {
            Found::Comment(end) => pos = end,
            Found::Meta(start) => {
                let end = lower[start..].find('>').map_or(html.len(), |e| start + e);
                if let Some(tag) = tag_from_attrs(&html[start..end]) {
                    tags.push(tag);
                }
                pos = end;
            }
        }
    }
    tags
}

enum Found {
    /// A comment: skip to this offset.
    Comment(usize),
    /// `<meta`: its attributes start here.
    Meta(usize),
}

fn next_tag(lower: &str, from: usize) -> Option<Found> {
    let meta = find_meta(lower, from);
    let comment = lower[from..].find("<!--").map(|c| from + c);
    match (meta, comment) {
        (Some(m), Some(c)) if c < m => {
            let end = lower[c + 4..]
                .find("-->")
                .map_or(lower.len(), |e| c + 4 + e + 3);
            Some(Found::Comment(end))
        }
        (Some(m), _) => Some(Found::Meta(m)),
        (None, _) => None,
    }
}

/// The offset just after the next `<meta` that is a whole tag name (not `<metadata`).
fn find_meta(lower: &str, mut from: usize) -> Option<usize> {
    while let Some(i) = lower[from..].find("<meta") {
        let after = from + i + 5;
        match lower.as_bytes().get(after) {
            Some(b) if b.is_ascii_whitespace() || *b == b'/' || *b == b'>' => return Some(after),
            None => return None,
            _ => from = after,
        }
    }
    None
}

fn tag_from_attrs(attrs: &str) -> Option<MetaTag> {
    let mut name = None;
    let mut content = None;
    for (key, value) in attributes(attrs) {
        match key.as_str() {
            "name" => name = Some(value),
            "content" => content = Some(value),
            _ => {}
        }
    }
    let kind = match name?.as_str() {
        "ac-discovery" => MetaKind::Discovery,
        "ac-discovery-pubkeys" => MetaKind::Pubkeys,
        _ => return None,
    };
    let content = content?;
    let (prefix, value) = content.trim().split_once(char::is_whitespace)?;
    let value = value.trim();
    (!prefix.is_empty() && !value.is_empty()).then(|| MetaTag {
        kind,
        prefix: prefix.to_owned(),
        value: value.to_owned(),
    })
}

/// `key=value` pairs of a tag's attribute text; keys lower-cased, a few entities decoded.
fn attributes(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        let key_end = rest
            .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        if key_end == 0 {
            return out;
        }
        let key = rest[..key_end].to_ascii_lowercase();
        rest = rest[key_end..].trim_start();
        let Some(after_eq) = rest.strip_prefix('=') else {
            out.push((key, String::new()));
            continue;
        };
        let after_eq = after_eq.trim_start();
        let (value, next) = match after_eq.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let body = &after_eq[1..];
                let end = body.find(q).unwrap_or(body.len());
                (&body[..end], body.get(end + 1..).unwrap_or(""))
            }
            _ => {
                let end = after_eq
                    .find(|c: char| c.is_ascii_whitespace())
                    .unwrap_or(after_eq.len());
                (&after_eq[..end], &after_eq[end..])
            }
        };
        out.push((key, decode_entities(value)));
        rest = next;
    }
}

fn decode_entities(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: MetaKind, prefix: &str, value: &str) -> MetaTag {
        MetaTag {
            kind,
            prefix: prefix.into(),
            value: value.into(),
        }
    }

    #[test]
    fn reads_quoted_bare_and_odd_spellings() {
        let html = r#"<html><HEAD>
            <META NAME="ac-discovery" CONTENT="a.com https://a.com/{name}.{ext}">
            <meta content='b.com   https://b.com/k.gpg' name='ac-discovery-pubkeys'/>
            <meta name=ac-discovery content="c.com">
            <meta name="description" content="x y">
            <metadata name="ac-discovery" content="d.com https://d.com/{ext}">
            <!-- <meta name="ac-discovery" content="e.com https://e.com/{ext}"> -->
            <meta name="ac-discovery" content="f.com https://f.com/?a=1&amp;b={ext}">
        "#;
        assert_eq!(
            parse_meta(html),
            vec![
                tag(MetaKind::Discovery, "a.com", "https://a.com/{name}.{ext}"),
                tag(MetaKind::Pubkeys, "b.com", "https://b.com/k.gpg"),
                tag(MetaKind::Discovery, "f.com", "https://f.com/?a=1&b={ext}"),
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn any_input_is_scanned_without_panicking(s in "(<meta|<!--|-->|name=|content=|[\"' =>]|ac-discovery|\\PC){0,40}") {
            for t in parse_meta(&s) {
                proptest::prop_assert!(!t.prefix.is_empty() && !t.value.is_empty());
            }
        }
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for s in [
            "<meta",
            "<meta name=\"ac-discovery",
            "<!-- <meta",
            "<meta name='",
            "<",
        ] {
            let _ = parse_meta(s);
        }
    }
}
