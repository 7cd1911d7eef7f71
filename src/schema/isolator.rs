//! Isolators: ace.md "Isolators" (appc-requirements.md §2.5.8, G1–G5, and the registry in §3.2).
//!
//! Every isolator name the Go schema knows at appc/spec HEAD is a variant of [`Isolator`] with a
//! typed value that can only hold what the spec allows; anything else is
//! [`Isolator::Unknown`], kept verbatim so that it round-trips. Decoding checks one isolator;
//! [`check_isolators`] checks a whole list (scope, multiplicity, conflicts).
//!
//! Decisions (numbered as in the `schema` module docs and appc-requirements.md §4):
//!
//! - 5: an unknown isolator is a warning, never an error (G2 lets executors ignore it, and G3
//!   asks us to say so; Go rejects the manifest). Its name must still be an AC Identifier.
//! - 6: a known isolator without `value` is an error (Go crashes). `value` is required for
//!   unknown isolators too: it is part of the isolator object, whatever the name.
//! - 7: capabilities retain-set together with remove-set in one list is an error, and capability
//!   names must be Linux capabilities (Go accepts `CAP_PONIES`).
//! - 12: quantities, see [`Quantity`]. Negative requests and limits are errors (Go accepts them).
//! - 13: scope follows ace.md: capabilities, seccomp and no-new-privileges are app-only,
//!   `os/unix/sysctl` is pod-only, and seccomp, SELinux, AppArmor, oom-score-adj, cpu-shares
//!   and sysctl may appear once per list (seccomp retain and remove share that one slot).
//!   Resource, capability and no-new-privileges isolators may repeat, as in Go (appc/spec issue
//!   #625), with a warning: only the last of a kind is applied ([`IsolatorKind::last_in`]).
//! - 16: a seccomp `errno` must look like an errno name; one Linux does not know (`EACCESS` in
//!   `examples/image.json`) is a warning.
//!
//! Where the spec is silent: `resource/cpu` and `resource/memory` need a request or a limit;
//! request above limit is a warning (Go accepts it); seccomp groups are `@scope/name`, and in the
//! reserved `@appc.io/` scope only `all` and `empty` exist; an empty `errno` string means "no
//! errno" (as in Go) with a warning; sysctl keys must be non-empty without whitespace (which
//! keys are allowed is the executor's call, ace.md "SHOULD validate keys").

use std::collections::BTreeMap;
use std::fmt;

use caps::Capability;
use nix::errno::Errno;
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};
use serde_json::Value;

use super::decode::{Cx, Decode, JsonPath, Obj, decode_list, decode_value};
use super::error::InvalidValue;
use super::names::AcIdentifier;
use super::quantity::Quantity;

/// Where an isolator list sits: pod-level isolators bound app-level ones (spec G1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolatorScope {
    App,
    Pod,
}

impl IsolatorScope {
    fn noun(self) -> &'static str {
        match self {
            IsolatorScope::App => "app",
            IsolatorScope::Pod => "pod",
        }
    }
}

/// The isolators this crate understands, by name (registry table, appc-requirements.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IsolatorKind {
    Cpu,
    Memory,
    BlockBandwidth,
    BlockIops,
    NetworkBandwidth,
    CapabilitiesRetainSet,
    CapabilitiesRemoveSet,
    NoNewPrivileges,
    SeccompRetainSet,
    SeccompRemoveSet,
    SelinuxContext,
    AppArmorProfile,
    OomScoreAdj,
    CpuShares,
    Sysctl,
}

impl IsolatorKind {
    pub const ALL: [IsolatorKind; 15] = {
        use IsolatorKind::*;
        [
            Cpu,
            Memory,
            BlockBandwidth,
            BlockIops,
            NetworkBandwidth,
            CapabilitiesRetainSet,
            CapabilitiesRemoveSet,
            NoNewPrivileges,
            SeccompRetainSet,
            SeccompRemoveSet,
            SelinuxContext,
            AppArmorProfile,
            OomScoreAdj,
            CpuShares,
            Sysctl,
        ]
    };

