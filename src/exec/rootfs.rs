//! Assembling an app's root inside the pod init (ace.md Filesystem Setup F1–F7, Volume Setup
//! V1–V11, OS-SPEC.md), then pivoting a private mount namespace into it.
//!
//! Each app gets its own mount namespace whose root *is* the app's root: the init unshares a
//! namespace, mounts the root (overlayfs over the store's trees, or a bind of the rendered
//! copy), the API filesystems, `/dev` and the volumes, `pivot_root`s into it, keeps a file
//! descriptor of the namespace and returns to its own. The app, its event handlers and
//! `appcctl enter` all `setns(2)` into that namespace; no path of the host is reachable from
//! it, and because the mounts live only in namespaces of the pod, they vanish with the pod's
//! last process — nothing can leak into the host's mount table, even after `kill -9`.
//!
//! Every path inside the root goes through [`super::inroot`] (openat2 `RESOLVE_IN_ROOT`), and
//! mounts target `/proc/self/fd/N` of the resolved descriptor, so a hostile image's symlinks
//! cannot redirect a mount out of its root.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::mount::MsFlags;
use nix::sched::{CloneFlags, setns, unshare};
use rustix::fs::{FileType, Mode, OFlags, makedev, mknodat, symlinkat};
use rustix::mount::{MountPropagationFlags, UnmountFlags};

use super::inroot::{self, InRootError};
use super::plan::{AppPlan, InitPlan, Rootfs};
use super::user::{self, Ids};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("app {app}: cannot {op}: {source}")]
    Sys {
        app: String,
        op: String,
        source: std::io::Error,
    },
    #[error("app {app}: {source}")]
    InRoot {
        app: String,
        source: Box<InRootError>,
    },
    #[error("app {app}: {source}")]
    User {
        app: String,
        source: Box<user::UserError>,
    },
    #[error(
        "app {app}: working directory {dir} does not exist in the image; fix workingDirectory or --working-dir"
    )]
    NoWorkingDir { app: String, dir: String },
    #[error("app {app}: exec {exec} does not exist in the image; fix exec or --exec")]
    NoExec { app: String, exec: String },
}

/// An assembled root: the namespace that holds it and the app's resolved ids.
pub struct BuiltRoot {
    pub mnt_ns: OwnedFd,
    pub ids: Ids,
    /// V5 and other things the user should know (masked files, implicit fixes).
    pub warnings: Vec<String>,
}

/// Device nodes of OS-SPEC.md (char major, minor). `/dev/console` is bound separately.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Symlinks every Linux program expects in /dev (nspawn creates the same).
const DEV_LINKS: [(&str, &str); 5] = [
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// /proc files that would let a root app act on the host (docker's and nspawn's lists):
/// covered with /dev/null (files) or made read-only (directories and write-only triggers).
const PROC_MASKED: [&str; 6] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/kmsg",
];
const PROC_READ_ONLY: [&str; 6] = [
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
    "/proc/acpi",
];

struct Ctx<'a> {
    pod: &'a InitPlan,
    app: &'a AppPlan,
    warnings: Vec<String>,
}

impl Ctx<'_> {
    fn sys<E: Into<std::io::Error>>(
        &self,
        op: impl Into<String>,
    ) -> impl FnOnce(E) -> RootfsError + '_ {
        let op = op.into();
        move |e| RootfsError::Sys {
            app: self.app.name.clone(),
            op,
            source: e.into(),
        }
    }

    fn inroot(&self) -> impl FnOnce(InRootError) -> RootfsError + '_ {
        |source| RootfsError::InRoot {
            app: self.app.name.clone(),
            source: Box::new(source),
        }
    }
}

