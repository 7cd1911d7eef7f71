//! The appc schema: spec/types.md plus the manifest parts of spec/aci.md and spec/pods.md
//! (appc-requirements.md §2.2, §2.4, §2.7, §3).
//!
//! Every appc type is a validated newtype: an [`AcName`] cannot hold an invalid name, because
//! `parse` is its only constructor and serde, `FromStr` and the manifest decoder all go through it.
//! Manifests are plain structs of these types.
//!
//! # Reading and writing
//!
//! Manifests are read by [`decode`] (one error per problem, each with its JSON path, plus warnings)
//! and written by serde's `Serialize`, which produces the canonical form: exact camelCase keys,
//! the spec's field order, empty optional fields left out, `acVersion` always present.
//!
//! # Strictness policy
//!
//! Read what the reference tools (actool, rkt) write; warn where the spec is stricter; write only
//! strict, canonical JSON. The decisions, numbered as in appc-requirements.md §4:
//!
//! 1. **Key case.** Go matches JSON keys case-insensitively and the spec's own example says
//!    `supplementaryGids`. We match exact keys first, then case-insensitively, with a warning.
//! 2. **Unknown fields** are ignored, with a warning naming them (a typo should not vanish).
//! 3. **AC Identifier / AC Name.** Character set and alphanumeric edges are enforced (as Go does).
//!    The spec's stricter grammar (`a..b`, `a--b` refused) is a warning. Names we generate are strict.
//! 4. **Image IDs.** `sha512-` plus a non-empty value without `-` is accepted (Go accepts
//!    `sha512-...`, and `examples/image.json` has it); anything but 128 lower-case hex digits is a
//!    warning, and such an ID can never match a stored image. Only `sha512` is accepted.
//! 5. **Unknown isolators** are kept verbatim (they round-trip) and reported as warnings, never
//!    fatal (spec G2/G3; Go rejects the whole manifest).
//! 6. **A known isolator without `value`** is an error (Go crashes).
//! 7. **Capabilities retain-set together with remove-set** in one app is an error (the spec
//!    forbids it; Go accepts it). Capability names must be Linux capabilities (Go accepts any).
//! 8. **`os` label** must be linux, freebsd or darwin, and `arch` must fit it (Go's table, which
//!    is wider than the spec text's seven pairs).
//! 9. **Annotation names** in pod manifests are AC Identifiers (as Go), not AC Names (spec text).
//! 10. **Pod `acVersion`** may be missing on read (warning); it is always written.
//! 11. **`apps[].image.id`** may be missing in a pod manifest: that makes it a template, which is
//!     valid; [`PodManifest::unresolved_apps`] says which apps still need resolving before a run.
//! 12. **Resource quantities** accept the spec's decimal `K` as 1000 (Go refuses it), besides the
//!     Kubernetes suffixes; JSON numbers are accepted too. Values are exact integers internally.
//! 13. **Pod-level isolators** follow the spec's scope: app-only isolators (capabilities, seccomp,
//!     no-new-privileges) at pod level are errors; `os/unix/sysctl` is pod-only; one of each
//!     single-valued isolator per scope.
//! 14. **`hostIP`** of an exposed port may be IPv4 or IPv6 (as Go).
//! 15. **`acVersion`** must be a SemVer other than 0.0.0 with major version 0; above
//!     0.8.11 is a warning, below 0.8.0 too (fields were renamed before 0.8).
//! 16. **Seccomp `errno`** must look like an errno name (`E` + upper-case letters/digits); one
//!     the kernel does not know (`EACCESS` in `examples/image.json`) is a warning.
//! 17. **`supplementaryGIDs`** must be non-negative (Go's `[]int` accepts negatives).
//! 18. **Paths** (`workingDirectory`, mount point and mount paths, `pathWhitelist` entries, host
//!     volume sources) must be absolute (Go checks only `workingDirectory` and volume sources).
//! 19. **Ports**: `name` and `protocol` are required (spec; Go does not check); a protocol other
//!     than tcp/udp is a warning; `count: 0` means 1 (as Go).

#[macro_use]
mod newtype;

mod app;
mod app_string;
pub mod decode;
mod error;
mod isolator;
mod labels;
mod manifest;
mod names;
mod quantity;
mod scalars;
mod volume;

pub use app::{
    App, EnvName, EnvVar, Environment, EventHandler, EventName, MountPoint, Port, UserGroup,
    UserGroupRef,
};
pub use app_string::AppString;
pub use decode::{Decoded, JsonPath};
pub use error::{InvalidValue, SchemaError, SchemaErrors, Warning};
pub use isolator::{
    AppArmorProfile, CapabilitySet, CpuShares, DeviceLimit, ErrnoName, Isolator, IsolatorKind,
    IsolatorScope, IsolatorValueError, OomScoreAdj, ResourceLimits, SeccompEntry, SeccompFilter,
    SelinuxContext, Sysctls, UnknownIsolator, check_isolators, parse_capability,
};
pub use labels::{Annotations, Labels, NameValue, VALID_OS_ARCH, check_os_arch, host_os_arch};
pub use manifest::{Dependency, ImageManifest, Manifest, PodManifest, RuntimeApp, RuntimeImage};
pub use names::{AcIdentifier, AcKind, AcName};
pub use quantity::Quantity;
pub use scalars::{
    AbsolutePath, AcVersion, Date, HttpUrl, ImageId, PodUuid, SPEC_VERSION, VersionSupport,
};
pub use volume::{ExposedPort, FileMode, Mount, Volume, VolumeKind};