    pub fn name(self) -> &'static str {
        use IsolatorKind::*;
        match self {
            Cpu => "resource/cpu",
            Memory => "resource/memory",
            BlockBandwidth => "resource/block-bandwidth",
            BlockIops => "resource/block-iops",
            NetworkBandwidth => "resource/network-bandwidth",
            CapabilitiesRetainSet => "os/linux/capabilities-retain-set",
            CapabilitiesRemoveSet => "os/linux/capabilities-remove-set",
            NoNewPrivileges => "os/linux/no-new-privileges",
            SeccompRetainSet => "os/linux/seccomp-retain-set",
            SeccompRemoveSet => "os/linux/seccomp-remove-set",
            SelinuxContext => "os/linux/selinux-context",
            AppArmorProfile => "os/linux/apparmor-profile",
            OomScoreAdj => "os/linux/oom-score-adj",
            CpuShares => "os/linux/cpu-shares",
            Sysctl => "os/unix/sysctl",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the isolator may appear at `scope` (ace.md gives each isolator's scope; the two
    /// spec-less ones, oom-score-adj and cpu-shares, are allowed at both).
    pub fn allowed_in(self, scope: IsolatorScope) -> bool {
        use IsolatorKind::*;
        match self {
            CapabilitiesRetainSet
            | CapabilitiesRemoveSet
            | NoNewPrivileges
            | SeccompRetainSet
            | SeccompRemoveSet => scope == IsolatorScope::App,
            Sysctl => scope == IsolatorScope::Pod,
            _ => true,
        }
    }

    /// Whether a list may hold at most one isolator of this kind (ace.md "at most one per app").
    pub fn is_single(self) -> bool {
        use IsolatorKind::*;
        matches!(
            self,
            SeccompRetainSet
                | SeccompRemoveSet
                | SelinuxContext
                | AppArmorProfile
                | OomScoreAdj
                | CpuShares
                | Sysctl
        )
    }

    /// The last isolator of this kind in `list`: the one an executor applies when a repeatable
    /// kind (resources, capabilities, no-new-privileges) appears more than once.
    pub fn last_in(self, list: &[Isolator]) -> Option<&Isolator> {
        list.iter().rev().find(|i| i.kind() == Some(self))
    }

    /// The kind that may not share a list with this one.
    pub fn conflicts_with(self) -> Option<IsolatorKind> {
        use IsolatorKind::*;
        match self {
            SeccompRetainSet => Some(SeccompRemoveSet),
            SeccompRemoveSet => Some(SeccompRetainSet),
            CapabilitiesRetainSet => Some(CapabilitiesRemoveSet),
            CapabilitiesRemoveSet => Some(CapabilitiesRetainSet),
            _ => None,
        }
    }
}

impl fmt::Display for IsolatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a composite isolator value could not be built (scalar parts fail with [`InvalidValue`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsolatorValueError {
    #[error("the set must not be empty")]
    EmptySet,
    #[error("negative quantity {0:?} is not allowed")]
    NegativeQuantity(String),
    #[error("at least one of \"request\" and \"limit\" is required")]
    NoRequestOrLimit,
}

/// One isolator of an app or pod, with its typed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolator {
    Cpu(ResourceLimits),
    Memory(ResourceLimits),
    BlockBandwidth(DeviceLimit),
    BlockIops(DeviceLimit),
    NetworkBandwidth(DeviceLimit),
    CapabilitiesRetainSet(CapabilitySet),
    CapabilitiesRemoveSet(CapabilitySet),
    NoNewPrivileges(bool),
    SeccompRetainSet(SeccompFilter),
    SeccompRemoveSet(SeccompFilter),
    SelinuxContext(SelinuxContext),
    AppArmorProfile(AppArmorProfile),
    OomScoreAdj(OomScoreAdj),
    CpuShares(CpuShares),
    Sysctl(Sysctls),
    /// A name this crate does not know: ignored by the executor, reported, and written back as read.
    Unknown(UnknownIsolator),
}

impl Isolator {
    /// The known kind, `None` for [`Isolator::Unknown`].
    pub fn kind(&self) -> Option<IsolatorKind> {
        use IsolatorKind as K;
        Some(match self {
            Isolator::Cpu(_) => K::Cpu,
            Isolator::Memory(_) => K::Memory,
            Isolator::BlockBandwidth(_) => K::BlockBandwidth,
            Isolator::BlockIops(_) => K::BlockIops,
            Isolator::NetworkBandwidth(_) => K::NetworkBandwidth,
            Isolator::CapabilitiesRetainSet(_) => K::CapabilitiesRetainSet,
            Isolator::CapabilitiesRemoveSet(_) => K::CapabilitiesRemoveSet,
            Isolator::NoNewPrivileges(_) => K::NoNewPrivileges,
            Isolator::SeccompRetainSet(_) => K::SeccompRetainSet,
            Isolator::SeccompRemoveSet(_) => K::SeccompRemoveSet,
            Isolator::SelinuxContext(_) => K::SelinuxContext,
            Isolator::AppArmorProfile(_) => K::AppArmorProfile,
            Isolator::OomScoreAdj(_) => K::OomScoreAdj,
            Isolator::CpuShares(_) => K::CpuShares,
            Isolator::Sysctl(_) => K::Sysctl,
            Isolator::Unknown(_) => return None,
        })
    }

    /// The isolator name as written in a manifest (`resource/memory`).
    pub fn name(&self) -> &str {
        match self {
            Isolator::Unknown(u) => u.name.as_str(),
            known => known.kind().map_or("", IsolatorKind::name),
        }
    }
}

// ---- resource isolators ----

fn check_non_negative(q: Quantity) -> Result<Quantity, IsolatorValueError> {
    if q.is_negative() {
        Err(IsolatorValueError::NegativeQuantity(q.to_string()))
    } else {
        Ok(q)
    }
}

/// `resource/cpu` and `resource/memory`: a guaranteed `request` and a hard `limit`, at least one
/// of them, neither negative. CPU is in cores (`1` = `1000m`), memory in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<Quantity>,
}

impl ResourceLimits {
    pub fn new(
        request: Option<Quantity>,
        limit: Option<Quantity>,
    ) -> Result<Self, IsolatorValueError> {
        if request.is_none() && limit.is_none() {
            return Err(IsolatorValueError::NoRequestOrLimit);
        }
        let request = request.map(check_non_negative).transpose()?;
        let limit = limit.map(check_non_negative).transpose()?;
        Ok(ResourceLimits { request, limit })
    }

    /// Only a limit (`--memory 128M`); the request then defaults to it.
    pub fn with_limit(limit: Quantity) -> Result<Self, IsolatorValueError> {
        Self::new(None, Some(limit))
    }

    pub fn request(&self) -> Option<&Quantity> {
        self.request.as_ref()
    }

    pub fn limit(&self) -> Option<&Quantity> {
        self.limit.as_ref()
    }

    /// The request, which defaults to the limit (ace.md: "request ... defaults to limit").
    pub fn effective_request(&self) -> &Quantity {
        match (&self.request, &self.limit) {
            (Some(q), _) | (None, Some(q)) => q,
            // `new` refuses to build a value with neither.
            (None, None) => unreachable!("ResourceLimits without request and limit"),
        }
    }
}

/// An optional non-negative quantity field: `None` when it failed (recorded), `Some(None)` when
/// absent.
fn opt_quantity(o: &mut Obj<'_>, key: &'static str, cx: &mut Cx) -> Option<Option<Quantity>> {
    let present = o.has(key);
    let q = o.opt_with(key, cx, |v, path, cx| {
        let q = Quantity::decode(v, path, cx)?;
        check_non_negative(q)
            .map_err(|e| cx.rule(path, e.to_string()))
            .ok()
    });
    if present && q.is_none() {
        None
    } else {
        Some(q)
    }
}

impl Decode for ResourceLimits {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let request = opt_quantity(&mut o, "request", cx);
        let limit = opt_quantity(&mut o, "limit", cx);
        // `default` selects "all devices" for the device isolators; for cpu and memory Go
        // requires it false.
        let default_ok = o.opt::<bool>("default", cx) != Some(true);
        if !default_ok {
            cx.rule(&path.key("default"), "must be false");
        }
        o.finish(cx);
        let limits = ResourceLimits::new(request?, limit?)
            .map_err(|e| cx.rule(path, e.to_string()))
            .ok()?;
        default_ok.then_some(limits)
    }
}

/// `resource/block-bandwidth`, `resource/block-iops`, `resource/network-bandwidth`: one
/// non-negative limit for all devices (`default: true`, which the spec requires). Bandwidth is
/// in bytes per second, IOPS in operations per second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLimit {
    limit: Quantity,
}

impl DeviceLimit {
    pub fn new(limit: Quantity) -> Result<Self, IsolatorValueError> {
        Ok(DeviceLimit {
            limit: check_non_negative(limit)?,
        })
    }

    pub fn limit(&self) -> &Quantity {
        &self.limit
    }
}

impl Serialize for DeviceLimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("DeviceLimit", 2)?;
        st.serialize_field("default", &true)?;
        st.serialize_field("limit", &self.limit)?;
        st.end()
    }
}

fn decode_device_limit(
    kind: IsolatorKind,
    v: &Value,
    path: &JsonPath,
    cx: &mut Cx,
) -> Option<DeviceLimit> {
    let mut o = Obj::new(v, path, cx)?;
    let default = o.req::<bool>("default", cx);
    if default == Some(false) {
        cx.rule(
            &path.key("default"),
            "must be true (the limit applies to all devices)",
        );
    }
    let has_request = o.has("request");
    if has_request {
        o.opt::<Value>("request", cx);
        cx.rule(
            &path.key("request"),
            format!("not allowed for \"{kind}\", which has only a limit"),
        );
    }
    let limit = o.req::<Quantity>("limit", cx);
    o.finish(cx);
    let limit = DeviceLimit::new(limit?)
        .map_err(|e| cx.rule(&path.key("limit"), e.to_string()))
        .ok()?;
    (default == Some(true) && !has_request).then_some(limit)
}

// ---- capabilities ----

/// Parses a Linux capability name (`CAP_NET_ADMIN`), as capabilities(7) spells it.
pub fn parse_capability(s: &str) -> Result<Capability, InvalidValue> {
    s.parse().map_err(|_| {
        let e = InvalidValue::new(s, "a Linux capability");
        if s.to_ascii_uppercase().parse::<Capability>().is_ok() {
            e.because("capability names are upper-case")
        } else {
            e
        }
    })
}

/// The `set` of `os/linux/capabilities-retain-set` / `-remove-set`: non-empty, in manifest order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilitySet(Vec<Capability>);

impl CapabilitySet {
    pub fn new(set: Vec<Capability>) -> Result<Self, IsolatorValueError> {
        if set.is_empty() {
            Err(IsolatorValueError::EmptySet)
        } else {
            Ok(CapabilitySet(set))
        }
    }

    pub fn as_slice(&self) -> &[Capability] {
        &self.0
    }
}

impl Serialize for CapabilitySet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        let mut st = s.serialize_struct("CapabilitySet", 1)?;
        st.serialize_field("set", &names)?;
        st.end()
    }
}

/// The required non-empty `set` of a capabilities or seccomp value, each element parsed by `parse`.
fn decode_set<T>(
    o: &mut Obj<'_>,
    cx: &mut Cx,
    parse: impl Fn(&str) -> Result<T, InvalidValue>,
) -> Option<Vec<T>> {
    let raw = o.req::<Value>("set", cx)?;
    let path = o.path().key("set");
    let set = decode_list(&raw, &path, cx, |v, p, cx| {
        let s = String::decode(v, p, cx)?;
        parse(&s).map_err(|e| cx.invalid(p, e)).ok()
    })?;
    if set.is_empty() {
        cx.rule(&path, IsolatorValueError::EmptySet.to_string());
        return None;
    }
    Some(set)
}

