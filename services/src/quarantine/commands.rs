//! `quarantine.release` and `quarantine.reject`: resolve the item's open case once.

use chrono::Utc;
use gatehouse_events::artifact;
use gatehouse_events::catalog::is_valid_item_id;
use gatehouse_events::envelope::{CommandAccepted, Rejection};
use gatehouse_events::quarantine::ResolveCase;
use gatehouse_events::repo::is_valid_repo;

use crate::api::request::{bad_request, Parsed};
use crate::api::App;
use crate::artifact::{artifact_rejection, ArtifactCommand, Resolution};

/// `quarantine.release`.
pub async fn release(app: &App, parsed: Parsed<ResolveCase>) -> Result<CommandAccepted, Rejection> {
    resolve(app, parsed, Resolution::Release).await
}

/// `quarantine.reject`.
pub async fn reject(app: &App, parsed: Parsed<ResolveCase>) -> Result<CommandAccepted, Rejection> {
    resolve(app, parsed, Resolution::Reject).await
}

async fn resolve(
    app: &App,
    parsed: Parsed<ResolveCase>,
    resolution: Resolution,
) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    if !is_valid_repo(&command.repo) {
        return Err(
            bad_request(format!("`{}` is not a repo name", command.repo))
                .with_field("command.repo"),
        );
    }
    if !is_valid_item_id(&command.item_id) {
        return Err(
            bad_request(format!("`{}` is not an item id", command.item_id))
                .with_field("command.item_id"),
        );
    }
    let id = artifact::aggregate_id(&command.repo, &command.item_id);
    let cmd = ArtifactCommand::Resolve {
        repo: command.repo,
        item_id: command.item_id,
        resolution,
        reason: command.reason,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    app.artifacts
        .execute(&context, &id, cmd)
        .await
        .map_err(artifact_rejection)
}
