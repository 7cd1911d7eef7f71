//! `appcctl image …`: the store, as `rkt image` users know it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::GlobalArgs;
use super::output::{Format, ago, human_size, print_table, rfc3339};
use crate::store::{
    CopyOptions, ImageRecord, Store, StoreError, collect_garbage, copy_image, export_image, now,
    remove_image, verify_image,
};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an ACI from a directory holding `manifest` and `rootfs/` (like `actool build`).
    Build(super::image_build::BuildArgs),
    /// List the images in the store.
    List(ListArgs),
    /// Remove images from the store.
    Rm(RmArgs),
    /// Remove images unused for longer than the grace period, and store leftovers.
    Gc(GcArgs),
    /// Print an image's manifest.
    CatManifest(CatManifestArgs),
    /// Write an image's uncompressed ACI; its sha512sum is the image ID.
    Export(ExportArgs),
    /// Re-hash stored images and report any whose content no longer matches its ID.
    Verify(VerifyArgs),
    /// Copy one image's tree (no dependencies, no whitelist) into a new directory.
    Extract(CopyArgs),
    /// Copy an image as an app sees it (dependencies and pathWhitelist applied) into a new directory.
    Render(CopyArgs),
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Target directory; must not exist or be empty. (Not named `dir`: that is the global
    /// `--dir`, and clap would let one overwrite the other.)
    #[arg(value_name = "DIR")]
    pub target: PathBuf,
    /// Write only the root filesystem's contents, without `manifest` and the `rootfs/` level.
    #[arg(long)]
    pub rootfs_only: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Show full image IDs.
    #[arg(long)]
    pub full: bool,
    /// Leave out the header line.
    #[arg(long)]
    pub no_legend: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Image IDs, ID prefixes or name[:version][,label=value].
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep images used within this long (seconds, or with s, m, h, d).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub grace_period: u64,
}

#[derive(Debug, Args)]
pub struct CatManifestArgs {
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Print the canonical, indented form instead of the stored bytes.
    #[arg(long)]
    pub pretty_print: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(value_name = "IMAGE")]
    pub image: String,
    #[arg(value_name = "OUT.aci")]
    pub out: PathBuf,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Images to check (all when none are given).
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
}

pub fn parse_duration(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b's') => (&s[..s.len() - 1], 1),
        Some(b'm') => (&s[..s.len() - 1], 60),
        Some(b'h') => (&s[..s.len() - 1], 3600),
        Some(b'd') => (&s[..s.len() - 1], 86_400),
        _ => (s, 1u64),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a duration (like 30s, 10m, 24h, 7d)"))
}

pub fn run(g: &GlobalArgs, cmd: &ImageCommand) -> anyhow::Result<ExitCode> {
    if let ImageCommand::Build(args) = cmd {
        return super::image_build::run(args);
    }
    let store = Store::open(&g.dir)?;
    match cmd {
        ImageCommand::Build(_) => unreachable!("handled above"),
        ImageCommand::List(a) => list(&store, a),
        ImageCommand::Rm(a) => rm(g, &store, a),
        ImageCommand::Gc(a) => gc(g, &store, a),
        ImageCommand::CatManifest(a) => cat_manifest(&store, a),
        ImageCommand::Export(a) => export(&store, a),
        ImageCommand::Verify(a) => verify(&store, a),
        ImageCommand::Extract(a) => copy(&store, a, false),
        ImageCommand::Render(a) => copy(&store, a, true),
    }
}

fn labels_text(r: &ImageRecord) -> String {
    let others: Vec<String> = r
        .labels
        .iter()
        .filter(|l| l.name.as_str() != "version")
        .map(|l| format!("{}={}", l.name, l.value))
        .collect();
    others.join(",")
}

