//! journald: app output as native stdout streams, our own entries as native datagrams.
//!
//! # Stdout streams ([`stream_fd`], [`JournalSocket::open_stream`])
//!
//! An app's stdout and stderr are each a connection to `/run/systemd/journal/stdout`, the
//! transport systemd itself uses for `StandardOutput=journal` (journald-stream.c, and
//! `sd_journal_stream_fd(3)`). The client connects a `SOCK_STREAM` unix socket, shuts down the
//! read side, and writes a seven-line header:
//!
//! ```text
//! identifier \n  unit_id \n  priority \n  level_prefix \n  forward_to_syslog \n  forward_to_kmsg \n  forward_to_console \n
//! ```
//!
//! Every later line written to the socket becomes one journal entry with `MESSAGE=` the line,
//! `SYSLOG_IDENTIFIER=` the identifier and `PRIORITY=` the priority (or the line's `<N>` prefix
//! when `level_prefix` is 1). The socket is handed to the app by `dup2` onto fd 1 or 2, so no
//! byte of app output passes through our processes. journald strips surrounding whitespace from
//! header lines and refuses a header line of 254 bytes or more (it closes the stream), hence the
//! identifier rules in [`validate_identifier`].
//!
//! Priorities: stdout is `info` (6), as systemd's default `SyslogLevel=`; stderr is `err` (3),
//! as the journald log drivers of Docker and Podman do, so `journalctl -p err` shows what apps
//! wrote to stderr. systemd itself logs a service's stderr at `info` too, which loses the
//! distinction; `warning` would understate it for the many apps that only write errors there.
//!
//! # Custom fields (`APPC_POD`, `APPC_POD_UUID`, `APPC_APP`): findings
//!
//! The stdout stream protocol carries no fields of its own. What we checked, in the systemd test
//! host (systemd 252, `tests/systemd_journal.rs` keeps the evidence as tests):
//!
//! - **`LogExtraFields=` on the pod's scope: impossible.** PID 1 refuses it for scopes over D-Bus
//!   ("Cannot set property LogExtraFields, or unknown property"; `systemd-run --scope -p` says
//!   "Unknown assignment"): scopes have no exec context (upstream dbus-scope.c still only accepts
//!   cgroup, kill and scope properties). It works for services: a `appc-pod@.service` unit can set
//!   `LogExtraFields=APPC_POD=%i` itself, and every record of the unit gets it.
//! - **The header's `unit_id` line does not add fields.** journald (root peers only) keeps it as
//!   the *fallback unit* of the stream: used when the cgroup of the writing process cannot be
//!   read, i.e. when the writer exited before journald looked it up (journald-context.c,
//!   `client_context_read_cgroup`). That matters for us: journald attributes each read to the
//!   PID in its `SCM_CREDENTIALS`, i.e. the app, and an app that writes and exits at once
//!   (`sh -c 'echo hi'`) otherwise gets records *without* `_SYSTEMD_UNIT` and without the unit's
//!   extra fields (seen in the test host with `systemd-cat echo`). systemd passes the unit there
//!   for its services; so do we: [`JournalSocket::open_stream`] takes the pod's unit. The system
//!   test makes the race deterministic by freezing journald (SIGSTOP) while the app writes and
//!   exits: with the unit in the header the records keep `_SYSTEMD_UNIT` and `APPC_POD`, without
//!   it they lose both.
//! - **journald's per-unit extra-field file works for scopes.** journald looks up the extra
//!   fields of a record's unit in `/run/systemd/units/log-extra-fields:<unit>`, a file PID 1
//!   writes for units with `LogExtraFields=` (a sequence of little-endian u64 length + `FIELD=value`).
//!   journald reads it for *any* unit, scopes included, also through the `unit_id` fallback
//!   above, and re-reads it when its mtime changes. [`write_unit_extra_fields`] writes it for the
//!   pod's scope and [`remove_unit_extra_fields`] removes it when the pod ends (PID 1 removes
//!   only files it wrote). Proven end to end by the tests. Caveat: the file is systemd's internal
//!   interface between PID 1 and journald (unchanged since v236, which introduced it), not a
//!   documented API; if it changes, the records simply lose the fields, nothing fails.
//! - **A relay over the native protocol** ([`send`]) could attach any field to every line, but
//!   copies every byte through a process that must outlive the apps; with the two mechanisms
//!   above it is not needed.
//!
//! So: `APPC_POD` and `APPC_POD_UUID` come from the pod unit's extra fields (the file for scopes,
//! `LogExtraFields=` for services). Those are per unit, and all apps of a pod share one unit, so
//! `APPC_APP` cannot be a field without one unit per app (a scope per app under a per-pod slice
//! would do it, at the price of the one-unit-per-pod design machined wants). The app is the
//! stream's identifier instead: `SYSLOG_IDENTIFIER=<app>` on every line, the field
//! `journalctl -u appc-web.scope -t worker` filters on (rkt did the same with
//! `SyslogIdentifier=<app>`). `appcctl logs --app A` maps to that.
//!
//! # Native datagrams ([`send`])
//!
//! Our own diagnostics go to `/run/systemd/journal/socket` as one datagram per entry: `FIELD=value\n`
//! per field, or, for a value holding a newline, the binary form `FIELD\n` + little-endian u64
//! length + value + `\n` ([`encode_native`]). Entries too large for one datagram are refused
//! ([`JournalError::TooLarge`]); the memfd fallback of `sd_journal_sendv` (pass a sealed memfd
//! with `SCM_RIGHTS`) is not implemented, as our diagnostics are far below the limit (we raise the
//! send buffer to 8 MiB where allowed; the kernel default allows about 200 KiB).
//!
//! Without journald every call fails with an error naming the socket; the caller then leaves the
//! output on the terminal ([`journald_available`] checks beforehand).