impl Decode for CapabilitySet {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let set = decode_set(&mut o, cx, parse_capability);
        o.finish(cx);
        CapabilitySet::new(set?).ok()
    }
}

// ---- seccomp ----

/// One entry of a seccomp `set`: a syscall name (`clock_settime`, case-sensitive) or a wildcard
/// group `@scope/name` (ace.md: "Values starting with `@` identify special wildcards and are
/// scoped by the `/` separator"). Groups other than appc's are resolved by the executor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeccompEntry(String);

impl SeccompEntry {
    /// Every syscall: in a retain-set, opts out of filtering.
    pub const ALL: &'static str = "@appc.io/all";
    /// No syscall: in a remove-set, masks the other entries and opts into default filtering.
    pub const EMPTY: &'static str = "@appc.io/empty";

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let bad = |why: &'static str| InvalidValue::new(s, "a syscall name or @group").because(why);
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let Some(group) = s.strip_prefix('@') else {
            let syscall_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
            if !s.chars().all(syscall_char) {
                return Err(bad("syscall names are lower-case letters, digits and '_'"));
            }
            return Ok(SeccompEntry(s.to_owned()));
        };
        let scoped = AcIdentifier::parse(group).is_ok() && group.contains('/');
        if !scoped {
            return Err(bad("a group is \"@scope/name\", e.g. \"@appc.io/all\""));
        }
        if group.starts_with("appc.io/") && s != Self::ALL && s != Self::EMPTY {
            return Err(bad("the @appc.io/ scope has only \"all\" and \"empty\""));
        }
        Ok(SeccompEntry(s.to_owned()))
    }

    /// Whether this is an `@` wildcard group rather than a syscall name.
    pub fn is_group(&self) -> bool {
        self.0.starts_with('@')
    }
}

string_newtype!(SeccompEntry);

/// The `errno` of a seccomp isolator: `E` followed by upper-case letters or digits (ace.md:
/// "upper-case errno name"). May name an errno Linux does not have; see [`ErrnoName::errno`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrnoName(String);

/// Names nix prints differently because they share a number with another name.
const ERRNO_ALIASES: [(&str, Errno); 3] = [
    ("EWOULDBLOCK", Errno::EAGAIN),
    ("EDEADLOCK", Errno::EDEADLK),
    ("ENOTSUP", Errno::EOPNOTSUPP),
];

impl ErrnoName {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let rest = s.strip_prefix('E').unwrap_or("");
        if rest.is_empty()
            || !rest
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            let e = InvalidValue::new(s, "an errno name");
            return Err(e.because(
                "expected \"E\" followed by upper-case letters or digits, e.g. \"EPERM\"",
            ));
        }
        Ok(ErrnoName(s.to_owned()))
    }

    /// The Linux error number, `None` when Linux has no errno of this name (1..=133 is the
    /// kernel's range, up to `EHWPOISON`).
    pub fn errno(&self) -> Option<Errno> {
        if let Some((_, e)) = ERRNO_ALIASES.iter().find(|(name, _)| *name == self.0) {
            return Some(*e);
        }
        (1..=133)
            .map(Errno::from_raw)
            .find(|e| format!("{e:?}") == self.0)
    }
}

string_newtype!(ErrnoName);

/// `os/linux/seccomp-retain-set` / `-remove-set`: the non-empty `set`, and the `errno` blocked
/// syscalls return (absent: the process is killed with `SIGSYS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeccompFilter {
    set: Vec<SeccompEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errno: Option<ErrnoName>,
}

impl SeccompFilter {
    pub fn new(
        set: Vec<SeccompEntry>,
        errno: Option<ErrnoName>,
    ) -> Result<Self, IsolatorValueError> {
        if set.is_empty() {
            Err(IsolatorValueError::EmptySet)
        } else {
            Ok(SeccompFilter { set, errno })
        }
    }

    pub fn set(&self) -> &[SeccompEntry] {
        &self.set
    }

    pub fn errno(&self) -> Option<&ErrnoName> {
        self.errno.as_ref()
    }
}

/// The optional `errno`: `None` when it failed (recorded), `Some(None)` when absent or empty.
fn decode_errno(o: &mut Obj<'_>, cx: &mut Cx) -> Option<Option<ErrnoName>> {
    let present = o.has("errno");
    let errno = o.opt_with("errno", cx, |v, path, cx| {
        let s = String::decode(v, path, cx)?;
        if s.is_empty() {
            // Go's check skips an empty errno, so it means "none"; the spec has no such value.
            cx.warn(path, "empty errno treated as absent");
            return Some(None);
        }
        let name = ErrnoName::parse(&s).map_err(|e| cx.invalid(path, e)).ok()?;
        if name.errno().is_none() {
            cx.warn(
                path,
                format!("errno {s:?} is not known to Linux and may be ignored"),
            );
        }
        Some(Some(name))
    });
    if present && errno.is_none() {
        None
    } else {
        Some(errno.flatten())
    }
}

impl Decode for SeccompFilter {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let set = decode_set(&mut o, cx, SeccompEntry::parse);
        let errno = decode_errno(&mut o, cx);
        o.finish(cx);
        SeccompFilter::new(set?, errno?).ok()
    }
}

// ---- SELinux, AppArmor ----

/// `os/linux/selinux-context`: all four parts non-empty; `:` only in the level (`s0:c1,c2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelinuxContext {
    user: String,
    role: String,
    #[serde(rename = "type")]
    type_: String,
    level: String,
}

fn check_selinux_part(
    s: &str,
    expected: &'static str,
    colon_allowed: bool,
) -> Result<(), InvalidValue> {
    if s.is_empty() {
        return Err(InvalidValue::new(s, expected).because("it is empty"));
    }
    if !colon_allowed && s.contains(':') {
        return Err(InvalidValue::new(s, expected).because("\":\" is not allowed"));
    }
    Ok(())
}

const SELINUX_PARTS: [(&str, &str, bool); 4] = [
    ("user", "an SELinux user", false),
    ("role", "an SELinux role", false),
    ("type", "an SELinux type", false),
    ("level", "an SELinux level", true),
];

impl SelinuxContext {
    pub fn new(user: &str, role: &str, type_: &str, level: &str) -> Result<Self, InvalidValue> {
        for ((_, expected, colon), s) in SELINUX_PARTS.iter().zip([user, role, type_, level]) {
            check_selinux_part(s, expected, *colon)?;
        }
        let (user, role, type_, level) = (
            user.to_owned(),
            role.to_owned(),
            type_.to_owned(),
            level.to_owned(),
        );
        Ok(SelinuxContext {
            user,
            role,
            type_,
            level,
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn role(&self) -> &str {
        &self.role
    }

    pub fn type_(&self) -> &str {
        &self.type_
    }

    pub fn level(&self) -> &str {
        &self.level
    }
}

impl fmt::Display for SelinuxContext {
    /// The `user:role:type:level` form the kernel and `setexeccon` take.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.user, self.role, self.type_, self.level
        )
    }
}

impl Decode for SelinuxContext {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let [user, role, type_, level] = SELINUX_PARTS.map(|(key, expected, colon)| {
            let s = o.req::<String>(key, cx)?;
            check_selinux_part(&s, expected, colon)
                .map_err(|e| cx.invalid(&path.key(key), e))
                .ok()?;
            Some(s)
        });
        o.finish(cx);
        SelinuxContext::new(&user?, &role?, &type_?, &level?).ok()
    }
}

/// The `profile` of `os/linux/apparmor-profile`: the name of a profile already loaded on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppArmorProfile(String);

