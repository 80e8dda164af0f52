//! `gatehouse bench <scenario>`: being written (issue "Benchmarks side by side with the physical limits").

use clap::Args;

use crate::settings::Settings;

/// Arguments of `gatehouse bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The scenario to run.
    pub scenario: String,
    /// A seconds-long smoke run.
    #[arg(long)]
    pub quick: bool,
}

/// Runs one benchmark scenario.
pub async fn run(_settings: Settings, args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("unknown scenario `{}`", args.scenario)
}
