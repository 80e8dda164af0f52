//! `gatehouse-bench`: what `gatehouse bench <scenario>` runs. Reads the same settings as
//! `gatehouse`, sets up tracing, runs one scenario.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use gatehouse::settings::Settings;
use gatehouse_bench::BenchArgs;

/// Benchmarks, measured side by side with the raw Postgres / JetStream limits.
#[derive(Debug, Parser)]
#[command(name = "gatehouse bench", version, about)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::from_env().context("cannot read settings")?;
    gatehouse_bench::run(settings, &cli.args).await
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