impl AppArmorProfile {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if s.is_empty() {
            return Err(InvalidValue::new(s, "an AppArmor profile name").because("it is empty"));
        }
        Ok(AppArmorProfile(s.to_owned()))
    }
}

string_newtype!(AppArmorProfile);

fn decode_apparmor(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<AppArmorProfile> {
    let mut o = Obj::new(v, path, cx)?;
    let profile = o.req("profile", cx);
    o.finish(cx);
    profile
}

// ---- integer isolators ----

/// `os/linux/oom-score-adj`: -1000..=1000, as `/proc/<pid>/oom_score_adj` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct OomScoreAdj(i16);

impl OomScoreAdj {
    pub fn new(n: i64) -> Result<Self, InvalidValue> {
        match i16::try_from(n) {
            Ok(v) if (-1000..=1000).contains(&v) => Ok(OomScoreAdj(v)),
            _ => Err(InvalidValue::new(n.to_string(), "an OOM score adjustment")
                .because("the range is -1000 to 1000")),
        }
    }

    pub fn get(self) -> i16 {
        self.0
    }
}

impl Decode for OomScoreAdj {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let n = i64::decode(v, path, cx)?;
        OomScoreAdj::new(n).map_err(|e| cx.invalid(path, e)).ok()
    }
}

/// `os/linux/cpu-shares`: 2..=262144, the cgroup v1 `cpu.shares` range (systemd's `CPUShares=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct CpuShares(u32);