/// Builds `app`'s root in a new mount namespace and returns to the caller's namespace.
pub fn build_root(pod: &InitPlan, app: &AppPlan) -> Result<BuiltRoot, RootfsError> {
    let mut ctx = Ctx {
        pod,
        app,
        warnings: Vec::new(),
    };
    let own_ns = File::open("/proc/self/ns/mnt").map_err(|e| RootfsError::Sys {
        app: app.name.clone(),
        op: "open /proc/self/ns/mnt".into(),
        source: e,
    })?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| ctx.sys("unshare the mount namespace")(e))?;
    let built = assemble(&mut ctx);
    // Back to the init's own namespace whatever happened; this also resets root and cwd.
    setns(own_ns.as_fd(), CloneFlags::CLONE_NEWNS)
        .map_err(|e| ctx.sys("return to the init's mount namespace")(e))?;
    let (mnt_ns, ids) = built?;
    Ok(BuiltRoot {
        mnt_ns,
        ids,
        warnings: ctx.warnings,
    })
}

fn assemble(ctx: &mut Ctx<'_>) -> Result<(OwnedFd, Ids), RootfsError> {
    mount_root(ctx)?;
    let root = inroot::open_root(&ctx.app.root_dir).map_err(ctx.inroot())?;
    mount_api_filesystems(ctx, root.as_fd())?;
    mount_dev(ctx, root.as_fd())?;
    mount_volumes(ctx, root.as_fd())?;
    write_etc_hosts(ctx, root.as_fd())?;
    bind_dns_files(ctx, root.as_fd())?;
    let ids = check_app(ctx, root.as_fd())?;
    if ctx.app.read_only_rootfs {
        remount_read_only(&ctx.app.root_dir).map_err(ctx.sys("remount the root read-only"))?;
    }
    drop(root);
    pivot_into(ctx)?;
    let ns = File::open("/proc/self/ns/mnt").map_err(|e| RootfsError::Sys {
        app: ctx.app.name.clone(),
        op: "open the app's mount namespace".into(),
        source: e,
    })?;
    Ok((ns.into(), ids))
}

/// The root mount: overlayfs (F7: a fresh upper dir every run) or a bind of the copy.
fn mount_root(ctx: &Ctx<'_>) -> Result<(), RootfsError> {
    let dir = &ctx.app.root_dir;
    match &ctx.app.rootfs {
        Rootfs::Overlay { lower, upper, work } => {
            let lower: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.join(":"),
                upper.display(),
                work.display()
            );
            mount(
                Some("overlay"),
                dir,
                Some("overlay"),
                MsFlags::empty(),
                Some(&data),
            )
            .map_err(ctx.sys(format!(
                "mount overlayfs on {} (try --no-overlay)",
                dir.display()
            )))
        }
        Rootfs::Copy => {
            bind(dir, dir, false).map_err(ctx.sys(format!("bind-mount {}", dir.display())))
        }
    }
}

/// mount(2) through nix, whose flags include MS_REMOUNT and MS_REC.
fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    nix::mount::mount(source, target, fstype, flags, data)
}

fn bind(source: &Path, target: &Path, recursive: bool) -> nix::Result<()> {
    let rec = if recursive {
        MsFlags::MS_REC
    } else {
        MsFlags::empty()
    };
    nix::mount::mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | rec,
        None::<&str>,
    )
}

fn remount_read_only(target: &Path) -> nix::Result<()> {
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    mount(None, target, None, flags, None)
}

/// Remounts the mount just placed on `path` read-only. The path is resolved again: a
/// descriptor opened before the mount still refers to the directory underneath it.
fn remount_read_only_in_root(
    ctx: &Ctx<'_>,
    root: BorrowedFd<'_>,
    path: &str,
) -> Result<(), RootfsError> {
    let target =
        inroot::open_in_root(root, path, OFlags::PATH | OFlags::CLOEXEC).map_err(ctx.inroot())?;
    remount_read_only(&inroot::fd_path(target.as_fd()))
        .map_err(ctx.sys(format!("make {path} read-only")))
}

/// An image whose `/proc` (say) is a symlink to `/` or `..` would get the filesystem mounted
/// over its whole root: refuse with a message that says why.
fn refuse_root_alias(
    ctx: &Ctx<'_>,
    root: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    path: &str,
) -> Result<(), RootfsError> {
    let (r, t) = (rustix::fs::fstat(root), rustix::fs::fstat(target));
    if let (Ok(r), Ok(t)) = (r, t)
        && (r.st_dev, r.st_ino) == (t.st_dev, t.st_ino)
    {
        return Err(RootfsError::Sys {
            app: ctx.app.name.clone(),
            op: format!("mount on {path}"),
            source: std::io::Error::other(format!(
                "{path} inside the image resolves to the image's root (a symlink to / or ..); fix the image"
            )),
        });
    }
    Ok(())
}

