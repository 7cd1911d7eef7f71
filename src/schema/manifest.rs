//! The image manifest (spec/aci.md) and the pod manifest (spec/pods.md), plus detection of which
//! one a document is.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::app::{App, decode_string_map, is_false};
use super::decode::{
    Cx, Decode, Decoded, JsonPath, Obj, check_unique, decode_document, decode_slots, decode_value,
    parse_json,
};
use super::error::SchemaErrors;
use super::isolator::{Isolator, IsolatorScope, check_isolator_slots};
use super::labels::{Annotations, Labels};
use super::names::{AcIdentifier, AcKind, AcName};
use super::scalars::{AbsolutePath, AcVersion, ImageId, VersionSupport};
use super::volume::{ExposedPort, Mount, Volume};

/// Zero-sized `acKind` fields: a manifest struct cannot carry the wrong kind.
macro_rules! kind_tag {
    ($t:ident, $kind:literal) => {
        #[doc = concat!("The `acKind` of this manifest type: always `", $kind, "`.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $t;

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($kind)
            }
        }
    };
}

kind_tag!(ImageManifestKind, "ImageManifest");
kind_tag!(PodManifestKind, "PodManifest");

/// A dependency of an image, resolved by name and labels (spec D1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub image_name: AcIdentifier,
    #[serde(rename = "imageID", skip_serializing_if = "Option::is_none")]
    pub image_id: Option<ImageId>,
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Expected size in bytes of the dependency's uncompressed tar (a guard against endless data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl Decode for Dependency {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let image_name = o.req("imageName", cx);
        let image_id = o.opt("imageID", cx);
        let labels = o.opt("labels", cx).unwrap_or_default();
        let size = o.opt("size", cx);
        o.finish(cx);
        Some(Dependency {
            image_name: image_name?,
            image_id,
            labels,
            size,
        })
    }
}

/// The manifest inside every ACI.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub ac_kind: ImageManifestKind,
    pub ac_version: AcVersion,
    pub name: AcIdentifier,
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path_whitelist: Vec<AbsolutePath>,
    #[serde(skip_serializing_if = "Annotations::is_empty")]
    pub annotations: Annotations,
}

impl ImageManifest {
    /// A minimal manifest for `name`, written against the current spec version.
    pub fn new(name: AcIdentifier) -> Self {
        ImageManifest {
            ac_kind: Default::default(),
            ac_version: AcVersion::current(),
            name,
            labels: Labels::default(),
            app: None,
            dependencies: Vec::new(),
            path_whitelist: Vec::new(),
            annotations: Annotations::default(),
        }
    }

    /// Parses and validates an image manifest.
    pub fn parse(text: &str) -> Result<Decoded<Self>, SchemaErrors> {
        decode_document(text)
    }

    /// The canonical JSON form.
    pub fn to_canonical_json(&self) -> String {
        canonical_json(self)
    }
}

impl Decode for ImageManifest {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        check_kind(&mut o, AcKind::ImageManifest, cx);
        let ac_version = decode_version(&mut o, true, cx);
        let name = o.req("name", cx);
        let labels = o.opt("labels", cx).unwrap_or_default();
        let app = o.opt("app", cx);
        let dependencies = o.opt("dependencies", cx).unwrap_or_default();
        let path_whitelist = o.opt("pathWhitelist", cx).unwrap_or_default();
        let annotations = o.opt("annotations", cx).unwrap_or_default();
        o.finish(cx);
        Some(ImageManifest {
            ac_kind: Default::default(),
            ac_version: ac_version?,
            name: name?,
            labels,
            app,
            dependencies,
            path_whitelist,
            annotations,
        })
    }
}

/// Reads `acKind` and insists on `want`.
fn check_kind(o: &mut Obj<'_>, want: AcKind, cx: &mut Cx) {
    let path = o.path().key("acKind");
    if let Some(kind) = o.req::<AcKind>("acKind", cx)
        && kind != want
    {
        cx.rule(
            &path,
            format!("expected {want:?}, this document is a {kind}"),
        );
    }
}

