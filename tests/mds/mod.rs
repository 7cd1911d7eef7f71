//! The metadata service for tests: the real `appc-metadata` binary started standalone on a
//! temporary state directory, registration socket and a free loopback port, and a raw HTTP/1.1
//! client that can choose its source address (callers are known by it) and reports the answer's
//! bytes exactly.
#![allow(dead_code)] // each test crate uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `appc-metadata`; SIGTERM and wait on drop.
pub struct Service {
    child: Child,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// The pods' endpoint (127.0.0.1:<free port>, or the port asked for).
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Service {
    /// Starts the service on a free port of 127.0.0.1 (callers may use any source address of
    /// 127.0.0.0/8 to reach it, and so be different pods).
    pub fn start(state_dir: &Path, socket: &Path) -> Service {
        Self::start_on(state_dir, socket, "127.0.0.1:0")
    }

    pub fn start_on(state_dir: &Path, socket: &Path, listen: &str) -> Service {
        Self::start_with(&[], state_dir, socket, listen)
    }

    /// Started through `wrapper` (e.g. `nsenter --net=...`) when it is not empty.
    pub fn start_with(wrapper: &[&str], state_dir: &Path, socket: &Path, listen: &str) -> Service {
        let binary = env!("CARGO_BIN_EXE_appc-metadata");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = cmd
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--socket")
            .arg(socket)
            .arg("--listen")
            .arg(listen)
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start appc-metadata");
        let stderr = child.stderr.take().expect("stderr pipe");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Logged before the address is handed on: a test that saw the start may read
                // the start-up line.
                {
                    let mut l = sink.lock().expect("log lock");
                    l.push_str(&line);
                    l.push('\n');
                }
                if let Some(rest) = line.split("serving pods on ").nth(1) {
                    let _ = tx.send(rest.split(' ').next().unwrap_or_default().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "appc-metadata did not start ({status:?}):\n{}",
                    log.lock().expect("log lock")
                )
            });
        Service {
            child,
            state_dir: state_dir.to_owned(),
            socket: socket.to_owned(),
            addr: addr.parse().expect("address in the start-up line"),
            log,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What the service wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits (up to 10 s) until the service's stderr contains `text`: it is read by a thread.
    pub fn wait_for_log(&self, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(text) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// SIGTERM, then the exit status (it must stop by itself).
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("wait for appc-metadata");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// One answer, as received.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
}

/// A TCP connection to `to` from `from` (port chosen by the kernel): loopback has all of
/// 127.0.0.0/8, so a test can be several pods.
pub fn connect(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let fd: OwnedFd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket");
    rustix::net::bind(&fd, &std::net::SocketAddrV4::new(from, 0))
        .unwrap_or_else(|e| panic!("bind to {from}: {e}"));
    rustix::net::connect(&fd, &to).unwrap_or_else(|e| panic!("connect {to}: {e}"));
    TcpStream::from(fd)
}

/// `METHOD path` from `from`, with a form body when `form` is given (already encoded).
pub fn http(
    from: Ipv4Addr,
    to: SocketAddr,
    method: &str,
    path: &str,
    form: Option<&str>,
) -> Answer {
    let mut s = connect(from, to);
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nMetadata-Flavor: AppContainer\r\nConnection: close\r\n"
    );
    let body = form.unwrap_or_default();
    if form.is_some() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    parse(&raw).unwrap_or_else(|| panic!("not HTTP: {:?}", String::from_utf8_lossy(&raw)))
}

pub fn get(from: Ipv4Addr, to: SocketAddr, path: &str) -> Answer {
    http(from, to, "GET", path, None)
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
    assert!(
        header("transfer-encoding").is_none(),
        "the service should send sized bodies: {head}"
    );
    let mut body = raw[end + 4..].to_vec();
    if let Some(n) = header("content-length").and_then(|n| n.parse::<usize>().ok()) {
        body.truncate(n);
    }
    Some(Answer {
        status,
        content_type: header("content-type"),
        body,
    })
}

/// `application/x-www-form-urlencoded`.
pub fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The loopback address a test pod "has".
pub fn lo(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

pub fn ip(n: u8) -> IpAddr {
    IpAddr::V4(lo(n))
}
