//! appcctl's own diagnostics (STYLE.md rule 11): `tracing` events, shown on stderr as
//! `appcctl: warning: …` and, under systemd, also sent to journald with the identifier
//! [`IDENTIFIER`], so `journalctl -t appcctl` shows them apart from the apps' output (whose
//! identifiers are the app names). Fields named `appc_pod` / `appc_pod_uuid` become the journal
//! fields `APPC_POD` / `APPC_POD_UUID`, the ones the apps' records carry.
//!
//! When stderr already is a journal stream (appcctl runs in a service such as
//! `appc-pod@NAME.service`, where systemd sets `$JOURNAL_STREAM` to stderr's device and inode),
//! the stderr copy would reach the journal a second time, under the unit's identifier; then only
//! the journald layer writes.

use std::fmt;
use std::io::{self, IsTerminal};
use std::os::unix::fs::MetadataExt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// `SYSLOG_IDENTIFIER=` of our own journal records.
pub const IDENTIFIER: &str = "appcctl";

/// Installs the subscriber: warnings and errors, plus debug events with `--debug`.
pub fn init(debug: bool) {
    let level = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::WARN
    };
    let journald = under_systemd()
        .then(|| tracing_journald::layer().ok())
        .flatten()
        .map(|l| {
            l.with_syslog_identifier(IDENTIFIER.to_owned())
                .with_field_prefix(None)
        });
    let stderr = (journald.is_none() || !stderr_is_journal()).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(io::stderr)
            .with_ansi(false)
            .event_format(Plain)
    });
    let subscriber = tracing_subscriber::registry()
        .with(journald.with_filter(level))
        .with(stderr.with_filter(level));
    let _ = tracing::subscriber::set_global_default(subscriber); // only fails if set twice
}

fn under_systemd() -> bool {
    crate::systemd::detect::systemd_is_pid1() && crate::systemd::journal::journald_available()
}

/// Whether fd 2 is the journal stream systemd connected (`$JOURNAL_STREAM=DEV:INODE`,
/// systemd.exec(5)); a redirected stderr keeps the variable but not the inode.
fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    if io::stderr().is_terminal() {
        return false;
    }
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    var.to_string_lossy() == format!("{}:{}", meta.dev(), meta.ino())
}

/// `appcctl: warning: message`: the one-line form appcctl always printed; the structured
/// fields are for the journal only.
struct Plain;

/// Picks the `message` field out of an event.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = if *event.metadata().level() == Level::WARN {
            "warning: "
        } else {
            ""
        };
        let mut message = Message(String::new());
        event.record(&mut message);
        writeln!(writer, "{IDENTIFIER}: {level}{}", message.0)
    }
}
