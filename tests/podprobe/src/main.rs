//! podprobe: the in-pod probe of appc-pod's tests (rkt's `inspect`, youki's `runtimetest`).
//!
//! Tests pack it as the app of an image and assert on what it prints. It is built fully static
//! (`-C target-feature=+crt-static`, see tests/probe/mod.rs), needs nothing in the pod's root,
//! and uses std + libc only (no NSS lookups, no dynamic loader).
//!
//! Subcommands (one JSON object on stdout unless stated; usage and I/O errors go to stderr with
//! exit status 70):
//!
//! - `report [--out PATH]`: argv, env, cwd, uid/euid/gid/egid, groups, umask, caps,
//!   no_new_privs, seccomp, seccomp_filters, cpus_allowed, hostname, domainname, kernel, pid,
//!   ppid, proc_mounted, mounts, cgroup, limits, oom_score_adj, rlimits, fds, fds_source,
//!   devices, namespaces, exe (see report.rs). With `--out`, the same JSON is also written to
//!   PATH (through PATH.tmp and a rename).
//! - `exit CODE`: exits with CODE, printing nothing.
//! - `sleep SECONDS [--ignore-term]`: prints `{"sleeping":S,"pid":P,"ignore_term":B}` once the
//!   signal disposition is set, then sleeps (`inf` = forever). SIGTERM kills it (also as a PID
//!   namespace's init, where it exits 143); `--ignore-term` ignores SIGTERM.
//! - `write PATH CONTENT`: `{"path":..,"bytes":N}`. `read PATH`: `{"path":..,"bytes":N,
//!   "content":..}`. `exists PATH`: exit 0 or 1, with `{"path":..,"exists":B,"type":..}`.
//! - `alloc MIB`: allocates and touches MIB mebibytes page by page, then prints `allocated MIB`
//!   (plain text).
//! - `spin SECONDS`: busy-loops for SECONDS of wall time: `{"wall":..,"cpu":..}` (seconds).
//! - `try-open-write PATH`: `{"path":..,"ok":B,"errno":E|null}` (O_WRONLY, no create/truncate).
//! - `syscall NAME [PATH]`: a harmless form of the syscall: `{"name":..,"ok":B,"ret":R,
//!   "errno":E|null}`; see `sys::SYSCALLS`.
//! - `http METHOD URL [NAME=VALUE...]`: one HTTP request (a POST of the form fields when any are
//!   given; a URL starting with `/` is relative to `$AC_METADATA_URL`): `{"request":..,
//!   "status":N,"content_type":..,"body":..}`; exit 0 whatever the status.
//! - `metadata [CONTENT]`: the metadata service as the ACE validator reads it, for this app:
//!   `{"url":..,"pod/uuid":ANSWER,"pod/manifest":..,"pod/annotations":..,"app/annotations":..,
//!   "app/image/manifest":..,"app/image/id":..,"sign":..,"verify":..}` (each ANSWER as `http`
//!   prints it; CONTENT defaults to the validator's "Old MacDonald Had A Farm").
//! - `ace MODE` (MODE = prestart | main | sidekick | poststop): the appc ACE validator's checks
//!   and output (`<mode> OK`, or `<mode> FAIL` and `==> <reason>` lines on stderr, exit 1); see
//!   ace.rs. Run as `ace-validator MODE` (argv[0]'s file name), it takes the validator's place in
//!   images built from the appc `ace/image_manifest_*.json.in` files.

mod ace;
mod json;
mod mds;
mod report;
mod sys;

use std::fs;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use json::J;

/// The exit status for usage and I/O errors (EX_SOFTWARE).
const EXIT_ERROR: u8 = 70;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| {
            String::from_utf8_lossy(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str()))
                .into_owned()
        })
        .collect();
    let args: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    // Installed as `/ace-validator` (the ACE images' exec), it is the validator itself.
    if argv
        .first()
        .is_some_and(|a0| a0.rsplit('/').next() == Some("ace-validator"))
    {
        return ExitCode::from(match args[..] {
            [mode] if ace::MODES.contains(&mode) => ace::run(mode),
            _ => {
                eprintln!("usage: ace-validator {}", ace::MODES.join("|"));
                ace::EXIT_USAGE
            }
        });
    }
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("podprobe: {msg}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn print(j: &J) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", j.dump())
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

fn io_err(what: &str, path: &str, e: &std::io::Error) -> String {
    format!(
        "{what} {path}: {e} (errno={})",
        e.raw_os_error().unwrap_or(0)
    )
}

const USAGE: &str = "usage: podprobe report [--out PATH] | exit CODE | \
                     sleep SECONDS [--ignore-term] | write PATH CONTENT | read PATH | \
                     exists PATH | alloc MIB | spin SECONDS | \
                     try-open-write PATH | syscall NAME [PATH] | \
                     http METHOD URL [NAME=VALUE...] | metadata [CONTENT] | \
                     ace prestart|main|sidekick|poststop";

fn seconds(s: &str) -> Result<f64, String> {
    if s == "inf" || s == "infinity" {
        return Ok(f64::INFINITY);
    }
    s.parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0 && !v.is_nan())
        .ok_or_else(|| format!("bad number of seconds: {s:?}"))
}

