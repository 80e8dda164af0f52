//! Command execution: parse, execute on the aggregate's store, map the outcome to a reply.

use chrono::Utc;
use gatehouse_events::envelope::{CommandAccepted, Rejection, RejectionCode};
use gatehouse_events::policy::{CreatePolicy, DraftVersion, PolicyEvent, RestoreVersion};
use serde_json::json;

use super::request::{self, Parsed};
use crate::policy::{Policy, PolicyCommand, PolicyError};
use crate::store::{CommandError, CommandTarget, Store};

/// The stores of every aggregate that takes commands.
pub struct Commands {
    policies: Store<Policy>,
    pg: deadpool_postgres::Pool,
}

impl Commands {
    pub fn new(sqlx: sqlx::PgPool, pg: deadpool_postgres::Pool) -> Self {
        Commands {
            policies: Store::new(sqlx, pg.clone()),
            pg,
        }
    }

    /// Executes the command `name` (e.g. `policy.draft`) sent in `namespace`.
    pub async fn handle(
        &self,
        namespace: &str,
        name: &str,
        payload: &[u8],
    ) -> Result<CommandAccepted, Rejection> {
        match name {
            "policy.create" => {
                let Parsed { context, command } =
                    request::command::<CreatePolicy>(namespace, name, payload)?;
                let id = command.policy_id.clone();
                let cmd = PolicyCommand::Create {
                    policy_id: command.policy_id,
                    name: command.name,
                    description: command.description,
                    attributes: command.attributes,
                    actor: context.actor.clone(),
                    at: Utc::now(),
                };
                self.policies
                    .execute(&context, &id, cmd)
                    .await
                    .map_err(policy_rejection)
            }
            "policy.draft" => {
                let Parsed { context, command } =
                    request::command::<DraftVersion>(namespace, name, payload)?;
                let cmd = PolicyCommand::Draft {
                    rules: command.rules,
                    notes: command.notes,
                    author: context.actor.clone(),
                    at: Utc::now(),
                };
                self.policies
                    .execute(&context, &command.policy_id, cmd)
                    .await
                    .map_err(policy_rejection)
            }
            "policy.restore" => {
                let Parsed { context, command } =
                    request::command::<RestoreVersion>(namespace, name, payload)?;
                let cmd = PolicyCommand::Restore {
                    version: command.version,
                    notes: command.notes,
                    author: context.actor.clone(),
                    at: Utc::now(),
                };
                self.policies
                    .execute(&context, &command.policy_id, cmd)
                    .await
                    .map_err(policy_rejection)
            }
            run if run.starts_with("policy.") => {
                super::runs::handle(&self.policies, &self.pg, run, namespace, payload).await
            }
            other => Err(Rejection::new(
                RejectionCode::BadRequest,
                format!("unknown command `{other}`"),
            )),
        }
    }
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
                PolicyEvent::PolicyCreated(_) => {}
            }
        }
        detail
    }
}

/// The wire rejection for a failed policy command.
pub(super) fn policy_rejection(error: CommandError<PolicyError>) -> Rejection {
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

/// Rejections every aggregate shares: idempotency, conflicts, infrastructure.
pub fn infrastructure_rejection<E: std::error::Error>(error: CommandError<E>) -> Rejection {
    match error {
        CommandError::Rejected(e) => Rejection::new(RejectionCode::InvalidState, e.to_string()),
        CommandError::IdempotencyConflict(_) => {
            Rejection::new(RejectionCode::IdempotencyConflict, error.to_string())
                .with_field("command_id")
        }
        CommandError::Conflict => Rejection::new(RejectionCode::Conflict, error.to_string()),
        CommandError::Store(detail) => {
            tracing::error!(error.message = %detail, "event store failure");
            Rejection::new(
                RejectionCode::Unavailable,
                "the event store is unavailable; retry with the same command_id",
            )
        }
        CommandError::InvalidData(detail) => {
            tracing::warn!(error.message = %detail, "the database refused a value of a command");
            Rejection::new(
                RejectionCode::BadRequest,
                "the database refused a value of this command; sent again unchanged it fails again",
            )
        }
        CommandError::Unexpected(detail) => Rejection::new(
            RejectionCode::Internal,
            format!("event store error: {detail}"),
        ),
    }
}
