//! `gatehouse catalog ...`: being written (issue "Two-phase policy activation").

use clap::Subcommand;

use super::Cli;
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Import catalog changes from a JSON-lines file.
    Import { file: std::path::PathBuf },
}

pub async fn run(_cli: &Cli, cmd: &CatalogCommand, _client: &Client) -> anyhow::Result<()> {
    anyhow::bail!("not available yet: {cmd:?}")
}