/// Mounts `fstype` on `path` inside the root, creating the directory if needed.
fn mount_in_root(
    ctx: &Ctx<'_>,
    root: BorrowedFd<'_>,
    path: &str,
    fstype: &str,
    flags: MsFlags,
    data: &str,
) -> Result<(), RootfsError> {
    let target = inroot::mkdir_all_in_root(root, path).map_err(ctx.inroot())?;
    refuse_root_alias(ctx, root, target.as_fd(), path)?;
    let at = inroot::fd_path(target.as_fd());
    mount(Some(fstype), &at, Some(fstype), flags, Some(data))
        .map_err(ctx.sys(format!("mount {fstype} on {path}")))
}

fn mount_api_filesystems(ctx: &mut Ctx<'_>, root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let common = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_in_root(ctx, root, "/proc", "proc", common, "")?;
    mask_proc(ctx, root)?;
    mount_in_root(ctx, root, "/sys", "sysfs", common | MsFlags::MS_RDONLY, "")?;
    mount_cgroupfs(ctx, root)
}

/// The host's cgroup hierarchies, read-only, so apps can see their limits and usage (rkt and
/// nspawn do the same): a recursive bind of /sys/fs/cgroup made read-only as a whole.
fn mount_cgroupfs(ctx: &Ctx<'_>, root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let host = Path::new("/sys/fs/cgroup");
    if !host.is_dir() {
        return Ok(());
    }
    let target = inroot::mkdir_all_in_root(root, "/sys/fs/cgroup").map_err(ctx.inroot())?;
    bind(host, &inroot::fd_path(target.as_fd()), true).map_err(ctx.sys("bind /sys/fs/cgroup"))?;
    let top = inroot::open_in_root(root, "/sys/fs/cgroup", OFlags::PATH | OFlags::CLOEXEC)
        .map_err(ctx.inroot())?;
    let at = inroot::fd_path(top.as_fd());
    match crate::sys::make_read_only_recursive(&at) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => remount_submounts_read_only(ctx, &at),
        other => other.map_err(ctx.sys("make /sys/fs/cgroup read-only")),
    }
}

/// Before Linux 5.12: each mount below `top` (as the init's mountinfo lists them) one by one.
fn remount_submounts_read_only(ctx: &Ctx<'_>, top: &Path) -> Result<(), RootfsError> {
    remount_read_only(top).map_err(ctx.sys("make /sys/fs/cgroup read-only"))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in info.lines() {
        let Some(point) = line.split(' ').nth(4) else {
            continue;
        };
        if let Some(under) = point.strip_prefix("/sys/fs/cgroup/") {
            remount_read_only(&top.join(under))
                .map_err(ctx.sys(format!("make /sys/fs/cgroup/{under} read-only")))?;
        }
    }
    Ok(())
}

/// Covers the dangerous /proc entries (a pod without a user namespace runs as real root).
fn mask_proc(ctx: &mut Ctx<'_>, root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    for path in PROC_MASKED {
        if let Ok(target) = inroot::open_in_root(root, path, OFlags::PATH | OFlags::CLOEXEC) {
            bind(
                Path::new("/dev/null"),
                &inroot::fd_path(target.as_fd()),
                false,
            )
            .map_err(ctx.sys(format!("mask {path}")))?;
        }
    }
    for path in PROC_READ_ONLY {
        let Ok(target) = inroot::open_in_root(root, path, OFlags::PATH | OFlags::CLOEXEC) else {
            continue;
        };
        let at = inroot::fd_path(target.as_fd());
        bind(&at, &at, true).map_err(ctx.sys(format!("bind {path}")))?;
        remount_read_only_in_root(ctx, root, path)?;
    }
    Ok(())
}