/// Reads `acVersion`, applying policy decision 15 (and 10: a pod manifest may omit it).
fn decode_version(o: &mut Obj<'_>, required: bool, cx: &mut Cx) -> Option<AcVersion> {
    let path = o.path().key("acVersion");
    let version = if required || o.has("acVersion") {
        o.req::<AcVersion>("acVersion", cx)?
    } else {
        cx.warn(&path, format!("missing; read as {}", AcVersion::current()));
        return Some(AcVersion::current());
    };
    match version.support() {
        VersionSupport::Supported => {}
        VersionSupport::Older => cx.warn(
            &path,
            format!("{version} predates 0.8.0; fields renamed since then are not read"),
        ),
        VersionSupport::Newer => cx.warn(
            &path,
            format!("{version} is newer than the supported 0.8.11; unknown fields are ignored"),
        ),
        VersionSupport::OtherMajor => {
            cx.rule(
                &path,
                format!(
                    "{version} is not a 0.x version; only spec 0.x (up to 0.8.11) is supported"
                ),
            );
        }
    }
    Some(version)
}

/// `apps[].image` of a pod manifest: which image an app runs. Without `id` it is a template entry
/// that must be resolved by name and labels before the pod runs (spec P5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeImage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<AcIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<ImageId>,
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

impl Decode for RuntimeImage {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let name = o.opt("name", cx);
        let id = o.opt("id", cx);
        let labels = o.opt("labels", cx).unwrap_or_default();
        o.finish(cx);
        if name.is_none() && id.is_none() {
            cx.rule(path, "an app image needs an id or a name to resolve");
        }
        Some(RuntimeImage { name, id, labels })
    }
}

/// `apps[]`: one app of a pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeApp {
    pub name: AcName,
    pub image: RuntimeImage,
    /// Replaces the image's `app` entirely when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    #[serde(rename = "readOnlyRootFS", skip_serializing_if = "is_false")]
    pub read_only_root_fs: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(skip_serializing_if = "Annotations::is_empty")]
    pub annotations: Annotations,
}

impl Decode for RuntimeApp {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let name = o.req("name", cx);
        let image = o.req("image", cx);
        let app = o.opt("app", cx);
        let read_only_root_fs = o.opt("readOnlyRootFS", cx).unwrap_or(false);
        let mounts: Vec<Mount> = o.opt("mounts", cx).unwrap_or_default();
        let annotations = o.opt("annotations", cx).unwrap_or_default();
        o.finish(cx);
        check_unique(&mounts, &path.key("mounts"), cx, "mount path", |m| {
            m.path.clone()
        });
        Some(RuntimeApp {
            name: name?,
            image: image?,
            app,
            read_only_root_fs,
            mounts,
            annotations,
        })
    }
}

/// The pod manifest: a template (apps named by name + labels) or, once every app has an image ID,
/// a runtime manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodManifest {
    pub ac_kind: PodManifestKind,
    pub ac_version: AcVersion,
    pub apps: Vec<RuntimeApp>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub isolators: Vec<Isolator>,
    /// Always written, even when empty: the ACE validator compares the metadata service's
    /// `pod/annotations` (`[]`) with this field and treats a missing one as a mismatch.
    pub annotations: Annotations,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ExposedPort>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_labels: BTreeMap<String, String>,
}

impl PodManifest {
    /// An empty pod manifest written against the current spec version.
    pub fn new() -> Self {
        PodManifest {
            ac_kind: Default::default(),
            ac_version: AcVersion::current(),
            apps: Vec::new(),
            volumes: Vec::new(),
            isolators: Vec::new(),
            annotations: Annotations::default(),
            ports: Vec::new(),
            user_annotations: BTreeMap::new(),
            user_labels: BTreeMap::new(),
        }
    }

    /// Parses and validates a pod manifest (template or runtime).
    pub fn parse(text: &str) -> Result<Decoded<Self>, SchemaErrors> {
        decode_document(text)
    }

    /// The apps whose image is not yet pinned by a full image ID: a manifest with none is
    /// reified as far as images go (spec P5).
    pub fn unresolved_apps(&self) -> impl Iterator<Item = &RuntimeApp> {
        self.apps
            .iter()
            .filter(|a| !a.image.id.as_ref().is_some_and(ImageId::is_full))
    }

    pub fn volume(&self, name: &AcName) -> Option<&Volume> {
        self.volumes.iter().find(|v| &v.name == name)
    }

    /// The canonical JSON form.
    pub fn to_canonical_json(&self) -> String {
        canonical_json(self)
    }
}

impl Default for PodManifest {
    fn default() -> Self {
        Self::new()
    }
}