fn run(args: &[&str]) -> Result<u8, String> {
    match args {
        ["report"] => print(&report::report()).map(|()| 0),
        ["report", "--out", path] => {
            // Also into a file (a volume): journald may split or rate-limit long lines.
            let j = report::report();
            let tmp = format!("{path}.tmp");
            fs::write(&tmp, j.dump() + "\n")
                .and_then(|()| fs::rename(&tmp, path))
                .map_err(|e| io_err("write", path, &e))?;
            print(&j).map(|()| 0)
        }
        ["exit", code] => {
            let code: i32 = code
                .parse()
                .map_err(|_| format!("bad exit code: {code:?}"))?;
            std::process::exit(code)
        }
        ["sleep", secs, rest @ ..] => {
            let secs = seconds(secs)?;
            let ignore = match rest {
                [] => false,
                ["--ignore-term"] => true,
                _ => return Err(USAGE.to_owned()),
            };
            if ignore {
                sys::ignore_sigterm();
            } else {
                sys::die_on_sigterm();
            }
            print(&J::obj(vec![
                (
                    "sleeping",
                    if secs.is_finite() {
                        J::F(secs)
                    } else {
                        J::from("inf")
                    },
                ),
                ("pid", J::from(std::process::id())),
                ("ignore_term", J::from(ignore)),
            ]))?;
            if secs.is_finite() {
                std::thread::sleep(Duration::from_secs_f64(secs));
            } else {
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            Ok(0)
        }
        ["write", path, content] => {
            fs::write(path, content).map_err(|e| io_err("write", path, &e))?;
            print(&J::obj(vec![
                ("path", J::from(*path)),
                ("bytes", J::from(content.len() as u64)),
            ]))
            .map(|()| 0)
        }
        ["read", path] => {
            let data = fs::read(path).map_err(|e| io_err("read", path, &e))?;
            print(&J::obj(vec![
                ("path", J::from(*path)),
                ("bytes", J::from(data.len() as u64)),
                (
                    "content",
                    J::from(String::from_utf8_lossy(&data).into_owned()),
                ),
            ]))
            .map(|()| 0)
        }
        ["exists", path] => {
            let md = fs::metadata(path).ok();
            let kind = md.as_ref().map(|m| {
                if m.is_dir() {
                    "dir"
                } else if m.is_file() {
                    "file"
                } else {
                    "other"
                }
            });
            print(&J::obj(vec![
                ("path", J::from(*path)),
                ("exists", J::from(md.is_some())),
                ("type", J::from(kind)),
            ]))?;
            Ok(if md.is_some() { 0 } else { 1 })
        }
        ["alloc", mib] => {
            let mib: usize = mib.parse().map_err(|_| format!("bad MiB count: {mib:?}"))?;
            alloc(mib);
            let mut out = std::io::stdout().lock();
            writeln!(out, "allocated {mib}")
                .and_then(|()| out.flush())
                .map_err(|e| format!("stdout: {e}"))?;
            Ok(0)
        }
        ["spin", secs] => {
            let secs = seconds(secs)?;
            if !secs.is_finite() {
                return Err("spin needs a finite time".to_owned());
            }
            let cpu0 = sys::cpu_seconds().unwrap_or(0.0);
            let start = Instant::now();
            let limit = Duration::from_secs_f64(secs);
            let mut x = 0u64;
            while start.elapsed() < limit {
                for i in 0..1000u64 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
                }
            }
            let wall = start.elapsed().as_secs_f64();
            let cpu = sys::cpu_seconds().map(|c| c - cpu0);
            print(&J::obj(vec![
                ("wall", J::from(wall)),
                ("cpu", J::from(cpu)),
            ]))
            .map(|()| 0)
        }
        ["try-open-write", path] => {
            let r = fs::OpenOptions::new().write(true).open(path);
            let errno = r.as_ref().err().map(|e| e.raw_os_error().unwrap_or(0));
            drop(r);
            print(&J::obj(vec![
                ("path", J::from(*path)),
                ("ok", J::from(errno.is_none())),
                ("errno", J::from(errno)),
            ]))
            .map(|()| 0)
        }
        ["syscall", name, rest @ ..] if rest.len() <= 1 => {
            let o = sys::try_syscall(name, rest.first().copied()).ok_or_else(|| {
                format!(
                    "unknown syscall {name:?}; known: {}",
                    sys::SYSCALLS.join(" ")
                )
            })?;
            print(&J::obj(vec![
                ("name", J::from(*name)),
                ("ok", J::from(o.errno == 0)),
                ("ret", J::from(o.ret)),
                ("errno", J::from((o.errno != 0).then_some(o.errno))),
            ]))
            .map(|()| 0)
        }
        ["http", method, url, fields @ ..] => {
            let body = if fields.is_empty() {
                None
            } else {
                Some(mds::form(fields)?)
            };
            let answer = mds::request(method, &mds::resolve(url)?, body.as_deref())?;
            print(&answer.to_json(url)).map(|()| 0)
        }
        ["metadata", rest @ ..] if rest.len() <= 1 => {
            let content = rest.first().copied().unwrap_or("Old MacDonald Had A Farm");
            print(&mds::metadata(content)?).map(|()| 0)
        }
        ["ace", mode] if ace::MODES.contains(mode) => Ok(ace::run(mode)),
        _ => Err(USAGE.to_owned()),
    }
}

/// Allocates `mib` MiB in 1 MiB chunks and writes to every page, so the memory is really
/// charged (to the cgroup: the OOM test's trigger).
fn alloc(mib: usize) {
    const PAGE: usize = 4096;
    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(mib);
    for _ in 0..mib {
        let mut chunk = vec![0u8; 1 << 20];
        for off in (0..chunk.len()).step_by(PAGE) {
            chunk[off] = 0xa5;
        }
        chunks.push(std::hint::black_box(chunk));
    }
    std::hint::black_box(&chunks);
}