/// OS-SPEC.md's /dev: exactly its device nodes on a fresh tmpfs, devpts, /dev/shm.
fn mount_dev(ctx: &mut Ctx<'_>, root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount_in_root(ctx, root, "/dev", "tmpfs", flags, "mode=755,size=65536k")?;
    let dev = inroot::open_in_root(root, "/dev", OFlags::DIRECTORY | OFlags::CLOEXEC)
        .map_err(ctx.inroot())?;
    for (name, major, minor) in DEVICES {
        mknodat(
            &dev,
            name,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            makedev(major, minor),
        )
        .map_err(ctx.sys(format!("create /dev/{name}")))?;
    }
    // mknod honours the umask; the nodes must be world-usable as on any Linux system.
    for (name, _, _) in DEVICES {
        rustix::fs::chmodat(
            &dev,
            name,
            Mode::from_raw_mode(0o666),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(ctx.sys(format!("chmod /dev/{name}")))?;
    }
    for (name, target) in DEV_LINKS {
        symlinkat(target, &dev, name).map_err(ctx.sys(format!("create /dev/{name}")))?;
    }
    let pts_flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount_in_root(
        ctx,
        root,
        "/dev/pts",
        "devpts",
        pts_flags,
        "newinstance,ptmxmode=0666,mode=620,gid=5",
    )?;
    mount_in_root(
        ctx,
        root,
        "/dev/shm",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=1777,size=65536k",
    )?;
    bind_console(ctx, root)
}

/// /dev/console: the terminal for an interactive pod, else /dev/null (OS-SPEC.md requires
/// the node; nspawn binds its pty there).
fn bind_console(ctx: &mut Ctx<'_>, root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let source = if ctx.pod.interactive {
        nix::unistd::ttyname(std::io::stdin())
            .ok()
            .map(|p| p.display().to_string())
    } else {
        None
    };
    let source = source.unwrap_or_else(|| "/dev/null".to_owned());
    let (target, _) =
        inroot::prepare_mount_target(root, "/dev/console", true).map_err(ctx.inroot())?;
    bind(Path::new(&source), &inroot::fd_path(target.as_fd()), false)
        .map_err(ctx.sys(format!("bind {source} on /dev/console")))
}

fn mount_volumes(ctx: &mut Ctx<'_>, root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    for m in &ctx.app.mounts {
        let (target, info) =
            inroot::prepare_mount_target(root, &m.target, m.is_file).map_err(ctx.inroot())?;
        if info.masked_entries {
            ctx.warnings.push(format!(
                "app {}: volume {} hides the image's files at {} (V5)",
                ctx.app.name, m.volume, m.target
            ));
        }
        let at = inroot::fd_path(target.as_fd());
        let op = format!(
            "bind volume {} ({}) on {}",
            m.volume,
            m.source.display(),
            m.target
        );
        // The planner refused symlinked host sources (V11); opening the source again with
        // RESOLVE_NO_SYMLINKS closes the window in which one could be swapped in since.
        let source = if m.source.starts_with(&ctx.pod.pod_dir) {
            None
        } else {
            let how = rustix::fs::ResolveFlags::NO_SYMLINKS;
            let flags = OFlags::PATH | OFlags::CLOEXEC;
            let fd = rustix::fs::openat2(rustix::fs::CWD, &m.source, flags, Mode::empty(), how)
                .map_err(ctx.sys(format!(
                    "open volume {} source {} (symlinks are refused, V11)",
                    m.volume,
                    m.source.display()
                )))?;
            Some(fd)
        };
        let source_path = source
            .as_ref()
            .map_or_else(|| m.source.clone(), |fd| inroot::fd_path(fd.as_fd()));
        bind(&source_path, &at, m.recursive).map_err(ctx.sys(op))?;
        if m.read_only {
            read_only_volume(ctx, root, m)?;
        }
    }
    Ok(())
}

