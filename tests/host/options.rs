//! [`HostOptions`]: what to put into a host and how to boot it, planned before anything runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Provision;

/// How to build and boot a host. Provisions run in the order given, before boot.
#[derive(Clone, Debug)]
pub struct HostOptions {
    pub(super) provisions: Vec<Provision>,
    pub(super) nspawn_args: Vec<String>,
    pub(super) init_args: Vec<String>,
    pub(super) boot_timeout: Duration,
    pub(super) stop_timeout: Duration,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            provisions: Vec::new(),
            nspawn_args: Vec::new(),
            init_args: Vec::new(),
            boot_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(20),
        }
    }
}

impl HostOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies the local file `src` to the absolute path `dest` inside the host, with `mode`.
    pub fn install(mut self, src: impl AsRef<Path>, dest: &str, mode: u32) -> Self {
        self.provisions.push(Provision::CopyFile {
            src: src.as_ref().to_path_buf(),
            dest: absolute(dest),
            mode,
        });
        self
    }

    /// Installs this build's `appcctl` and `appc-init` as [`super::APPCCTL`] (appcctl finds
    /// appc-init beside itself) and this test binary at [`super::test_exe`], for tests that
    /// run them inside the host. The host does not see the build's own paths when the checkout
    /// is under /tmp: systemd mounts a fresh tmpfs there.
    pub fn with_build(self) -> Self {
        let exe = std::env::current_exe().expect("the test binary's path");
        self.install(env!("CARGO_BIN_EXE_appcctl"), super::APPCCTL, 0o755)
            .install(
                env!("CARGO_BIN_EXE_appc-init"),
                "/usr/local/bin/appc-init",
                0o755,
            )
            .install(exe, &super::test_exe(), 0o755)
    }

    /// Copies the local directory tree `src` into `dest` inside the host (merging with what is
    /// there), keeping modes and symlinks — e.g. `units/` into `/etc/systemd/system`.
    pub fn install_dir(mut self, src: impl AsRef<Path>, dest: &str) -> Self {
        self.provisions.push(Provision::CopyDir {
            src: src.as_ref().to_path_buf(),
            dest: absolute(dest),
        });
        self
    }

    /// Writes `contents` to `dest` inside the host, with `mode`.
    pub fn write(mut self, dest: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.provisions.push(Provision::Write {
            dest: absolute(dest),
            contents: contents.into(),
            mode,
        });
        self
    }

    /// Masks `unit` inside the host, e.g. a slow service of this machine irrelevant to a test.
    pub fn mask(mut self, unit: &str) -> Self {
        self.provisions.push(Provision::Mask {
            unit: unit.to_string(),
        });
        self
    }

    /// An extra `systemd-nspawn` option (before `--`), e.g. `--bind-ro=/some/dir`.
    pub fn nspawn_arg(mut self, arg: &str) -> Self {
        self.nspawn_args.push(arg.to_string());
        self
    }

    /// An extra argument for the host's systemd, e.g. `systemd.unit=multi-user.target`
    /// (a container's systemd reads its arguments as its kernel command line).
    pub fn init_arg(mut self, arg: &str) -> Self {
        self.init_args.push(arg.to_string());
        self
    }

    /// Boots into `unit` instead of the machine's default target. `basic.target` boots in about
    /// a fifth of the time here (no machine services such as a database start), and D-Bus, logind
    /// and machined are still started on demand through their sockets and bus activation.
    pub fn target(self, unit: &str) -> Self {
        self.init_arg(&format!("systemd.unit={unit}"))
    }

    /// Limit for the whole boot, until `running`/`degraded` (default 60 s).
    pub fn boot_timeout(mut self, timeout: Duration) -> Self {
        self.boot_timeout = timeout;
        self
    }

    /// How long an orderly halt may take before everything is killed (default 20 s).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }
}

fn absolute(dest: &str) -> PathBuf {
    assert!(
        dest.starts_with('/'),
        "path inside the test host must be absolute: {dest:?}"
    );
    PathBuf::from(dest)
}