use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

/// journald's stdout stream socket.
pub const STDOUT_SOCKET: &str = "/run/systemd/journal/stdout";
/// journald's native protocol socket.
pub const NATIVE_SOCKET: &str = "/run/systemd/journal/socket";
/// Where PID 1 and journald keep per-unit state; `log-extra-fields:<unit>` lives here.
pub const UNITS_STATE_DIR: &str = "/run/systemd/units";

/// The send buffer systemd asks for on journal sockets (`SNDBUF_SIZE` in sd-journal), best effort.
const SNDBUF_SIZE: usize = 8 * 1024 * 1024;
/// journald's longest header line of the stream protocol, newline excluded
/// (`STDOUT_STREAM_SETUP_PROTOCOL_LINE_MAX` - 1: a line must end before 254 bytes).
pub const IDENTIFIER_MAX: usize = 253;
/// The longest field name journald accepts (`journal_field_valid()`).
pub const FIELD_NAME_MAX: usize = 64;

/// Priority of an app's stdout lines.
pub const STDOUT_PRIORITY: Priority = Priority::Info;
/// Priority of an app's stderr lines (see the module docs for why `err`).
pub const STDERR_PRIORITY: Priority = Priority::Err;

/// syslog priorities, as journald stores them in `PRIORITY=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    Emerg = 0,
    Alert = 1,
    Crit = 2,
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

impl Priority {
    /// The numeric level (0–7).
    pub fn level(self) -> u8 {
        self as u8
    }
}

