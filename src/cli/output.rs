//! Listing output: aligned tables for people, `--format json` for scripts.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Prints rows under a header, columns padded to their widest cell.
/// An empty `header` prints no header line (`--no-legend`).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let columns = rows
        .iter()
        .map(Vec::len)
        .chain([header.len()])
        .max()
        .unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows
        .iter()
        .map(|r| r.iter().map(|c| c.chars().count()).collect::<Vec<_>>())
        .chain([header.iter().map(|h| h.len()).collect()])
    {
        for (w, len) in widths.iter_mut().zip(row) {
            *w = (*w).max(len);
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", padded.join("  "));
    };
    if !header.is_empty() {
        line(header.to_vec());
    }
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Text from untrusted input (entry names in an archive) made safe for one terminal line:
/// control characters are escaped (`\r`, `\u{1b}`), so an archive cannot rewrite the line or
/// drive the terminal.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `1.5 MiB`-style sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Unix seconds as an RFC 3339 UTC timestamp.
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// How long ago, coarsely: "just now", "5 minutes ago", "3 days ago".
pub fn ago(secs: i64, now: i64) -> String {
    let d = now.saturating_sub(secs).max(0);
    let (n, unit) = match d {
        0..=59 => return "just now".into(),
        60..=3599 => (d / 60, "minute"),
        3600..=86_399 => (d / 3600, "hour"),
        _ => (d / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\rb\x1b[2Jc\nd"), "a\\rb\\u{1b}[2Jc\\nd");
        assert_eq!(printable("plain / ünïcode"), "plain / ünïcode");
    }

    #[test]
    fn sizes_and_times() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
        assert_eq!(ago(100, 100), "just now");
        assert_eq!(ago(0, 7200), "2 hours ago");
        assert_eq!(ago(0, 86_400), "1 day ago");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
