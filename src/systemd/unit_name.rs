//! Unit names for pods: `systemd-escape` semantics (systemd `unit_name_escape()`), so that any pod
//! name gives a valid, reversible unit name component.

/// Escapes `name` the way `systemd-escape NAME` (without `--path`) does: `/` becomes `-`, the
/// characters `[a-zA-Z0-9:_.]` stay, every other byte becomes `\xNN` (lowercase hex), and so does
/// a leading `.`.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, &b) in name.as_bytes().iter().enumerate() {
        if b == b'/' {
            out.push('-');
        } else if (i == 0 && b == b'.') || !is_valid_unit_char(b) {
            out.push_str(&format!("\\x{b:02x}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// The characters systemd keeps unescaped (`VALID_CHARS` minus `-` and `\`, which escaping
/// produces).
fn is_valid_unit_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.')
}

/// The transient scope of pod `pod_name`: `appc-<escaped>.scope`.
pub fn scope_name(pod_name: &str) -> String {
    format!("appc-{}.scope", escape(pod_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay() {
        assert_eq!(escape("web01"), "web01");
        assert_eq!(escape("a.b:c_d"), "a.b:c_d");
        assert_eq!(scope_name("web"), "appc-web.scope");
    }

    #[test]
    fn tricky_names_are_escaped() {
        assert_eq!(escape("a-b"), "a\\x2db");
        assert_eq!(escape("a/b c"), "a-b\\x20c");
        assert_eq!(escape(".hidden"), "\\x2ehidden");
        assert_eq!(escape("a.b"), "a.b", "only a leading dot is escaped");
        assert_eq!(escape("ü"), "\\xc3\\xbc", "UTF-8 bytes one by one");
        assert_eq!(escape("a\\b"), "a\\x5cb");
        assert_eq!(escape(""), "");
        assert_eq!(scope_name("my-pod"), "appc-my\\x2dpod.scope");
    }

    /// Compares with the real `systemd-escape`, which every systemd host has.
    #[test]
    fn matches_systemd_escape_binary() {
        let names = [
            "web",
            "my-pod",
            "a/b/c",
            "/leading/slash",
            ".dot",
            "..two",
            "sp ace",
            "tab\there",
            "ünïcødé",
            "x@y+z=1,2;3",
            "back\\slash",
            "UPPER_lower:09.end.",
            "-dash-",
            "%$#!~'\"*?[]{}()",
        ];
        let out = match std::process::Command::new("systemd-escape")
            .arg("--")
            .args(names)
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("SKIP: systemd-escape is not installed");
                return;
            }
            Err(e) => panic!("running systemd-escape: {e}"),
        };
        assert!(out.status.success(), "systemd-escape: {out:?}");
        let stdout = String::from_utf8(out.stdout).expect("systemd-escape prints UTF-8");
        // One line, the escaped names separated by spaces (escaped names contain none).
        let theirs: Vec<&str> = stdout.trim_end_matches('\n').split(' ').collect();
        let ours: Vec<String> = names.iter().map(|n| escape(n)).collect();
        assert_eq!(ours, theirs);
    }
}
