//! Policy commands: execute on the policy's event store, map a refusal to its wire rejection.

use chrono::Utc;
use gatehouse_events::envelope::{CommandAccepted, Rejection, RejectionCode};
use gatehouse_events::policy::{
    ConfigurePolicy, CreatePolicy, DraftVersion, PolicyEvent, RestoreVersion,
};
use serde_json::json;

use crate::api::request::Parsed;
use crate::api::{infrastructure_rejection, App};
use crate::policy::{Policy, PolicyCommand, PolicyError};
use crate::store::{CommandContext, CommandError, CommandTarget};

/// Executes `cmd` on policy `policy_id` and maps a refusal to its wire rejection.
pub(crate) async fn execute(
    app: &App,
    context: &CommandContext,
    policy_id: &str,
    cmd: PolicyCommand,
) -> Result<CommandAccepted, Rejection> {
    app.policies
        .execute(context, policy_id, cmd)
        .await
        .map_err(policy_rejection)
}

/// `policy.create`: a new policy with its attribute schema.
pub async fn create(app: &App, parsed: Parsed<CreatePolicy>) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let id = command.policy_id.clone();
    let cmd = PolicyCommand::Create {
        command,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, &id, cmd).await
}

/// `policy.draft`: a new immutable version with these rules.
pub async fn draft(app: &App, parsed: Parsed<DraftVersion>) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let id = command.policy_id.clone();
    let cmd = PolicyCommand::Draft {
        command,
        author: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, &id, cmd).await
}

/// `policy.configure`: change a policy's settings (four-eyes promotion).
pub async fn configure(
    app: &App,
    parsed: Parsed<ConfigurePolicy>,
) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let id = command.policy_id.clone();
    let cmd = PolicyCommand::Configure {
        command,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, &id, cmd).await
}

/// `policy.restore`: a new version with an earlier version's rules.
pub async fn restore(
    app: &App,
    parsed: Parsed<RestoreVersion>,
) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let id = command.policy_id.clone();
    let cmd = PolicyCommand::Restore {
        command,
        author: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, &id, cmd).await
}

impl CommandTarget for Policy {
    /// The facts a caller needs next: the new version, the run id, the active version.
    fn reply_detail(aggregate_id: &str, events: &[serde_json::Value]) -> serde_json::Value {
        let mut detail = json!({"policy_id": aggregate_id});
        for event in events
            .iter()
            .filter_map(|e| serde_json::from_value::<PolicyEvent>(e.clone()).ok())
        {
            match event {
                PolicyEvent::PolicyVersionDrafted(d) => detail["version"] = d.version.into(),
                PolicyEvent::RunPrepared(p) => {
                    detail["run_id"] = p.run_id.into();
                    detail["version"] = p.version.into();
                    detail["total_ready_snapshot"] = p.total_ready_snapshot.into();
                }
                PolicyEvent::RunSucceeded(e) => {
                    detail["run_id"] = e.run_id.into();
                    detail["status"] = "success".into();
                }
                PolicyEvent::RunFailed(e) => detail["run_id"] = e.run_id.into(),
                PolicyEvent::RunCancelled(e) => detail["run_id"] = e.run_id.into(),
                PolicyEvent::RunResumed(e) => {
                    detail["run_id"] = e.run_id.into();
                    detail["epoch"] = e.epoch.into();
                }
                PolicyEvent::PolicyPromoted(p) => {
                    detail["run_id"] = p.run_id.into();
                    detail["active_version"] = p.version.into();
                    detail["previous_version"] = p.previous_version.into();
                }
                PolicyEvent::PolicyConfigured(c) => {
                    detail["require_second_approver"] = c.require_second_approver.into()
                }
                PolicyEvent::PolicyCreated(_) => {}
            }
        }
        detail
    }
}

/// The wire rejection for a failed policy command.
pub(crate) fn policy_rejection(error: CommandError<PolicyError>) -> Rejection {
    let domain = match error {
        CommandError::Rejected(e) => e,
        other => return infrastructure_rejection(other),
    };
    let message = domain.to_string();
    match domain {
        PolicyError::AlreadyExists(_) => {
            Rejection::new(RejectionCode::AlreadyExists, message).with_field("command.policy_id")
        }
        PolicyError::NotFound => {
            Rejection::new(RejectionCode::NotFound, message).with_field("command.policy_id")
        }
        PolicyError::InvalidField(f) => {
            Rejection::new(RejectionCode::BadRequest, message).with_field(f.field)
        }
        PolicyError::InvalidRules(errors) => {
            let field = errors
                .first()
                .map(|e| format!("command.rules.{}", e.location));
            let details = errors
                .iter()
                .map(|e| serde_json::to_value(e).unwrap_or_default())
                .collect();
            let rejection =
                Rejection::new(RejectionCode::InvalidRules, message).with_details(details);
            match field {
                Some(f) => rejection.with_field(f),
                None => rejection,
            }
        }
        PolicyError::VersionNotFound(_) => {
            Rejection::new(RejectionCode::VersionNotFound, message).with_field("command.version")
        }
        PolicyError::SettingUnchanged(_) => Rejection::new(RejectionCode::Unchanged, message)
            .with_field("command.require_second_approver"),
        PolicyError::RestoreUnchanged { .. } => {
            Rejection::new(RejectionCode::Unchanged, message).with_field("command.version")
        }
        PolicyError::RunAlreadyRunning(_) => {
            Rejection::new(RejectionCode::AlreadyRunning, message).with_field("command.policy_id")
        }
        PolicyError::VersionAlreadyActive(_) => {
            Rejection::new(RejectionCode::InvalidState, message)
        }
        PolicyError::RunAlreadyPromoted { .. } => {
            Rejection::new(RejectionCode::InvalidState, message).with_field("command.run_id")
        }
        PolicyError::RunNotFound(_) => {
            Rejection::new(RejectionCode::NotFound, message).with_field("command.run_id")
        }
        PolicyError::PromoteBlocked(reasons) => {
            let details = reasons
                .iter()
                .map(|r| serde_json::to_value(r).unwrap_or_default())
                .collect();
            Rejection::new(RejectionCode::NotReady, message).with_details(details)
        }
        PolicyError::ApprovalRequired { .. } => {
            Rejection::new(RejectionCode::ApprovalRequired, message).with_field("command.run_id")
        }
        PolicyError::InvalidThreshold(_) => Rejection::new(RejectionCode::BadRequest, message)
            .with_field("command.coverage_threshold"),
        PolicyError::InvalidBatchSize(_) => {
            Rejection::new(RejectionCode::BadRequest, message).with_field("command.batch_size")
        }
        PolicyError::RunNotRunning { .. }
        | PolicyError::RunNotResumable { .. }
        | PolicyError::StaleEpoch { .. }
        | PolicyError::RunIncomplete { .. }
        | PolicyError::InconsistentCounters(_) => {
            Rejection::new(RejectionCode::InvalidState, message)
        }
    }
}
