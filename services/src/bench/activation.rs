//! Scenario `activation`: being written.

use futures::future::BoxFuture;

use super::figures::Spec;
use super::Bench;

/// Every figure of the scenario.
pub const SPECS: &[Spec] = &[];

/// Runs the scenario (the registry's entry point).
pub fn run(_bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async { anyhow::bail!("being written") })
}