/// A read-only volume; a recursive one is read-only all the way down (a plain remount would
/// leave the mounts below the top writable).
fn read_only_volume(
    ctx: &Ctx<'_>,
    root: BorrowedFd<'_>,
    m: &super::volumes::MountPlan,
) -> Result<(), RootfsError> {
    if !m.recursive {
        return remount_read_only_in_root(ctx, root, &m.target);
    }
    let target = inroot::open_in_root(root, &m.target, OFlags::PATH | OFlags::CLOEXEC)
        .map_err(ctx.inroot())?;
    match crate::sys::make_read_only_recursive(&inroot::fd_path(target.as_fd())) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            remount_read_only_in_root(ctx, root, &m.target)
        }
        other => other.map_err(ctx.sys(format!("make volume {} read-only", m.volume))),
    }
}

/// OS-SPEC.md: a default /etc/hosts with a localhost entry, only when the image has none
/// (`net::dns` computed it: the host name on the pod's address when it has one).
fn write_etc_hosts(ctx: &mut Ctx<'_>, root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    inroot::mkdir_all_in_root(root, "/etc").map_err(ctx.inroot())?;
    let content = match ctx.pod.dns_files.default_hosts.as_str() {
        "" => crate::net::dns::default_hosts(&ctx.pod.hostname, None),
        text => text.to_owned(),
    };
    inroot::create_file_in_root(root, "/etc/hosts", content.as_bytes(), 0o644)
        .map_err(ctx.inroot())?;
    Ok(())
}

/// The pod's resolv.conf and hosts (when the user or the network asked for them), bound over
/// the image's files: the image's tree is never written, and a read-only root works too.
fn bind_dns_files(ctx: &mut Ctx<'_>, root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let files = &ctx.pod.dns_files;
    let wanted = [
        (files.resolv_conf.clone(), "/etc/resolv.conf"),
        (files.hosts.clone(), "/etc/hosts"),
    ];
    for (source, target) in wanted {
        let Some(source) = source else { continue };
        let (at, _) = inroot::prepare_mount_target(root, target, true).map_err(ctx.inroot())?;
        bind(&source, &inroot::fd_path(at.as_fd()), false)
            .map_err(ctx.sys(format!("bind {} on {target}", source.display())))?;
    }
    Ok(())
}

/// Resolves the app's user and group (X5) and checks cwd and exec exist, so a mistake is a
/// clear error before anything runs rather than a failed exec in the child.
fn check_app(ctx: &Ctx<'_>, root: BorrowedFd<'_>) -> Result<Ids, RootfsError> {
    let app = ctx.app;
    let ids = user::resolve_ids(root, &app.user, &app.group, &app.supplementary_gids).map_err(
        |source| RootfsError::User {
            app: app.name.clone(),
            source: Box::new(source),
        },
    )?;
    let exists = |p: &str| matches!(inroot::stat_in_root(root, p), Ok(Some(_)));
    if !exists(&app.working_dir) {
        return Err(RootfsError::NoWorkingDir {
            app: app.name.clone(),
            dir: app.working_dir.clone(),
        });
    }
    for exec in std::iter::once(&app.exec)
        .chain(&app.pre_start)
        .chain(&app.post_stop)
    {
        if let Some(first) = exec.first()
            && !exists(first)
        {
            return Err(RootfsError::NoExec {
                app: app.name.clone(),
                exec: first.clone(),
            });
        }
    }
    Ok(ids)
}

/// pivot_root(".", ".") then detach the old root (the idiom of runc and crun): no directory
/// for the old root is needed inside the image, and nothing of the host stays reachable.
fn pivot_into(ctx: &Ctx<'_>) -> Result<(), RootfsError> {
    let dir: &Path = &ctx.app.root_dir;
    rustix::process::chdir(dir).map_err(ctx.sys(format!("chdir to {}", dir.display())))?;
    rustix::process::pivot_root(".", ".").map_err(ctx.sys("pivot_root into the app's root"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(ctx.sys("detach the old root"))?;
    rustix::process::chdir("/").map_err(ctx.sys("chdir to /"))?;
    Ok(())
}

/// Makes every mount of the init's namespace private, so nothing the pod mounts propagates
/// to the host and host mount events stay out (the "mount propagation private").
pub fn make_mounts_private() -> std::io::Result<()> {
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )?;
    Ok(())
}