impl Decode for PodManifest {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        check_kind(&mut o, AcKind::PodManifest, cx);
        let ac_version = decode_version(&mut o, false, cx);
        let apps: Option<Vec<RuntimeApp>> = o.req("apps", cx);
        let volumes: Vec<Volume> = o.opt("volumes", cx).unwrap_or_default();
        let isolators: Vec<Option<Isolator>> = o
            .opt_with("isolators", cx, decode_slots)
            .unwrap_or_default();
        let annotations = o.opt("annotations", cx).unwrap_or_default();
        let ports: Vec<ExposedPort> = o.opt("ports", cx).unwrap_or_default();
        let user_annotations = o
            .opt_with("userAnnotations", cx, decode_string_map)
            .unwrap_or_default();
        let user_labels = o
            .opt_with("userLabels", cx, decode_string_map)
            .unwrap_or_default();
        o.finish(cx);
        let apps = apps?;
        check_pod(&apps, &volumes, path, cx);
        let slots: Vec<Option<&Isolator>> = isolators.iter().map(Option::as_ref).collect();
        check_isolator_slots(&slots, IsolatorScope::Pod, &path.key("isolators"), cx);
        let isolators: Vec<Isolator> = isolators.into_iter().flatten().collect();
        check_unique(&ports, &path.key("ports"), cx, "port name", |p| {
            p.name.clone()
        });
        Some(PodManifest {
            ac_kind: Default::default(),
            ac_version: ac_version?,
            apps,
            volumes,
            isolators,
            annotations,
            ports,
            user_annotations,
            user_labels,
        })
    }
}

/// Cross-field rules: unique app and volume names; every mount names a declared volume.
fn check_pod(apps: &[RuntimeApp], volumes: &[Volume], path: &JsonPath, cx: &mut Cx) {
    check_unique(apps, &path.key("apps"), cx, "app name", |a| a.name.clone());
    check_unique(volumes, &path.key("volumes"), cx, "volume name", |v| {
        v.name.clone()
    });
    for (i, app) in apps.iter().enumerate() {
        for (j, m) in app.mounts.iter().enumerate() {
            if m.app_volume.is_none() && !volumes.iter().any(|v| v.name == m.volume) {
                let at = path
                    .key("apps")
                    .index(i)
                    .key("mounts")
                    .index(j)
                    .key("volume");
                cx.rule(
                    &at,
                    format!("volume {:?} is not declared in volumes", m.volume.as_str()),
                );
            }
        }
    }
}

/// Either manifest, as found in a document.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // a short-lived parse result: boxing would buy nothing
pub enum Manifest {
    Image(ImageManifest),
    Pod(PodManifest),
}

impl Manifest {
    /// Parses a manifest of either kind, chosen by its `acKind`.
    pub fn parse(text: &str) -> Result<Decoded<Self>, SchemaErrors> {
        let value = parse_json(text)?;
        let kind = value
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case("acKind")))
            .and_then(|(_, v)| v.as_str());
        match kind {
            Some("PodManifest") => {
                decode_value::<PodManifest>(&value).map(|d| d.map(Manifest::Pod))
            }
            // Anything else is checked as an image manifest, which reports the bad acKind.
            _ => decode_value::<ImageManifest>(&value).map(|d| d.map(Manifest::Image)),
        }
    }

    pub fn kind(&self) -> AcKind {
        match self {
            Manifest::Image(_) => AcKind::ImageManifest,
            Manifest::Pod(_) => AcKind::PodManifest,
        }
    }
}

impl<T> Decoded<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Decoded<U> {
        Decoded {
            value: f(self.value),
            warnings: self.warnings,
        }
    }
}

fn canonical_json<T: Serialize>(value: &T) -> String {
    // Serializing plain structs of validated newtypes cannot fail: no maps with non-string keys.
    serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| unreachable!("manifest serialization failed: {e}"))
}

/// Lets the manifests be read with plain serde (e.g. `serde_json::from_str`) through the same
/// decoder; the first problem becomes the serde error.
macro_rules! deserialize_via_decode {
    ($t:ty) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = Value::deserialize(d)?;
                decode_value::<$t>(&value)
                    .map(|d| d.value)
                    .map_err(|errors| {
                        let first = errors
                            .iter()
                            .next()
                            .map(ToString::to_string)
                            .unwrap_or_default();
                        serde::de::Error::custom(first)
                    })
            }
        }
    };
}

deserialize_via_decode!(ImageManifest);
deserialize_via_decode!(PodManifest);
