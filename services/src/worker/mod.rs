//! Evaluation workers: being written (issue "Two-phase policy activation").

use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
use crate::RoleError;

/// Runs an evaluation worker until `shutdown`.
pub async fn run(_settings: Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    shutdown.cancelled().await;
    Ok(())
}
