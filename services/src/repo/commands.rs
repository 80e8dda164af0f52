//! `repo.bind`: executes on the repo's event store; a refusal becomes its wire rejection.

use chrono::Utc;
use gatehouse_events::envelope::{CommandAccepted, Rejection, RejectionCode};
use gatehouse_events::repo::{BindRepo, RepoEvent};
use serde_json::json;

use crate::api::read::{database, unavailable};
use crate::api::request::Parsed;
use crate::api::{infrastructure_rejection, App};
use crate::decision::lookup;
use crate::repo::{Repo, RepoCommand, RepoError};
use crate::store::{CommandError, CommandTarget};

/// `repo.bind`.
pub async fn bind(app: &App, parsed: Parsed<BindRepo>) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let policy_exists = {
        let client = app.pg.get().await.map_err(|e| unavailable(e.to_string()))?;
        lookup::policy_exists(&client, &command.policy_id)
            .await
            .map_err(database)?
    };
    let id = command.repo.clone();
    let cmd = RepoCommand::Bind {
        command,
        policy_exists,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    app.repos
        .execute(&context, &id, cmd)
        .await
        .map_err(repo_rejection)
}

impl CommandTarget for Repo {
    fn reply_detail(aggregate_id: &str, events: &[serde_json::Value]) -> serde_json::Value {
        let mut detail = json!({"repo": aggregate_id});
        for event in events
            .iter()
            .filter_map(|e| serde_json::from_value::<RepoEvent>(e.clone()).ok())
        {
            if let RepoEvent::RepoBound(b) = event {
                detail["policy_id"] = b.policy_id.into();
                detail["budget_ms"] = b.budget_ms.into();
                detail["auto_release"] = b.auto_release.into();
            }
        }
        detail
    }
}

/// The wire rejection for a failed repo command.
pub(crate) fn repo_rejection(error: CommandError<RepoError>) -> Rejection {
    let domain = match error {
        CommandError::Rejected(e) => e,
        other => return infrastructure_rejection(other),
    };
    let message = domain.to_string();
    match domain {
        RepoError::InvalidRepo(_) => {
            Rejection::new(RejectionCode::BadRequest, message).with_field("command.repo")
        }
        RepoError::InvalidBudget(_) => {
            Rejection::new(RejectionCode::BadRequest, message).with_field("command.budget_ms")
        }
        RepoError::PolicyNotFound(_) => {
            Rejection::new(RejectionCode::NotFound, message).with_field("command.policy_id")
        }
        RepoError::NotBound(_) => Rejection::new(RejectionCode::InvalidState, message),
    }
}
