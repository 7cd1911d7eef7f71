//! Every `unsafe` call of the probe: thin wrappers over libc, each returning plain Rust values.
//! Nothing here goes through NSS (no getpwnam & co.): they are unsafe in static glibc.

use std::ffi::{CStr, CString};
use std::io;

/// The errno of the last failed call.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `(uid, euid, gid, egid)`.
pub fn ids() -> (u32, u32, u32, u32) {
    // SAFETY: these calls cannot fail and take no pointers.
    unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    }
}

/// The supplementary groups (getgroups(2)).
pub fn groups() -> Option<Vec<u32>> {
    // SAFETY: size 0 asks for the count only; then a buffer of that many entries.
    unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut());
        if n < 0 {
            return None;
        }
        let mut buf = vec![0 as libc::gid_t; n as usize];
        let n = libc::getgroups(n, buf.as_mut_ptr());
        if n < 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(buf)
    }
}

pub fn ppid() -> i32 {
    // SAFETY: cannot fail.
    unsafe { libc::getppid() }
}

/// uname(2) fields: sysname, nodename, release, version, machine, domainname.
pub struct Uname {
    pub sysname: String,
    pub nodename: String,
    pub release: String,
    pub machine: String,
    pub domainname: String,
}

pub fn uname() -> Option<Uname> {
    // SAFETY: utsname is plain data; uname fills NUL-terminated fields.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return None;
        }
        let f = |s: &[libc::c_char]| CStr::from_ptr(s.as_ptr()).to_string_lossy().into_owned();
        Some(Uname {
            sysname: f(&u.sysname),
            nodename: f(&u.nodename),
            release: f(&u.release),
            machine: f(&u.machine),
            domainname: f(&u.domainname),
        })
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// capget(2), version 3: `(inheritable, permitted, effective)`.
pub fn capget() -> Option<(u64, u64, u64)> {
    let mut hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as _LINUX_CAPABILITY_VERSION_3 requires.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Some((
        join(data[0].inheritable, data[1].inheritable),
        join(data[0].permitted, data[1].permitted),
        join(data[0].effective, data[1].effective),
    ))
}

/// The bounding set from prctl(PR_CAPBSET_READ), and the ambient set from PR_CAP_AMBIENT_IS_SET.
pub fn cap_bounding_ambient() -> (Option<u64>, Option<u64>) {
    let (mut bnd, mut amb) = (Some(0u64), Some(0u64));
    for cap in 0..64u64 {
        // SAFETY: prctl with integer arguments only.
        let b = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if b < 0 {
            if cap == 0 {
                bnd = None;
            }
            break;
        }
        if b == 1 {
            bnd = bnd.map(|v| v | (1 << cap));
        }
        // SAFETY: as above.
        let a = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
        };
        if a < 0 && cap == 0 {
            amb = None;
        }
        if a == 1 {
            amb = amb.map(|v| v | (1 << cap));
        }
    }
    (bnd, amb)
}

/// prctl(PR_GET_NO_NEW_PRIVS).
pub fn no_new_privs() -> Option<i64> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    (r >= 0).then_some(r.into())
}

/// prctl(PR_GET_SECCOMP): 0 or 2 (in strict mode the call itself would kill us, so 1 is never
/// seen here).
pub fn seccomp_mode() -> Option<i64> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    (r >= 0).then_some(r.into())
}

/// getrlimit(2): `(soft, hard)`, `None` meaning infinity.
pub fn getrlimit(resource: i32) -> Option<(Option<u64>, Option<u64>)> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: rl is a valid out-pointer.
    let r = unsafe { libc::getrlimit(resource as _, &mut rl) };
    if r != 0 {
        return None;
    }
    let f = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v);
    Some((f(rl.rlim_cur), f(rl.rlim_max)))
}

/// Whether `fd` is open (fcntl F_GETFD), for when /proc/self/fd is not there.
pub fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD on any integer is harmless.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// User + system CPU time of this process, seconds (getrusage(RUSAGE_SELF)).
pub fn cpu_seconds() -> Option<f64> {
    // SAFETY: ru is a valid out-pointer.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return None;
        }
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        Some(t(ru.ru_utime) + t(ru.ru_stime))
    }
}

