//! The only module allowed to contain `unsafe` code and raw syscalls (STYLE.md rule 4).
//!
//! Every `unsafe` block here carries a `// SAFETY:` line. What lives here is what neither nix
//! nor rustix offers safely: `fork(2)` (safe only in a single-threaded process), the
//! `pre_exec` hook that unshares namespaces for the pod init, `close_range(2)` and the
//! `SIOCSIFFLAGS` ioctl that brings the loopback interface up.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::Pid;

/// The result of [`fork_single_threaded`].
pub enum Fork {
    Parent(Pid),
    Child,
}

/// `fork(2)`, refused unless the calling process has exactly one thread.
///
/// After a fork in a multi-threaded process only async-signal-safe code may run until exec
/// (fork(2), "locks held by other threads"); the pod init is single-threaded, so its children
/// may allocate, format errors and use std freely.
pub fn fork_single_threaded() -> io::Result<Fork> {
    if thread_count()? != 1 {
        return Err(io::Error::other(
            "fork refused: the process has several threads",
        ));
    }
    // SAFETY: the process has a single thread (checked above), so the child inherits no lock
    // held by another thread and may run arbitrary code.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Fork::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Fork::Child),
    }
}

/// The number of threads of this process (`Threads:` of /proc/self/status).
pub fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line in /proc/self/status"))
}

/// Spawns `cmd` as the first process of new namespaces `ns`, keeping `keep_fds` open across
/// exec (their numbers stay the same; the caller passes them on the command line).
///
/// `CLONE_NEWPID` cannot be unshared by the child itself (it would only apply to the child's
/// children), so it is unshared by a short-lived thread that then spawns: `unshare(2)` with
/// `CLONE_NEWPID` changes only the calling thread's namespace for its children, and the child
/// becomes PID 1 of the new namespace. The other namespaces are unshared in the child.
pub fn spawn_in_namespaces(
    cmd: &mut Command,
    ns: CloneFlags,
    keep_fds: &[RawFd],
) -> io::Result<Child> {
    let in_child = ns - CloneFlags::CLONE_NEWPID;
    let keep = keep_fds.to_vec();
    let hook = move || -> io::Result<()> {
        unshare(in_child)?;
        for fd in &keep {
            // SAFETY: the caller keeps these descriptors open until spawn returns.
            let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec and makes only async-signal-safe syscalls
    // (unshare, fcntl); it allocates nothing (`keep` was built before the fork).
    unsafe {
        cmd.pre_exec(hook);
    }
    if !ns.contains(CloneFlags::CLONE_NEWPID) {
        return cmd.spawn();
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWPID)?;
            cmd.spawn()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the spawning thread panicked")))
    })
}

/// Marks every file descriptor from `first` up as close-on-exec, so nothing we or our caller
/// inherited reaches an app (youki GHSA-xr7r-f8xq-vfvv; STYLE.md rule 6).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range(2) takes plain integers; with CLOSE_RANGE_CLOEXEC it closes nothing
    // and only sets a flag, so no Rust object loses its descriptor.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return Ok(());
    }
    // Before Linux 5.11: walk /proc/self/fd.
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let fd: RawFd = match entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            Some(fd) => fd,
            None => continue,
        };
        if fd >= first as RawFd {
            // The directory's own fd is among them and may already be closed: ignore EBADF.
            // SAFETY: only a flag is set; a closed fd makes fcntl fail with EBADF, ignored.
            let _ = fcntl(
                unsafe { BorrowedFd::borrow_raw(fd) },
                FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC),
            );
        }
    }
    Ok(())
}

/// Brings the loopback interface of the current network namespace up (N1). nix and rustix
/// have no safe SIOCSIFFLAGS; rtnetlink needs an async runtime the pod init does not have.
pub fn loopback_up() -> io::Result<()> {
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    set_lo_flags(std::os::fd::AsRawFd::as_raw_fd(&sock))
}

fn set_lo_flags(fd: RawFd) -> io::Result<()> {
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `fd` is an open socket for the duration of the call and `req` a valid ifreq
    // that the kernel fills in (SIOCGIFFLAGS) or reads (SIOCSIFFLAGS).
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS initialised the flags member of the union.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: as above.
    if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the mount at `path` and every mount below it read-only in one call
/// (mount_setattr(2) with `AT_RECURSIVE`, Linux 5.12); `ENOSYS` on older kernels.
pub fn make_read_only_recursive(path: &std::path::Path) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const AT_RECURSIVE: libc::c_int = 0x8000;
    let path = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is a NUL-terminated string and `attr` a valid mount_attr whose size is
    // passed along; the kernel only reads both during the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets every signal's disposition back to the default, so nothing ignored by us (Rust
/// ignores SIGPIPE) stays ignored in the program we exec.
pub fn reset_signal_dispositions() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours in signal context.
        let _ = unsafe { sigaction(sig, &dfl) };
    }
}

/// Takes ownership of an inherited descriptor named on the command line, after checking it
/// is open.
pub fn take_inherited_fd(fd: RawFd) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: F_GETFD on any integer is harmless; it fails with EBADF for a closed one.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open (checked above) and was handed to this process to own; nothing
    // else in the process refers to it.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_thread_count_is_known() {
        assert!(thread_count().unwrap() >= 1);
    }

    #[test]
    fn fork_is_refused_with_threads() {
        // The test harness runs tests on threads, so this process has several.
        let _keep = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(2)));
        assert!(fork_single_threaded().is_err());
    }
}
