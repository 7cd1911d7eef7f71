//! `appcctl image build` (placeholder until the builder lands; replaced by its owner).
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    pub dir: std::path::PathBuf,
    pub out: std::path::PathBuf,
}

pub fn run(_args: &BuildArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("image build is not available in this build")
}