impl CpuShares {
    pub fn new(n: i64) -> Result<Self, InvalidValue> {
        match u32::try_from(n) {
            Ok(v) if (2..=262_144).contains(&v) => Ok(CpuShares(v)),
            _ => Err(InvalidValue::new(n.to_string(), "a CPU shares value")
                .because("the range is 2 to 262144")),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Decode for CpuShares {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let n = i64::decode(v, path, cx)?;
        CpuShares::new(n).map_err(|e| cx.invalid(path, e)).ok()
    }
}

// ---- sysctl ----

/// `os/unix/sysctl`: sysctl key → value, both strings. Written sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Sysctls(BTreeMap<String, String>);

fn check_sysctl_key(key: &str) -> Result<(), InvalidValue> {
    let bad = |why| Err(InvalidValue::new(key, "a sysctl key").because(why));
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("whitespace and control characters are not allowed");
    }
    Ok(())
}

impl Sysctls {
    pub fn new(map: BTreeMap<String, String>) -> Result<Self, InvalidValue> {
        map.keys().try_for_each(|k| check_sysctl_key(k))?;
        Ok(Sysctls(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Decode for Sysctls {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let Value::Object(map) = v else {
            cx.wrong_type(path, "an object", v);
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (key, value) in map {
            let at = path.key(key);
            let checked = check_sysctl_key(key).map_err(|e| cx.invalid(&at, e)).ok();
            match (checked, String::decode(value, &at, cx)) {
                (Some(()), Some(s)) => {
                    out.insert(key.clone(), s);
                }
                _ => ok = false,
            }
        }
        if ok { Sysctls::new(out).ok() } else { None }
    }
}

// ---- unknown ----

/// An isolator this crate does not know, kept as read so that it round-trips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownIsolator {
    name: AcIdentifier,
    value: Value,
}

impl UnknownIsolator {
    /// Refuses known names: their values must go through the typed variants.
    pub fn new(name: AcIdentifier, value: Value) -> Result<Self, InvalidValue> {
        if IsolatorKind::from_name(name.as_str()).is_some() {
            let e = InvalidValue::new(name.as_str(), "an unknown isolator name");
            return Err(e.because("it names a known isolator"));
        }
        Ok(UnknownIsolator { name, value })
    }

    pub fn name(&self) -> &AcIdentifier {
        &self.name
    }

    pub fn value(&self) -> &Value {
        &self.value
    }
}

// ---- the isolator object ----

impl Decode for Isolator {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let name: Option<AcIdentifier> = o.req("name", cx);
        let value: Option<Value> = o.req("value", cx);
        o.finish(cx);
        let (name, value) = (name?, value?);
        match IsolatorKind::from_name(name.as_str()) {
            Some(kind) => decode_known(kind, &value, &path.key("value"), cx),
            None => {
                cx.warn(
                    path,
                    format!("unknown isolator {:?} ignored", name.as_str()),
                );
                UnknownIsolator::new(name, value)
                    .ok()
                    .map(Isolator::Unknown)
            }
        }
    }
}

fn decode_known(kind: IsolatorKind, v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Isolator> {
    use IsolatorKind as K;
    Some(match kind {
        K::Cpu => Isolator::Cpu(ResourceLimits::decode(v, path, cx)?),
        K::Memory => Isolator::Memory(ResourceLimits::decode(v, path, cx)?),
        K::BlockBandwidth => Isolator::BlockBandwidth(decode_device_limit(kind, v, path, cx)?),
        K::BlockIops => Isolator::BlockIops(decode_device_limit(kind, v, path, cx)?),
        K::NetworkBandwidth => Isolator::NetworkBandwidth(decode_device_limit(kind, v, path, cx)?),
        K::CapabilitiesRetainSet => {
            Isolator::CapabilitiesRetainSet(CapabilitySet::decode(v, path, cx)?)
        }
        K::CapabilitiesRemoveSet => {
            Isolator::CapabilitiesRemoveSet(CapabilitySet::decode(v, path, cx)?)
        }
        K::NoNewPrivileges => Isolator::NoNewPrivileges(bool::decode(v, path, cx)?),
        K::SeccompRetainSet => Isolator::SeccompRetainSet(SeccompFilter::decode(v, path, cx)?),
        K::SeccompRemoveSet => Isolator::SeccompRemoveSet(SeccompFilter::decode(v, path, cx)?),
        K::SelinuxContext => Isolator::SelinuxContext(SelinuxContext::decode(v, path, cx)?),
        K::AppArmorProfile => Isolator::AppArmorProfile(decode_apparmor(v, path, cx)?),
        K::OomScoreAdj => Isolator::OomScoreAdj(OomScoreAdj::decode(v, path, cx)?),
        K::CpuShares => Isolator::CpuShares(CpuShares::decode(v, path, cx)?),
        K::Sysctl => Isolator::Sysctl(Sysctls::decode(v, path, cx)?),
    })
}

#[derive(Serialize)]
struct ProfileValue<'a> {
    profile: &'a AppArmorProfile,
}

impl Serialize for Isolator {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Isolator", 2)?;
        st.serialize_field("name", self.name())?;
        match self {
            Isolator::Cpu(v) | Isolator::Memory(v) => st.serialize_field("value", v),
            Isolator::BlockBandwidth(v)
            | Isolator::BlockIops(v)
            | Isolator::NetworkBandwidth(v) => st.serialize_field("value", v),
            Isolator::CapabilitiesRetainSet(v) | Isolator::CapabilitiesRemoveSet(v) => {
                st.serialize_field("value", v)
            }
            Isolator::NoNewPrivileges(v) => st.serialize_field("value", v),
            Isolator::SeccompRetainSet(v) | Isolator::SeccompRemoveSet(v) => {
                st.serialize_field("value", v)
            }
            Isolator::SelinuxContext(v) => st.serialize_field("value", v),
            Isolator::AppArmorProfile(profile) => {
                st.serialize_field("value", &ProfileValue { profile })
            }
            Isolator::OomScoreAdj(v) => st.serialize_field("value", v),
            Isolator::CpuShares(v) => st.serialize_field("value", v),
            Isolator::Sysctl(v) => st.serialize_field("value", v),
            Isolator::Unknown(u) => st.serialize_field("value", &u.value),
        }?;
        st.end()
    }
}

/// Plain serde reads an isolator through the same decoder; the first problem becomes the error.
impl<'de> serde::Deserialize<'de> for Isolator {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        decode_value::<Isolator>(&value)
            .map(|d| d.value)
            .map_err(|errors| {
                let first = errors.iter().next().map(ToString::to_string);
                serde::de::Error::custom(first.unwrap_or_default())
            })
    }
}

// ---- list checks ----

/// Checks a whole isolator list at `path` (the list itself): scope, multiplicity and conflicts
/// (ace.md per-isolator rules; decisions 7 and 13). Problems go to `path[i]`.
pub fn check_isolators(list: &[Isolator], scope: IsolatorScope, path: &JsonPath, cx: &mut Cx) {
    let slots: Vec<Option<&Isolator>> = list.iter().map(Some).collect();
    check_isolator_slots(&slots, scope, path, cx);
}

/// [`check_isolators`] over a list in which some elements failed to decode (`None`): the rest are
/// still checked, and problems are reported at their original indices.
pub fn check_isolator_slots(
    slots: &[Option<&Isolator>],
    scope: IsolatorScope,
    path: &JsonPath,
    cx: &mut Cx,
) {
    for (i, isolator) in slots.iter().enumerate() {
        let Some(isolator) = isolator else { continue };
        let Some(kind) = isolator.kind() else {
            continue;
        };
        let here = path.index(i);
        check_scope(kind, scope, &here, cx);
        check_repeats(&slots[..i], kind, scope, &here, cx);
        check_request_limit(isolator, &here, cx);
    }
}

fn check_scope(kind: IsolatorKind, scope: IsolatorScope, here: &JsonPath, cx: &mut Cx) {
    if kind.allowed_in(scope) {
        return;
    }
    let rule = match scope {
        IsolatorScope::Pod => {
            format!("\"{kind}\" applies to apps only and cannot be set for the pod")
        }
        IsolatorScope::App => {
            format!("\"{kind}\" applies to the whole pod only and cannot be set for an app")
        }
    };
    cx.rule(here, rule);
}

/// `earlier` is the part of the list before the isolator being checked.
fn check_repeats(
    earlier: &[Option<&Isolator>],
    kind: IsolatorKind,
    scope: IsolatorScope,
    here: &JsonPath,
    cx: &mut Cx,
) {
    let has = |k: IsolatorKind| earlier.iter().flatten().any(|i| i.kind() == Some(k));
    let noun = scope.noun();
    if let Some(other) = kind.conflicts_with().filter(|k| has(*k)) {
        cx.rule(
            here,
            format!("\"{kind}\" cannot be combined with \"{other}\" in one {noun}"),
        );
    }
    if !has(kind) {
        return;
    }
    if kind.is_single() {
        cx.rule(
            here,
            format!("duplicate isolator \"{kind}\" (at most one per {noun})"),
        );
    } else {
        cx.warn(
            here,
            format!("isolator \"{kind}\" given more than once; only the last one is applied"),
        );
    }
}

/// Request above limit is accepted, as Go does, but it cannot be honoured.
fn check_request_limit(isolator: &Isolator, here: &JsonPath, cx: &mut Cx) {
    let (Isolator::Cpu(r) | Isolator::Memory(r)) = isolator else {
        return;
    };
    if let (Some(request), Some(limit)) = (r.request(), r.limit())
        && request > limit
    {
        let at = here.key("value").key("request");
        let (request, limit) = (request.as_str(), limit.as_str());
        cx.warn(
            &at,
            format!("request {request:?} is above limit {limit:?}; the limit applies"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Warning;
    use crate::schema::decode::{Decoded, decode_document};

    fn doc(name: &str, value: &str) -> String {
        format!(r#"{{"name": "{name}", "value": {value}}}"#)
    }

    /// Decodes, and checks that the canonical form decodes to the same isolator.
    fn accept(name: &str, value: &str) -> Decoded<Isolator> {
        let d = decode_document::<Isolator>(&doc(name, value))
            .unwrap_or_else(|e| panic!("{name} {value} rejected:\n{e}"));
        let json = serde_json::to_value(&d.value).unwrap_or_else(|e| panic!("{e}"));
        let again = decode_value::<Isolator>(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(
            again.value, d.value,
            "{name} {value}: round trip changed the value"
        );
        assert_eq!(d.value.name(), name);
        d
    }

    fn reject(name: &str, value: &str) -> String {
        match decode_document::<Isolator>(&doc(name, value)) {
            Ok(d) => panic!("{name} {value} accepted as {:?}", d.value),
            Err(e) => e.to_string(),
        }
    }

    fn warnings(w: &[Warning]) -> Vec<String> {
        w.iter().map(ToString::to_string).collect()
    }

    // Facts re-authored from appc/spec schema/types/isolator*_test.go, plus this policy's rules.
    #[test]
    fn every_isolator_accepts_valid_values() {
        #[rustfmt::skip]
        let cases = [
            ("resource/cpu", r#"{"limit": "20m"}"#),
            ("resource/cpu", r#"{"request": "1", "limit": "2", "default": false}"#),
            ("resource/cpu", r#"{"request": 2}"#),
            ("resource/memory", r#"{"limit": "1G"}"#),
            ("resource/memory", r#"{"request": "128Mi", "limit": "0"}"#),
            ("resource/block-bandwidth", r#"{"default": true, "limit": "10M"}"#),
            ("resource/block-iops", r#"{"default": true, "limit": 1000}"#),
            ("resource/network-bandwidth", r#"{"default": true, "limit": "1Mi"}"#),
            ("os/linux/capabilities-retain-set", r#"{"set": ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]}"#),
            ("os/linux/capabilities-remove-set", r#"{"set": ["CAP_SYS_ADMIN"]}"#),
            ("os/linux/no-new-privileges", "true"),
            ("os/linux/no-new-privileges", "false"),
            ("os/linux/seccomp-retain-set", r#"{"set": ["@appc.io/all"]}"#),
            ("os/linux/seccomp-remove-set", r#"{"set": ["@appc.io/empty"], "errno": "ENOTSUP"}"#),
            ("os/linux/seccomp-remove-set", r#"{"set": ["reboot", "_llseek", "@rkt/default-blacklist"]}"#),
            ("os/linux/selinux-context", r#"{"user": "system_u", "role": "system_r", "type": "svirt_lxc_net_t", "level": "s0:c1,c2"}"#),
            ("os/linux/apparmor-profile", r#"{"profile": "docker-default"}"#),
            ("os/linux/oom-score-adj", "-1000"),
            ("os/linux/oom-score-adj", "1000"),
            ("os/linux/oom-score-adj", "250"),
            ("os/linux/cpu-shares", "2"),
            ("os/linux/cpu-shares", "2048"),
            ("os/linux/cpu-shares", "262144"),
            ("os/unix/sysctl", r#"{"net.ipv4.tcp_fin_timeout": "6", "kernel.shm_rmid_forced": "1"}"#),
            ("os/unix/sysctl", "{}"),
        ];
        for (name, value) in cases {
            let d = accept(name, value);
            assert!(d.warnings.is_empty(), "{name} {value}: {:?}", d.warnings);
        }
    }

    #[test]
    fn every_isolator_rejects_invalid_values() {
        #[rustfmt::skip]
        let cases = [
            ("resource/cpu", r#"{"default": true, "limit": "1"}"#, "value.default: must be false"),
            ("resource/cpu", "{}", r#"value: at least one of "request" and "limit" is required"#),
            ("resource/cpu", r#"{"limit": "1X"}"#, r#"value.limit: "1X" is not a resource quantity (unknown suffix "X")"#),
            ("resource/cpu", r#"{"request": "-1"}"#, r#"value.request: negative quantity "-1" is not allowed"#),
            ("resource/cpu", r#""1""#, "value: expected an object, found a string"),
            ("resource/memory", r#"{"default": true, "limit": "1G"}"#, "value.default: must be false"),
            ("resource/memory", r#"{"limit": true}"#, "value.limit: expected a string or a number, found a boolean"),
            ("resource/block-bandwidth", r#"{"default": false, "limit": "1M"}"#, "value.default: must be true"),
            ("resource/block-bandwidth", r#"{"limit": "1M"}"#, "value.default: required field is missing"),
            ("resource/block-bandwidth", r#"{"default": true, "request": "1", "limit": "1M"}"#, "value.request: not allowed"),
            ("resource/block-iops", r#"{"default": true}"#, "value.limit: required field is missing"),
            ("resource/block-iops", r#"{"default": true, "limit": "-5"}"#, r#"value.limit: negative quantity "-5""#),
            ("resource/network-bandwidth", r#"{"default": false, "limit": "1M"}"#, "value.default: must be true"),
            ("resource/network-bandwidth", r#"{"default": true, "request": "1", "limit": "1"}"#, "value.request: not allowed"),
            ("os/linux/capabilities-retain-set", r#"{"set": []}"#, "value.set: the set must not be empty"),
            ("os/linux/capabilities-retain-set", r#"{"set": ["CAP_CHOWN", "CAP_PONIES"]}"#, r#"value.set[1]: "CAP_PONIES" is not a Linux capability"#),
            ("os/linux/capabilities-remove-set", r#"{"set": ["cap_chown"]}"#, "(capability names are upper-case)"),
            ("os/linux/capabilities-remove-set", "{}", "value.set: required field is missing"),
            ("os/linux/capabilities-remove-set", r#"{"set": "CAP_CHOWN"}"#, "value.set: expected an array, found a string"),
            ("os/linux/no-new-privileges", r#""true""#, "value: expected a boolean, found a string"),
            ("os/linux/no-new-privileges", "1", "value: expected a boolean, found a number"),
            ("os/linux/seccomp-retain-set", r#"{"set": []}"#, "value.set: the set must not be empty"),
            ("os/linux/seccomp-retain-set", r#"{"set": ["Read"]}"#, r#"value.set[0]: "Read" is not a syscall name or @group"#),
            ("os/linux/seccomp-retain-set", r#"{"set": [""]}"#, "(it is empty)"),
            ("os/linux/seccomp-retain-set", r#"{"set": ["@all"]}"#, r#"a group is "@scope/name""#),
            ("os/linux/seccomp-retain-set", r#"{"set": ["@appc.io/none"]}"#, r#"the @appc.io/ scope has only "all" and "empty""#),
            ("os/linux/seccomp-remove-set", r#"{"set": ["reboot"], "errno": "eperm"}"#, r#"value.errno: "eperm" is not an errno name"#),
            ("os/linux/seccomp-remove-set", r#"{"set": ["reboot"], "errno": "-EPERM"}"#, r#""-EPERM" is not an errno name"#),
            ("os/linux/seccomp-remove-set", r#"{"set": ["reboot"], "errno": "E"}"#, r#""E" is not an errno name"#),
            ("os/linux/selinux-context", r#"{"user": "a:b", "role": "r", "type": "t", "level": "s0"}"#, r#"value.user: "a:b" is not an SELinux user (":" is not allowed)"#),
            ("os/linux/selinux-context", r#"{"user": "u", "role": "r:x", "type": "t", "level": "s0"}"#, r#"value.role: "r:x" is not an SELinux role"#),
            ("os/linux/selinux-context", r#"{"user": "u", "role": "r", "type": "t:x", "level": "s0"}"#, r#"value.type: "t:x" is not an SELinux type"#),
            ("os/linux/selinux-context", r#"{"user": "u", "role": "r", "type": "", "level": "s0"}"#, r#"value.type: "" is not an SELinux type (it is empty)"#),
            ("os/linux/selinux-context", r#"{"user": "u", "role": "r", "type": "t"}"#, "value.level: required field is missing"),
            ("os/linux/apparmor-profile", r#"{"profile": ""}"#, r#"value.profile: "" is not an AppArmor profile name (it is empty)"#),
            ("os/linux/apparmor-profile", "{}", "value.profile: required field is missing"),
            ("os/linux/oom-score-adj", "-2500", r#"value: "-2500" is not an OOM score adjustment (the range is -1000 to 1000)"#),
            ("os/linux/oom-score-adj", "1001", r#""1001" is not an OOM score adjustment"#),
            ("os/linux/oom-score-adj", "1.5", r#"value: "1.5" is not an integer"#),
            ("os/linux/cpu-shares", "1", r#"value: "1" is not a CPU shares value (the range is 2 to 262144)"#),
            ("os/linux/cpu-shares", "262145", r#""262145" is not a CPU shares value"#),
            ("os/linux/cpu-shares", r#""pants""#, "value: expected an integer, found a string"),
            ("os/unix/sysctl", r#"{"net.ipv4.ip_forward": 1}"#, r#"value["net.ipv4.ip_forward"]: expected a string, found a number"#),
            ("os/unix/sysctl", r#"{"": "1"}"#, r#""" is not a sysctl key (it is empty)"#),
            ("os/unix/sysctl", r#"{"net.ipv4 x": "1"}"#, "is not a sysctl key (whitespace"),
            ("os/unix/sysctl", r#"["a"]"#, "value: expected an object, found an array"),
        ];
        for (name, value, expected) in cases {
            let e = reject(name, value);
            assert!(
                e.contains(expected),
                "{name} {value}: expected {expected:?} in\n{e}"
            );
        }
    }

    #[test]
    fn every_problem_of_a_value_is_reported() {
        let iops = r#"{"default": false, "request": "1", "limit": "-1"}"#;
        assert_eq!(reject("resource/block-iops", iops).lines().count(), 3);
        let selinux = r#"{"user": "a:b", "role": "", "type": "t", "level": ""}"#;
        assert_eq!(
            reject("os/linux/selinux-context", selinux).lines().count(),
            3
        );
    }

    #[test]
    fn the_isolator_object_itself() {
        let e = |json: &str| {
            decode_document::<Isolator>(json)
                .err()
                .map(|e| e.to_string())
        };
        // Decision 6: Go crashes on a known isolator without value.
        let missing = Some("value: required field is missing".to_owned());
        assert_eq!(e(r#"{"name": "resource/cpu"}"#), missing);
        assert_eq!(e(r#"{"name": "resource/cpu", "value": null}"#), missing);
        assert_eq!(e(r#"{"name": "example.com/gpu"}"#), missing);
        let bad_name = e(r#"{"name": "Resource/CPU", "value": {}}"#).unwrap_or_default();
        assert!(
            bad_name.starts_with(r#"name: "Resource/CPU" is not an AC Identifier"#),
            "{bad_name}"
        );
        let not_object = e("[]");
        assert_eq!(
            not_object.as_deref(),
            Some("(top level): expected an object, found an array")
        );
    }

    #[test]
    fn errors_carry_the_full_path() {
        struct At;
        impl Decode for At {
            fn decode(v: &Value, _: &JsonPath, cx: &mut Cx) -> Option<Self> {
                let root = JsonPath::root().key("apps").index(1).key("app");
                Isolator::decode(v, &root.key("isolators").index(0), cx).map(|_| At)
            }
        }
        let e = decode_document::<At>(&doc("resource/memory", r#"{"limit": "1X"}"#))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let want = r#"apps[1].app.isolators[0].value.limit: "1X" is not a resource quantity"#;
        assert!(e.starts_with(want), "{e}");
    }

    #[test]
    fn warnings_for_accepted_oddities() {
        let w = |name, value| warnings(&accept(name, value).warnings);
        let eaccess = r#"{"set": ["reboot"], "errno": "EACCESS"}"#;
        assert_eq!(
            w("os/linux/seccomp-remove-set", eaccess),
            [r#"value.errno: errno "EACCESS" is not known to Linux and may be ignored"#]
        );
        let empty = r#"{"set": ["reboot"], "errno": ""}"#;
        assert_eq!(
            w("os/linux/seccomp-remove-set", empty),
            ["value.errno: empty errno treated as absent"]
        );
        assert_eq!(
            w("resource/memory", r#"{"limit": "1G", "swap": "1G"}"#),
            ["value.swap: unknown field, ignored"]
        );
        let float = w("resource/cpu", r#"{"limit": 0.5}"#);
        let want = "value.limit: quantity 0.5 read from a JSON float";
        assert!(float[0].starts_with(want), "{float:?}");
    }

    #[test]
    fn unknown_isolators_are_kept_verbatim() {
        let value = r#"{"count": 1, "model": ["a", {"b": null}]}"#;
        let d = accept("example.com/gpu", value);
        assert_eq!(
            warnings(&d.warnings),
            [r#"unknown isolator "example.com/gpu" ignored"#]
        );
        assert_eq!(d.value.kind(), None);
        let Isolator::Unknown(u) = &d.value else {
            panic!("{:?}", d.value)
        };
        let expected: Value = serde_json::from_str(value).unwrap_or_default();
        assert_eq!(u.value(), &expected);
        let out = serde_json::to_value(&d.value).unwrap_or_default();
        assert_eq!(
            out,
            serde_json::json!({"name": "example.com/gpu", "value": expected})
        );
        // A known name cannot hide in `Unknown`, where the executor would skip it.
        let cpu = AcIdentifier::parse("resource/cpu").unwrap_or_else(|e| panic!("{e}"));
        assert!(UnknownIsolator::new(cpu, Value::Null).is_err());
    }

    #[test]
    fn canonical_serialization() {
        #[rustfmt::skip]
        let cases = [
            ("resource/cpu", r#"{"default": false, "limit": "20m", "request": "10m"}"#, r#"{"request":"10m","limit":"20m"}"#),
            ("resource/memory", r#"{"limit": 1024}"#, r#"{"limit":"1024"}"#),
            ("resource/block-iops", r#"{"limit": "1k", "default": true}"#, r#"{"default":true,"limit":"1k"}"#),
            ("os/linux/seccomp-remove-set", r#"{"errno": "EPERM", "set": ["reboot"]}"#, r#"{"set":["reboot"],"errno":"EPERM"}"#),
            ("os/linux/seccomp-retain-set", r#"{"set": ["@appc.io/all"], "errno": ""}"#, r#"{"set":["@appc.io/all"]}"#),
            ("os/linux/capabilities-retain-set", r#"{"set": ["CAP_KILL", "CAP_CHOWN"]}"#, r#"{"set":["CAP_KILL","CAP_CHOWN"]}"#),
            ("os/linux/selinux-context", r#"{"level": "s0", "type": "t", "role": "r", "user": "u"}"#, r#"{"user":"u","role":"r","type":"t","level":"s0"}"#),
            ("os/linux/apparmor-profile", r#"{"profile": "p"}"#, r#"{"profile":"p"}"#),
            ("os/linux/no-new-privileges", "true", "true"),
            ("os/linux/oom-score-adj", "-17", "-17"),
            ("os/linux/cpu-shares", "1024", "1024"),
            ("os/unix/sysctl", r#"{"b": "2", "a": "1"}"#, r#"{"a":"1","b":"2"}"#),
        ];
        for (name, value, want) in cases {
            let out = serde_json::to_string(&accept(name, value).value).unwrap_or_default();
            assert_eq!(
                out,
                format!(r#"{{"name":"{name}","value":{want}}}"#),
                "{value}"
            );
        }
    }

    #[test]
    fn example_image_manifest_isolators() {
        // The isolators of appc/spec examples/image.json.
        let json = r#"[
            {"name": "resource/cpu", "value": {"limit": "20m"}},
            {"name": "resource/memory", "value": {"limit": "1G"}},
            {"name": "os/linux/capabilities-retain-set",
             "value": {"set": ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]}},
            {"name": "os/linux/no-new-privileges", "value": true},
            {"name": "os/linux/seccomp-remove-set",
             "value": {"errno": "EACCESS", "set": ["clock_settime", "clock_adjtime", "reboot"]}}
        ]"#;
        let d = decode_document::<Vec<Isolator>>(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        let [cpu, mem, caps, nnp, seccomp] = &d.value[..] else {
            panic!("{:?}", d.value)
        };
        let Isolator::Cpu(cpu) = cpu else {
            panic!("{cpu:?}")
        };
        assert_eq!(cpu.effective_request().to_milli(), Some(20));
        let Isolator::Memory(mem) = mem else {
            panic!("{mem:?}")
        };
        assert_eq!(
            mem.limit().and_then(Quantity::to_bytes),
            Some(1_000_000_000)
        );
        let Isolator::CapabilitiesRetainSet(caps) = caps else {
            panic!("{caps:?}")
        };
        let want = [Capability::CAP_NET_ADMIN, Capability::CAP_NET_BIND_SERVICE];
        assert_eq!(caps.as_slice(), want);
        assert_eq!(nnp, &Isolator::NoNewPrivileges(true));
        let Isolator::SeccompRemoveSet(seccomp) = seccomp else {
            panic!("{seccomp:?}")
        };
        assert_eq!(seccomp.set()[2], "reboot");
        assert_eq!(seccomp.errno().map(ErrnoName::as_str), Some("EACCESS"));
    }

    #[test]
    fn constructors_only_build_valid_values() {
        let q = |s: &str| Quantity::parse(s).unwrap_or_else(|e| panic!("{e}"));
        let none = ResourceLimits::new(None, None);
        assert_eq!(none, Err(IsolatorValueError::NoRequestOrLimit));
        let neg = ResourceLimits::new(Some(q("-1")), Some(q("1")));
        assert_eq!(neg, Err(IsolatorValueError::NegativeQuantity("-1".into())));
        let limits = ResourceLimits::with_limit(q("128M")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(limits.effective_request(), &q("128M"));
        assert_eq!(limits.request(), None);
        assert!(DeviceLimit::new(q("-1")).is_err());
        assert_eq!(
            CapabilitySet::new(vec![]),
            Err(IsolatorValueError::EmptySet)
        );
        assert!(SeccompFilter::new(vec![], None).is_err());
        assert!(OomScoreAdj::new(-1001).is_err());
        assert_eq!(OomScoreAdj::new(-1000).map(OomScoreAdj::get), Ok(-1000));
        assert!(CpuShares::new(i64::from(u32::MAX) + 3).is_err());
        assert_eq!(CpuShares::new(1024).map(CpuShares::get), Ok(1024));
        let ctx = SelinuxContext::new("u", "r", "t", "s0:c1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ctx.to_string(), "u:r:t:s0:c1");
        assert!(SelinuxContext::new("u", "r", "t", "").is_err());
        assert!(Sysctls::new(BTreeMap::from([(String::new(), "1".to_owned())])).is_err());
        assert!(parse_capability("CAP_PONIES").is_err());
        assert_eq!(
            parse_capability("CAP_CHOWN").ok(),
            Some(Capability::CAP_CHOWN)
        );
    }

    #[test]
    fn seccomp_entries_and_errnos() {
        let all = SeccompEntry::parse(SeccompEntry::ALL).unwrap_or_else(|e| panic!("{e}"));
        assert!(all.is_group());
        assert_eq!(all, SeccompEntry::ALL);
        assert!(SeccompEntry::parse("clock_settime").is_ok_and(|e| !e.is_group()));
        assert!(SeccompEntry::parse("@systemd/clock").is_ok());
        assert!(SeccompEntry::parse("@/clock").is_err());
        let errno = |s: &str| ErrnoName::parse(s).ok().and_then(|e| e.errno());
        assert_eq!(errno("EPERM"), Some(Errno::EPERM));
        assert_eq!(errno("EACCES"), Some(Errno::EACCES));
        assert_eq!(errno("EHWPOISON"), Some(Errno::EHWPOISON));
        assert_eq!(errno("ENOTSUP"), Some(Errno::EOPNOTSUPP));
        assert_eq!(errno("EWOULDBLOCK"), Some(Errno::EAGAIN));
        assert_eq!(errno("EDEADLOCK"), Some(Errno::EDEADLK));
        assert_eq!(errno("EACCESS"), None);
        assert!(ErrnoName::parse("EACCESS").is_ok());
    }

    #[test]
    fn kinds_and_names() {
        for kind in IsolatorKind::ALL {
            assert_eq!(IsolatorKind::from_name(kind.name()), Some(kind));
            assert!(
                AcIdentifier::parse(kind.name()).is_ok_and(|n| n.is_strict()),
                "{kind}"
            );
        }
        assert_eq!(IsolatorKind::from_name("resource/gpu"), None);
    }

    #[test]
    fn plain_serde_reads_through_the_decoder() {
        let i: Isolator = serde_json::from_str(&doc("os/linux/cpu-shares", "512"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(i, Isolator::CpuShares(CpuShares(512)));
        let e = serde_json::from_str::<Isolator>(&doc("os/linux/cpu-shares", "1"));
        assert!(e.is_err_and(|e| e.to_string().starts_with("value: \"1\"")));
    }

    // ---- list checks ----

    /// An isolator list at the top level, checked at app (`POD = false`) or pod scope.
    struct Checked<const POD: bool>;

    impl<const POD: bool> Decode for Checked<POD> {
        fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
            let list = Vec::<Isolator>::decode(v, path, cx)?;
            let scope = if POD {
                IsolatorScope::Pod
            } else {
                IsolatorScope::App
            };
            check_isolators(&list, scope, &path.key("isolators"), cx);
            Some(Checked)
        }
    }

    fn list(isolators: &[(&str, &str)]) -> String {
        let items: Vec<String> = isolators.iter().map(|(n, v)| doc(n, v)).collect();
        format!("[{}]", items.join(","))
    }

    /// The warnings of a list at app or pod scope, or its errors.
    fn check(pod: bool, isolators: &[(&str, &str)]) -> Result<Vec<String>, String> {
        let text = list(isolators);
        let result = if pod {
            decode_document::<Checked<true>>(&text).map(|d| warnings(&d.warnings))
        } else {
            decode_document::<Checked<false>>(&text).map(|d| warnings(&d.warnings))
        };
        result.map_err(|e| e.to_string())
    }

    type Item = (&'static str, &'static str);
    const CAPS: Item = (
        "os/linux/capabilities-retain-set",
        r#"{"set": ["CAP_CHOWN"]}"#,
    );
    const CAPS_REMOVE: Item = (
        "os/linux/capabilities-remove-set",
        r#"{"set": ["CAP_KILL"]}"#,
    );
    const NNP: Item = ("os/linux/no-new-privileges", "true");
    const RETAIN: Item = (
        "os/linux/seccomp-retain-set",
        r#"{"set": ["@appc.io/all"]}"#,
    );
    const REMOVE: Item = ("os/linux/seccomp-remove-set", r#"{"set": ["reboot"]}"#);
    const SYSCTL: Item = ("os/unix/sysctl", r#"{"net.ipv4.ip_forward": "1"}"#);
    const MEMORY: Item = ("resource/memory", r#"{"limit": "1G"}"#);
    const SHARES: Item = ("os/linux/cpu-shares", "1024");
    const OOM: Item = ("os/linux/oom-score-adj", "100");
    const SELINUX: Item = (
        "os/linux/selinux-context",
        r#"{"user": "u", "role": "r", "type": "t", "level": "s0"}"#,
    );
    const APPARMOR: Item = ("os/linux/apparmor-profile", r#"{"profile": "p"}"#);
    const GPU: Item = ("example.com/gpu", "1");

    #[test]
    fn scope_g1() {
        for app_only in [CAPS, CAPS_REMOVE, NNP, RETAIN, REMOVE] {
            let e = check(true, &[MEMORY, app_only]).err().unwrap_or_default();
            let rule = "applies to apps only and cannot be set for the pod";
            assert_eq!(e, format!("isolators[1]: \"{}\" {rule}", app_only.0));
            assert!(check(false, &[app_only]).is_ok());
        }
        let e = check(false, &[SYSCTL]).err().unwrap_or_default();
        let rule = "applies to the whole pod only and cannot be set for an app";
        assert_eq!(e, format!("isolators[0]: \"os/unix/sysctl\" {rule}"));
        assert_eq!(check(true, &[SYSCTL]), Ok(vec![]));
        for both in [MEMORY, SHARES, OOM, SELINUX, APPARMOR] {
            assert_eq!(check(true, &[both]), Ok(vec![]), "{}", both.0);
            assert_eq!(check(false, &[both]), Ok(vec![]), "{}", both.0);
        }
    }

    #[test]
    fn single_valued_isolators_appear_once() {
        #[rustfmt::skip]
        let cases = [(false, RETAIN), (false, REMOVE), (true, SYSCTL), (true, SHARES), (false, OOM), (true, SELINUX), (false, APPARMOR)];
        for (pod, single) in cases {
            let e = check(pod, &[single, MEMORY, single])
                .err()
                .unwrap_or_default();
            let noun = if pod { "pod" } else { "app" };
            let name = single.0;
            let want =
                format!("isolators[2]: duplicate isolator \"{name}\" (at most one per {noun})");
            assert_eq!(e, want);
        }
    }

    #[test]
    fn conflicting_sets() {
        let e = check(false, &[RETAIN, REMOVE]).err().unwrap_or_default();
        let want = r#"isolators[1]: "os/linux/seccomp-remove-set" cannot be combined with "os/linux/seccomp-retain-set" in one app"#;
        assert_eq!(e, want);
        // Decision 7: the spec forbids it, Go accepts it.
        let e = check(false, &[CAPS_REMOVE, CAPS]).err().unwrap_or_default();
        let want = r#"isolators[1]: "os/linux/capabilities-retain-set" cannot be combined with "os/linux/capabilities-remove-set" in one app"#;
        assert_eq!(e, want);
    }

    #[test]
    fn repeatable_isolators_warn() {
        let w = check(false, &[MEMORY, NNP, CAPS, MEMORY, NNP, CAPS]);
        let w = w.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.len(), 3, "{w:?}");
        let rule = "given more than once; only the last one is applied";
        assert_eq!(
            w[0],
            format!("isolators[3]: isolator \"resource/memory\" {rule}")
        );
        // Unknown isolators are only reported as unknown.
        assert!(check(false, &[GPU, GPU]).is_ok_and(|w| w.len() == 2));
    }

    #[test]
    fn request_above_limit_warns() {
        let over = ("resource/memory", r#"{"request": "2G", "limit": "1Gi"}"#);
        let w = check(true, &[over]).unwrap_or_else(|e| panic!("{e}"));
        let want =
            r#"isolators[0].value.request: request "2G" is above limit "1Gi"; the limit applies"#;
        assert_eq!(w, [want]);
        let cpu = ("resource/cpu", r#"{"request": "1", "limit": "1000m"}"#);
        assert_eq!(check(false, &[cpu]), Ok(vec![]));
    }

    #[test]
    fn last_of_a_kind_is_the_one_applied() {
        let text = list(&[MEMORY, SHARES, ("resource/memory", r#"{"limit": "2G"}"#)]);
        let d = decode_document::<Vec<Isolator>>(&text).unwrap_or_else(|e| panic!("{e}"));
        let last = IsolatorKind::Memory.last_in(&d.value);
        let Some(Isolator::Memory(m)) = last else {
            panic!("{last:?}")
        };
        assert_eq!(m.limit().map(Quantity::as_str), Some("2G"));
        assert_eq!(IsolatorKind::Cpu.last_in(&d.value), None);
    }
}