/// Everything that can go wrong talking to journald.
#[derive(Debug, Error)]
pub enum JournalError {
    #[error(
        "journald is not running (no socket at {}: {source}); output goes to the terminal instead, or start systemd-journald",
        path.display()
    )]
    NotRunning { path: PathBuf, source: io::Error },
    #[error("cannot connect to journald at {}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error(
        "cannot write the stream header to journald at {}: {source} (is journald overloaded or restarting?)",
        path.display()
    )]
    Header { path: PathBuf, source: io::Error },
    #[error("cannot send a journal entry to {}: {source}", path.display())]
    Send { path: PathBuf, source: io::Error },
    #[error(
        "a {size}-byte journal entry is too large for one datagram to {} (large entries are not supported); shorten the message",
        path.display()
    )]
    TooLarge { path: PathBuf, size: usize },
    #[error("invalid journal identifier {identifier:?}: {reason}")]
    InvalidIdentifier {
        identifier: String,
        reason: &'static str,
    },
    #[error("invalid journal unit name {unit:?}: {reason}")]
    InvalidUnit { unit: String, reason: &'static str },
    #[error(
        "invalid journal field name {name:?}: {reason} (field names are A-Z, 0-9 and _, not starting with _ or a digit, at most 64 bytes)"
    )]
    InvalidFieldName { name: String, reason: &'static str },
    #[error("cannot {action} journald's extra-field file {}: {source}", path.display())]
    ExtraFields {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Where journald listens. [`JournalSocket::system`] is the real one; tests point it elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalSocket {
    /// The stdout stream socket.
    pub stdout: PathBuf,
    /// The native datagram socket.
    pub native: PathBuf,
}

impl Default for JournalSocket {
    fn default() -> Self {
        Self::system()
    }
}

impl JournalSocket {
    /// The system journald's sockets ([`STDOUT_SOCKET`], [`NATIVE_SOCKET`]).
    pub fn system() -> Self {
        JournalSocket {
            stdout: PathBuf::from(STDOUT_SOCKET),
            native: PathBuf::from(NATIVE_SOCKET),
        }
    }

    /// Sockets at other paths (tests, or a journald namespace's sockets).
    pub fn at(stdout: impl Into<PathBuf>, native: impl Into<PathBuf>) -> Self {
        JournalSocket {
            stdout: stdout.into(),
            native: native.into(),
        }
    }

    /// True if the stdout socket accepts a connection. The probe connection is closed without a
    /// header, which journald drops silently.
    pub fn available(&self) -> bool {
        UnixStream::connect(&self.stdout).is_ok()
    }

    /// Opens a stdout stream: the returned socket is to be `dup2`ed onto an app's fd 1 or 2
    /// (it is close-on-exec until then). `unit` is the unit the writers run in (the pod's scope
    /// or service): journald uses it for `_SYSTEMD_UNIT` (and the unit's extra fields) when a
    /// writer exits before journald looks up its cgroup; it is honoured for root only.
    pub fn open_stream(
        &self,
        identifier: &str,
        unit: Option<&str>,
        priority: Priority,
        level_prefix: bool,
    ) -> Result<OwnedFd, JournalError> {
        let header = stream_header(identifier, unit, priority, level_prefix)?;
        let mut stream = UnixStream::connect(&self.stdout)
            .map_err(|source| connect_error(&self.stdout, source))?;
        // journald never writes on the stream (it shuts down its own write side); closing our
        // read side makes that explicit, as sd_journal_stream_fd does.
        stream
            .shutdown(std::net::Shutdown::Read)
            .map_err(|source| JournalError::Connect {
                path: self.stdout.clone(),
                source,
            })?;
        grow_send_buffer(&stream);
        stream
            .write_all(&header)
            .map_err(|source| JournalError::Header {
                path: self.stdout.clone(),
                source,
            })?;
        Ok(OwnedFd::from(stream))
    }

    /// Sends one entry over the native protocol (see [`encode_native`] for the rules).
    pub fn send(&self, fields: &[(&str, &str)]) -> Result<(), JournalError> {
        let datagram = encode_native(fields)?;
        let socket = UnixDatagram::unbound().map_err(|source| JournalError::Send {
            path: self.native.clone(),
            source,
        })?;
        grow_send_buffer(&socket);
        match socket.send_to(&datagram, &self.native) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => Err(JournalError::TooLarge {
                path: self.native.clone(),
                size: datagram.len(),
            }),
            Err(source) => Err(connect_error(&self.native, source).into_send()),
        }
    }
}

impl JournalError {
    /// A connect failure on the datagram socket stays [`JournalError::NotRunning`]; anything
    /// else is a send error.
    fn into_send(self) -> JournalError {
        match self {
            JournalError::Connect { path, source } => JournalError::Send { path, source },
            other => other,
        }
    }
}

/// "No journald" (the socket does not exist or nobody listens) vs. any other connect failure.
fn connect_error(path: &Path, source: io::Error) -> JournalError {
    match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => JournalError::NotRunning {
            path: path.to_path_buf(),
            source,
        },
        _ => JournalError::Connect {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Raises the socket's send buffer to [`SNDBUF_SIZE`]: `SO_SNDBUF` (capped by
/// `net.core.wmem_max`), then `SO_SNDBUFFORCE` (root). Best effort, like systemd's
/// `fd_inc_sndbuf`: a small buffer only makes writers block or datagrams smaller.
fn grow_send_buffer(fd: impl std::os::fd::AsFd) {
    use rustix::net::sockopt;
    let fd = fd.as_fd();
    if sockopt::socket_send_buffer_size(fd).is_ok_and(|size| size >= SNDBUF_SIZE) {
        return;
    }
    let _ = sockopt::set_socket_send_buffer_size(fd, SNDBUF_SIZE); // best effort, see above
    if sockopt::socket_send_buffer_size(fd).is_ok_and(|size| size >= SNDBUF_SIZE) {
        return;
    }
    let _ = sockopt::set_socket_send_buffer_size_force(fd, SNDBUF_SIZE); // best effort
}

/// [`JournalSocket::open_stream`] on the system journald, without a unit: exactly what
/// `sd_journal_stream_fd(identifier, priority, level_prefix)` does.
pub fn stream_fd(
    identifier: &str,
    priority: Priority,
    level_prefix: bool,
) -> Result<OwnedFd, JournalError> {
    JournalSocket::system().open_stream(identifier, None, priority, level_prefix)
}

/// [`JournalSocket::send`] to the system journald.
pub fn send(fields: &[(&str, &str)]) -> Result<(), JournalError> {
    JournalSocket::system().send(fields)
}

/// True if the system journald's stdout socket accepts a connection.
pub fn journald_available() -> bool {
    JournalSocket::system().available()
}

/// Where journald keeps a state file per open stdout stream (journald-stream.c).
pub const STREAMS_STATE_DIR: &str = "/run/systemd/journal/streams";

/// Waits until journald has read to their end the stdout streams of `unit` whose identifier is
/// one of `identifiers`, at most `timeout`; true when none is left. journald reads streams
/// asynchronously, so an app's last lines may reach the journal well after the app exited
/// (tens of thousands of lines: seconds); `journalctl --sync` does not wait for them.
///
/// journald keeps a state file per open stream in [`STREAMS_STATE_DIR`], with `IDENTIFIER=` and
/// `UNIT=` lines (the stream header's, C-escaped), and removes it once it read the stream's end
/// and stored its last line. Like the extra-fields file above this is journald's own state,
/// not an API: if it changes, this returns at once and the caller may miss some late lines.
pub fn wait_streams_drained(unit: &str, identifiers: &[String], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !streams_open(Path::new(STREAMS_STATE_DIR), unit, identifiers) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn streams_open(dir: &Path, unit: &str, identifiers: &[String]) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    // Unit names hold no character journald's cescape() changes but the backslash of their
    // own escapes (`appc-a\x2db.scope`); app names (AC Names) hold none at all.
    let unit = unit.replace('\\', "\\\\");
    let unit = unit.as_str();
    entries.flatten().any(|entry| {
        let Ok(text) = fs::read_to_string(entry.path()) else {
            return false; // removed meanwhile
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        };
        field("UNIT") == Some(unit)
            && field("IDENTIFIER").is_some_and(|i| identifiers.iter().any(|x| x == i))
    })
}

/// Checks an identifier for the stream header: not empty, at most [`IDENTIFIER_MAX`] bytes, no
/// control characters (a newline would end the header line, a NUL the record), no surrounding
/// whitespace (journald would strip it, and `journalctl -t` would not match the name given).
pub fn validate_identifier(identifier: &str) -> Result<(), JournalError> {
    let fail = |reason| {
        Err(JournalError::InvalidIdentifier {
            identifier: identifier.to_string(),
            reason,
        })
    };
    if identifier.is_empty() {
        return fail("it is empty");
    }
    if identifier.len() > IDENTIFIER_MAX {
        return fail("it is longer than 253 bytes, journald's limit for a stream header line");
    }
    if identifier.chars().any(char::is_control) {
        return fail("it contains a control character (newline, NUL, tab, …)");
    }
    if identifier.trim() != identifier {
        return fail("it begins or ends with whitespace, which journald strips");
    }
    Ok(())
}

/// Checks a unit name for the header's `unit_id` line: journald ignores anything that is not a
/// plain or instance unit name, so refuse it here rather than lose the fallback silently.
fn validate_unit(unit: &str) -> Result<(), JournalError> {
    let fail = |reason| {
        Err(JournalError::InvalidUnit {
            unit: unit.to_string(),
            reason,
        })
    };
    if unit.is_empty() || unit.len() > 255 {
        return fail("a unit name has 1 to 255 bytes");
    }
    let Some((_, suffix)) = unit.rsplit_once('.') else {
        return fail("it has no type suffix such as .scope or .service");
    };
    if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_lowercase()) {
        return fail("its type suffix is not a unit type such as scope or service");
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b":-_.\\@".contains(&b);
    if !unit.bytes().all(allowed) || unit.starts_with('.') {
        return fail("it has characters systemd does not allow (escape it with systemd-escape)");
    }
    Ok(())
}

/// The header `sd_journal_stream_fd` writes (with `unit_id` empty unless given): identifier,
/// unit, priority, level prefix, then 0 for forwarding to syslog, kmsg and the console (journald's
/// own configuration still applies).
pub fn stream_header(
    identifier: &str,
    unit: Option<&str>,
    priority: Priority,
    level_prefix: bool,
) -> Result<Vec<u8>, JournalError> {
    validate_identifier(identifier)?;
    if let Some(unit) = unit {
        validate_unit(unit)?;
    }
    Ok(format!(
        "{identifier}\n{}\n{}\n{}\n0\n0\n0\n",
        unit.unwrap_or(""),
        priority.level(),
        u8::from(level_prefix)
    )
    .into_bytes())
}

/// Checks a field name the way journald does for client fields: 1–64 bytes of `A-Z`, `0-9`, `_`,
/// not starting with a digit, and not with `_` (journald drops such "trusted" fields from
/// clients).
pub fn validate_field_name(name: &str) -> Result<(), JournalError> {
    let fail = |reason| {
        Err(JournalError::InvalidFieldName {
            name: name.to_string(),
            reason,
        })
    };
    match name.bytes().next() {
        None => return fail("it is empty"),
        Some(b'_') => return fail("it starts with _, reserved for fields journald adds itself"),
        Some(b'0'..=b'9') => return fail("it starts with a digit"),
        Some(_) => {}
    }
    if name.len() > FIELD_NAME_MAX {
        return fail("it is longer than 64 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return fail("it has a character other than A-Z, 0-9 and _");
    }
    Ok(())
}

/// Encodes one native-protocol entry: `NAME=value\n` per field, or, when the value holds a
/// newline, `NAME\n` + the value's length as little-endian u64 + the value + `\n`. Fields keep
/// their order; a name may repeat (journald stores every value).
pub fn encode_native(fields: &[(&str, &str)]) -> Result<Vec<u8>, JournalError> {
    let mut out = Vec::new();
    for (name, value) in fields {
        validate_field_name(name)?;
        out.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

/// Encodes the extra-field file journald reads for a unit: per field, the length of `NAME=value`
/// as little-endian u64, then `NAME=value` (no separator), as PID 1 writes it for
/// `LogExtraFields=`.
pub fn encode_extra_fields(fields: &[(&str, &str)]) -> Result<Vec<u8>, JournalError> {
    let mut out = Vec::new();
    for (name, value) in fields {
        validate_field_name(name)?;
        let entry = format!("{name}={value}");
        out.extend_from_slice(&(entry.len() as u64).to_le_bytes());
        out.extend_from_slice(entry.as_bytes());
    }
    Ok(out)
}

/// The extra-field file of `unit` under `state_dir` (normally [`UNITS_STATE_DIR`]).
pub fn extra_fields_path(state_dir: &Path, unit: &str) -> PathBuf {
    state_dir.join(format!("log-extra-fields:{unit}"))
}

/// Makes journald attach `fields` to every record of `unit` (a scope: services should use
/// `LogExtraFields=` instead, which PID 1 then writes here itself). Written atomically (temporary
/// file + rename) so journald never reads half a file. See the module docs for the caveat.
pub fn write_unit_extra_fields(
    state_dir: &Path,
    unit: &str,
    fields: &[(&str, &str)],
) -> Result<(), JournalError> {
    validate_unit(unit)?;
    let data = encode_extra_fields(fields)?;
    let path = extra_fields_path(state_dir, unit);
    let temp = state_dir.join(format!(".#log-extra-fields:{unit}.{}", std::process::id()));
    let error = |action, source| JournalError::ExtraFields {
        action,
        path: path.clone(),
        source,
    };
    fs::create_dir_all(state_dir).map_err(|e| error("create the directory of", e))?;
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&temp)
        .and_then(|mut f| f.write_all(&data))
        .and_then(|()| fs::rename(&temp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp); // best effort: the error below is what matters
        return Err(error("write", e));
    }
    Ok(())
}

/// Removes `unit`'s extra-field file; a missing file is fine.
pub fn remove_unit_extra_fields(state_dir: &Path, unit: &str) -> Result<(), JournalError> {
    validate_unit(unit)?;
    let path = extra_fields_path(state_dir, unit);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(JournalError::ExtraFields {
            action: "remove",
            path,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_streams_are_found_by_unit_and_identifier() {
        let dir = tempfile::tempdir().unwrap();
        let state = |id: &str, unit: &str| {
            format!(
                "# This is private data. Do not parse\nPRIORITY=6\nLEVEL_PREFIX=0\n\
                 STREAM_ID=0123\nIDENTIFIER={id}\nUNIT={unit}\n"
            )
        };
        let apps = ["web".to_owned(), "db".to_owned()];
        let unit = "appc-a\\x2db.scope";
        assert!(!streams_open(dir.path(), unit, &apps), "empty dir");
        fs::write(
            dir.path().join("1:2"),
            state("appcctl", "appc-a\\\\x2db.scope"),
        )
        .unwrap();
        fs::write(dir.path().join("1:3"), state("db", "other.service")).unwrap();
        assert!(!streams_open(dir.path(), unit, &apps), "not ours");
        fs::write(dir.path().join("1:4"), state("db", "appc-a\\\\x2db.scope")).unwrap();
        assert!(streams_open(dir.path(), unit, &apps), "db's stream is open");
        assert!(!streams_open(&dir.path().join("none"), unit, &apps));
    }

    #[test]
    fn header_is_what_sd_journal_stream_fd_writes() {
        let header = stream_header("web", None, Priority::Info, false).unwrap();
        assert_eq!(header, b"web\n\n6\n0\n0\n0\n0\n");
        let header = stream_header("db-1", Some("appc-demo.scope"), Priority::Err, true).unwrap();
        assert_eq!(header, b"db-1\nappc-demo.scope\n3\n1\n0\n0\n0\n");
        assert_eq!(STDOUT_PRIORITY.level(), 6);
        assert_eq!(STDERR_PRIORITY.level(), 3);
    }

    #[test]
    fn identifiers_are_checked() {
        for ok in ["web", "example.com/app", "a b", &"x".repeat(IDENTIFIER_MAX)] {
            validate_identifier(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        let cases = [
            ("", "empty"),
            ("a\nb", "control"),
            ("a\0b", "control"),
            ("a\tb", "control"),
            (" web", "whitespace"),
            ("web ", "whitespace"),
        ];
        for (bad, why) in cases {
            let e = validate_identifier(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.contains("invalid journal identifier"), "{e}");
        }
        let long = "x".repeat(IDENTIFIER_MAX + 1);
        assert!(
            validate_identifier(&long)
                .unwrap_err()
                .to_string()
                .contains("253")
        );
        // The header refuses them too, before any connection is made.
        assert!(stream_header("a\nb", None, Priority::Info, false).is_err());
    }

    #[test]
    fn units_are_checked() {
        for ok in [
            "appc-web.scope",
            "appc-pod@demo.service",
            "appc-x\\x2dy.scope",
        ] {
            validate_unit(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in [
            "",
            "noscope",
            "a b.scope",
            "a.",
            "a.Scope",
            "a\n.scope",
            ".scope",
        ] {
            assert!(validate_unit(bad).is_err(), "{bad:?}");
        }
        assert!(stream_header("web", Some("x y.scope"), Priority::Info, false).is_err());
    }

    #[test]
    fn native_encoding_simple_fields() {
        let bytes =
            encode_native(&[("MESSAGE", "hello"), ("PRIORITY", "6"), ("APPC_POD", "")]).unwrap();
        assert_eq!(bytes, b"MESSAGE=hello\nPRIORITY=6\nAPPC_POD=\n");
    }

    #[test]
    fn native_encoding_binary_field() {
        let bytes = encode_native(&[("MESSAGE", "a\nb"), ("X", "=")]).unwrap();
        let mut want = b"MESSAGE\n".to_vec();
        want.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(b"a\nb\nX==\n");
        assert_eq!(bytes, want);
    }

    #[test]
    fn field_names_are_checked() {
        for ok in ["MESSAGE", "APPC_POD_UUID", "A1", &"A".repeat(64)] {
            validate_field_name(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in [
            "",
            "_PID",
            "1A",
            "message",
            "A-B",
            "A=B",
            "A\nB",
            &"A".repeat(65),
        ] {
            let e = validate_field_name(bad).unwrap_err().to_string();
            assert!(e.contains("invalid journal field name"), "{e}");
        }
        assert!(encode_native(&[("MESSAGE", "x"), ("bad", "y")]).is_err());
    }

    #[test]
    fn extra_fields_encoding_matches_pid1() {
        // The 21-byte file PID 1 wrote in the test host for LogExtraFields=APPC_POD=demo.
        let bytes = encode_extra_fields(&[("APPC_POD", "demo")]).unwrap();
        let mut want = vec![13, 0, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(b"APPC_POD=demo");
        assert_eq!(bytes, want);
        let two = encode_extra_fields(&[("A", "1"), ("B", "")]).unwrap();
        assert_eq!(two, b"\x03\0\0\0\0\0\0\0A=1\x02\0\0\0\0\0\0\0B=");
    }

    #[test]
    fn extra_fields_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("units");
        write_unit_extra_fields(&state, "appc-demo.scope", &[("APPC_POD", "demo")]).unwrap();
        let path = extra_fields_path(&state, "appc-demo.scope");
        assert_eq!(
            fs::read(&path).unwrap(),
            encode_extra_fields(&[("APPC_POD", "demo")]).unwrap()
        );
        assert_eq!(
            fs::read_dir(&state).unwrap().count(),
            1,
            "no temporary left"
        );
        remove_unit_extra_fields(&state, "appc-demo.scope").unwrap();
        assert!(!path.exists());
        remove_unit_extra_fields(&state, "appc-demo.scope").unwrap();
        assert!(write_unit_extra_fields(&state, "../x.scope", &[]).is_err());
    }

    #[test]
    fn missing_journald_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let sockets = JournalSocket::at(dir.path().join("stdout"), dir.path().join("socket"));
        assert!(!sockets.available());
        let e = sockets
            .open_stream("web", None, Priority::Info, false)
            .unwrap_err();
        assert!(matches!(e, JournalError::NotRunning { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("journald is not running"), "{msg}");
        assert!(
            msg.contains(&dir.path().join("stdout").display().to_string()),
            "{msg}"
        );
        let e = sockets.send(&[("MESSAGE", "x")]).unwrap_err();
        assert!(matches!(e, JournalError::NotRunning { .. }), "{e:?}");
    }

    #[test]
    fn stream_writes_the_header_to_a_listener() {
        use std::io::Read;
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let listener = UnixListener::bind(&path).unwrap();
        let sockets = JournalSocket::at(&path, dir.path().join("socket"));
        let fd = sockets
            .open_stream("web", Some("appc-demo.scope"), Priority::Err, false)
            .unwrap();
        let mut writer = std::fs::File::from(fd);
        writer.write_all(b"line\n").unwrap();
        drop(writer);
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"web\nappc-demo.scope\n3\n0\n0\n0\n0\nline\n");
    }
}
