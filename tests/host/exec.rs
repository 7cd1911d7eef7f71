//! Running a command with a deadline and collecting its output.
//!
//! `Command::output()` has no timeout, and it also waits for *every* holder of the stdout/stderr
//! pipes: a test that starts `sleep 30 &` inside the host would block for 30 s. Here the wait is
//! for the command itself; output that arrives within a short grace period after it exits is
//! kept, and background processes may keep running with the pipe open.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::procfs;

/// How long to keep reading output after the command exited.
const PIPE_GRACE: Duration = Duration::from_millis(250);

/// What a command run inside (or for) a test host did.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The command as given, for messages.
    pub argv: Vec<String>,
    /// The exit code, `None` if a signal ended it (for example on timeout).
    pub code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// True if the deadline passed and the command's process group was killed.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl RunOutput {
    /// Exited with code 0 before the deadline.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// stdout without surrounding whitespace.
    pub fn stdout_trimmed(&self) -> &str {
        self.stdout.trim()
    }

    /// Returns `self` if the command succeeded; otherwise panics with `what` and everything the
    /// command printed. For tests: `host.run(&[..]).expect_success("listing units")`.
    #[track_caller]
    pub fn expect_success(self, what: &str) -> RunOutput {
        assert!(self.success(), "{what} failed:\n{self}");
        self
    }
}

impl fmt::Display for RunOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ended = match (self.timed_out, self.code, self.signal) {
            (true, _, _) => format!("timed out after {:?}", self.elapsed),
            (false, Some(code), _) => format!("exit code {code}"),
            (false, None, Some(sig)) => format!("killed by signal {sig}"),
            (false, None, None) => "unknown status".to_string(),
        };
        writeln!(f, "$ {}  ({ended})", self.argv.join(" "))?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

/// Runs `cmd` (stdout/stderr captured, stdin from `stdin` or /dev/null) in its own process group,
/// and kills that whole group if it is still running after `timeout`. WHY a process group:
/// `nsenter` forks to enter the PID namespace, so killing only its PID would leave the real
/// command running inside the host; the fork stays in nsenter's process group.
pub fn run_command(
    mut cmd: Command,
    argv: Vec<String>,
    timeout: Duration,
    stdin: Option<Vec<u8>>,
    kill_tool: &Path,
) -> std::io::Result<RunOutput> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let pgid = child.id();
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // best effort: the command may exit without reading all of its input
        thread::spawn(move || drop(pipe.write_all(&data)));
    }
    let stdout = Collector::start(child.stdout.take());
    let stderr = Collector::start(child.stderr.take());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait()); // best effort: the caller may have given up
    });

    let (status, timed_out) = match rx.recv_timeout(timeout) {
        Ok(status) => (status?, false),
        Err(_) => (kill_group(kill_tool, pgid as i32, &rx)?, true),
    };
    Ok(RunOutput {
        argv,
        code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout: stdout.finish(),
        stderr: stderr.finish(),
        elapsed: started.elapsed(),
    })
}

/// Kills a timed-out command's process group and returns the leader's exit status.
///
/// The members are killed before the leader, and the leader is given a moment to reap its
/// child. WHY: the leader is `nsenter`, and its child lives in the host's PID namespace. If
/// nsenter died first, the kernel would reparent that child to the *machine's* init (the reaper
/// is looked up from the dying parent's namespace), which may never reap it (it does not here),
/// and the host's systemd-shutdown would later wait for that zombie.
fn kill_group(
    kill_tool: &Path,
    leader: i32,
    exited: &mpsc::Receiver<std::io::Result<ExitStatus>>,
) -> std::io::Result<ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        for pid in procfs::group_members(leader)
            .into_iter()
            .filter(|&p| p != leader)
        {
            signal(kill_tool, &pid.to_string(), "KILL");
        }
        if let Ok(status) = exited.recv_timeout(Duration::from_millis(50)) {
            return status;
        }
    }
    signal(kill_tool, &format!("-{leader}"), "KILL");
    exited
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| std::io::Error::other("command survived SIGKILL for 10 s"))?
}

/// Sends signal `sig` (a name such as `TERM`) to `target`: a PID, or `-PGID` for a whole process
/// group. Returns whether `kill` reported success.
pub fn signal(kill_tool: &Path, target: &str, sig: &str) -> bool {
    Command::new(kill_tool)
        .args(["-s", sig, "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Reads one pipe on a thread into a shared buffer.
struct Collector {
    buffer: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl Collector {
    fn start(pipe: Option<impl Read + Send + 'static>) -> Collector {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let shared = Arc::clone(&buffer);
        thread::spawn(move || {
            if let Some(mut pipe) = pipe {
                let mut chunk = [0u8; 8192];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    if let Ok(mut buf) = shared.lock() {
                        buf.extend_from_slice(&chunk[..n]);
                    }
                }
            }
            let _ = tx.send(()); // best effort: the reader may have given up waiting
        });
        Collector { buffer, done }
    }

    /// Everything read so far, after waiting up to [`PIPE_GRACE`] for end of file.
    fn finish(self) -> String {
        let _ = self.done.recv_timeout(PIPE_GRACE); // best effort: a background process may hold the pipe
        let bytes = self.buffer.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