fn list(store: &Store, a: &ListArgs) -> anyhow::Result<ExitCode> {
    let images = store.index().list()?;
    if a.format == Format::Json {
        let out: Vec<serde_json::Value> = images.iter().map(image_json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = now();
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|r| {
            let id = if a.full {
                r.id.to_string()
            } else {
                r.id.as_str().chars().take(7 + 32).collect()
            };
            let version = r.labels.get("version").unwrap_or("").to_owned();
            vec![
                id,
                r.name.to_string(),
                version,
                labels_text(r),
                ago(r.import_time, now),
                ago(r.last_used, now),
                human_size(r.size),
            ]
        })
        .collect();
    let header = [
        "ID",
        "NAME",
        "VERSION",
        "LABELS",
        "IMPORTED",
        "LAST USED",
        "SIZE",
    ];
    if a.no_legend {
        print_table(&[], &rows);
    } else {
        print_table(&header, &rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn image_json(r: &ImageRecord) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "name": r.name,
        "labels": r.labels,
        "annotations": r.manifest.annotations,
        "size": r.size,
        "importTime": rfc3339(r.import_time),
        "lastUsed": rfc3339(r.last_used),
        "source": r.source,
    })
}

fn rm(g: &GlobalArgs, store: &Store, a: &RmArgs) -> anyhow::Result<ExitCode> {
    let in_use = images_in_use(g, store)?;
    let mut failed = false;
    for query in &a.images {
        let outcome = store
            .resolve(query)
            .map_err(anyhow::Error::from)
            .and_then(|r| {
                if let Some(pod) = in_use.get(&r.id) {
                    anyhow::bail!("image {query} is used by pod {pod}; remove the pod first");
                }
                remove_image(store, &r.id)?;
                Ok(r.id)
            });
        match outcome {
            Ok(id) => println!("{id}"),
            Err(e) => {
                eprintln!("appcctl: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(super::EXIT_INTERNAL)
    } else {
        ExitCode::SUCCESS
    })
}

/// Images of prepared and running pods, which `rm` refuses and `gc` keeps.
fn images_in_use(
    g: &GlobalArgs,
    store: &Store,
) -> anyhow::Result<std::collections::BTreeMap<crate::schema::ImageId, String>> {
    let pods = crate::pod::PodStore::open(&g.dir)?;
    Ok(crate::exec::launch::images_in_use(store, &pods)?)
}

fn gc(g: &GlobalArgs, store: &Store, a: &GcArgs) -> anyhow::Result<ExitCode> {
    let keep = images_in_use(g, store)?.into_keys().collect();
    let report = collect_garbage(store, a.grace_period, now(), &keep)?;
    for id in &report.images {
        println!("removed {id}");
    }
    eprintln!(
        "gc: {} images, {} leftovers, {} blobs ({}) removed",
        report.images.len(),
        report.leftovers,
        report.blobs,
        human_size(report.blob_bytes)
    );
    Ok(ExitCode::SUCCESS)
}

fn cat_manifest(store: &Store, a: &CatManifestArgs) -> anyhow::Result<ExitCode> {
    let r = store.resolve(&a.image)?;
    if a.pretty_print {
        println!("{}", r.manifest.to_canonical_json());
    } else {
        print!("{}", r.manifest_text);
    }
    Ok(ExitCode::SUCCESS)
}

fn export(store: &Store, a: &ExportArgs) -> anyhow::Result<ExitCode> {
    let r = store.resolve(&a.image)?;
    if a.out.exists() && !a.overwrite {
        bail!(
            "{}: refusing to overwrite an existing file (use --overwrite)",
            a.out.display()
        );
    }
    let tmp = temp_beside(&a.out)?;
    let result = (|| -> anyhow::Result<()> {
        let mut out = BufWriter::new(
            File::create_new(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
        );
        export_image(store, &r.id, &mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &a.out).with_context(|| format!("cannot write {}", a.out.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp); // best effort: never leave a half-written export
    }
    result?;
    println!("{}", r.id);
    Ok(ExitCode::SUCCESS)
}

/// A temporary name in the destination's directory, so the final rename stays on one filesystem.
fn temp_beside(out: &Path) -> anyhow::Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("{}: not a file name", out.display()))?;
    let tmp = format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id());
    Ok(out.with_file_name(tmp))
}

fn copy(store: &Store, a: &CopyArgs, with_dependencies: bool) -> anyhow::Result<ExitCode> {
    let r = store.resolve(&a.image)?;
    let opts = CopyOptions {
        rootfs_only: a.rootfs_only,
        with_dependencies,
    };
    copy_image(store, &r, &a.target, opts)?;
    Ok(ExitCode::SUCCESS)
}

fn verify(store: &Store, a: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let records = if a.images.is_empty() {
        store.index().list()?
    } else {
        a.images
            .iter()
            .map(|q| store.resolve(q))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut bad = 0;
    for r in &records {
        match verify_image(store, &r.id) {
            Ok(_) => println!("{}: ok", r.id),
            Err(StoreError::NotFound { .. }) => println!("{}: removed meanwhile", r.id),
            Err(e) => {
                eprintln!("{}: {e}", r.id);
                bad += 1;
            }
        }
    }
    if bad > 0 {
        let _ = std::io::stdout().flush();
        bail!("{bad} of {} images failed verification", records.len());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(30));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(parse_duration("soon").is_err());
    }
}