/// SIGTERM is ignored from now on.
pub fn ignore_sigterm() {
    // SAFETY: SIG_IGN is a valid disposition.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}

extern "C" fn on_term(_: libc::c_int) {
    // SAFETY: async-signal-safe calls only. SA_RESETHAND restored the default action and
    // SA_NODEFER left SIGTERM unblocked, so raise() kills us by the signal, as if no handler had
    // been installed; if we are a PID namespace's init, the kernel drops that signal, and we exit
    // with 128 + 15 instead.
    unsafe {
        libc::raise(libc::SIGTERM);
        libc::_exit(143);
    }
}

/// SIGTERM terminates the process even when it is PID 1 of a PID namespace (where a default
/// disposition would make the kernel ignore it).
pub fn die_on_sigterm() {
    // SAFETY: a zeroed sigaction with a valid handler and flags.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_term as *const () as usize;
        sa.sa_flags = libc::SA_RESETHAND | libc::SA_NODEFER;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// The outcome of one probed syscall: its return value and errno (0 on success).
pub struct Outcome {
    pub ret: i64,
    pub errno: i32,
}

fn outcome(ret: i64) -> Outcome {
    Outcome {
        ret,
        errno: if ret < 0 { errno() } else { 0 },
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// The names `syscall` understands.
pub const SYSCALLS: &[&str] = &[
    "getpid",
    "uname",
    "mkdir",
    "mknod",
    "chroot",
    "sethostname",
    "swapon",
    "mount",
    "umount",
    "unshare",
    "setns",
    "reboot",
    "delete_module",
    "open_by_handle_at",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "personality",
    "socket",
    "ptrace",
];

/// Tries one harmless form of a syscall. None of these changes anything that outlives the probe:
/// bogus paths, invalid magic numbers or flags, or a no-op (the same hostname, `chroot("/")`).
/// `arg` overrides the scratch path of `mkdir` / `mknod`.
pub fn try_syscall(name: &str, arg: Option<&str>) -> Option<Outcome> {
    let pid = std::process::id();
    // SAFETY: each call gets valid NUL-terminated strings, null or valid pointers, and arguments
    // chosen so that the call either fails or does nothing lasting (see above).
    let o = unsafe {
        match name {
            "getpid" => outcome(libc::syscall(libc::SYS_getpid)),
            "uname" => {
                let mut u: libc::utsname = std::mem::zeroed();
                outcome(libc::uname(&mut u).into())
            }
            "mkdir" => {
                let p = cstr(arg.unwrap_or(&format!("/tmp/podprobe-mkdir-{pid}")));
                let o = outcome(libc::mkdir(p.as_ptr(), 0o700).into());
                if o.ret == 0 {
                    libc::rmdir(p.as_ptr());
                }
                o
            }
            "mknod" => {
                let p = cstr(arg.unwrap_or(&format!("/tmp/podprobe-mknod-{pid}")));
                let dev = libc::makedev(1, 3);
                let o = outcome(libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o600, dev).into());
                if o.ret == 0 {
                    libc::unlink(p.as_ptr());
                }
                o
            }
            "chroot" => outcome(libc::chroot(c"/".as_ptr()).into()),
            "sethostname" => {
                let mut u: libc::utsname = std::mem::zeroed();
                if libc::uname(&mut u) != 0 {
                    return Some(outcome(-1));
                }
                let name = CStr::from_ptr(u.nodename.as_ptr());
                outcome(libc::sethostname(name.as_ptr(), name.to_bytes().len()).into())
            }
            "swapon" => outcome(libc::swapon(c"/nonexistent/podprobe-swap".as_ptr(), 0).into()),
            "mount" => outcome(
                libc::mount(
                    c"none".as_ptr(),
                    c"/nonexistent/podprobe-mnt".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                )
                .into(),
            ),
            "umount" => outcome(libc::umount2(c"/nonexistent/podprobe-mnt".as_ptr(), 0).into()),
            "unshare" => outcome(libc::unshare(0).into()),
            "setns" => outcome(libc::setns(-1, 0).into()),
            // magic1 = 0 is refused with EINVAL before anything happens (EPERM without
            // CAP_SYS_BOOT).
            "reboot" => outcome(libc::syscall(
                libc::SYS_reboot,
                0,
                0,
                0,
                std::ptr::null::<libc::c_void>(),
            )),
            "delete_module" => outcome(libc::syscall(
                libc::SYS_delete_module,
                c"podprobe_no_such_module".as_ptr(),
                libc::O_NONBLOCK,
            )),
            "open_by_handle_at" => {
                // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }
                let mut handle = [0u32; 4];
                handle[0] = 8;
                outcome(libc::syscall(
                    libc::SYS_open_by_handle_at,
                    -1,
                    handle.as_mut_ptr(),
                    libc::O_RDONLY,
                ))
            }
            "bpf" => outcome(libc::syscall(
                libc::SYS_bpf,
                0xffff,
                std::ptr::null::<libc::c_void>(),
                0,
            )),
            "perf_event_open" => outcome(libc::syscall(
                libc::SYS_perf_event_open,
                std::ptr::null::<libc::c_void>(),
                0,
                -1,
                -1,
                0,
            )),
            "userfaultfd" => {
                let o = outcome(libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC));
                if o.ret >= 0 {
                    libc::close(o.ret as i32);
                }
                o
            }
            "keyctl" => outcome(libc::syscall(libc::SYS_keyctl, 0xffff, 0, 0, 0, 0)),
            "personality" => outcome(libc::personality(0xffff_ffff).into()),
            "socket" => {
                let o = outcome(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0).into());
                if o.ret >= 0 {
                    libc::close(o.ret as i32);
                }
                o
            }
            // PEEKDATA on a process we do not trace: ESRCH when allowed.
            "ptrace" => outcome(libc::ptrace(
                libc::PTRACE_PEEKDATA,
                libc::getppid(),
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )),
            _ => return None,
        }
    };
    Some(o)
}
