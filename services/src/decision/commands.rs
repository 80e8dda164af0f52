//! `decision.evaluate`: the bound policy's active version decides within the repo's budget, and
//! the decision (with the case it opens or joins) is recorded on the item's `artifact`
//! aggregate. Anything that keeps the policy from deciding fails closed.

use std::time::Duration;

use chrono::Utc;
use gatehouse_events::artifact::{self, DecisionRecorded};
use gatehouse_events::catalog::is_valid_item_id;
use gatehouse_events::decision::{
    is_valid_digest, DecisionOutcome, DecisionReply, EvaluateDecision, MAX_DIGESTS,
};
use gatehouse_events::envelope::{CommandAccepted, Rejection, RejectionCode};
use gatehouse_events::repo::{is_valid_repo, PolicyTimedOut, RepoBound, TIMEOUT_COMMAND_TYPE};
use serde_json::json;

use super::evaluate::{evaluate as decide, input_attributes, Evaluated};
use super::lookup;
use crate::api::read::{database, internal, unavailable};
use crate::api::request::{bad_request, Parsed};
use crate::api::App;
use crate::artifact::{artifact_rejection, ArtifactCommand};
use crate::repo::RepoCommand;
use crate::store::CommandContext;
use crate::worker::delivery::WorkError;

/// `decision.evaluate`.
pub async fn evaluate(
    app: &App,
    parsed: Parsed<EvaluateDecision>,
) -> Result<DecisionReply, Rejection> {
    let Parsed { context, command } = parsed;
    check(&command)?;
    // A retry of a recorded decision is answered with it, not evaluated again.
    if let Some(done) = app
        .artifacts
        .already_done(&context)
        .await
        .map_err(artifact_rejection)?
    {
        return reply(app, done).await;
    }
    let client = app.pg.get().await.map_err(|e| unavailable(e.to_string()))?;
    let binding = lookup::binding(&client, &command.repo)
        .await
        .map_err(database)?
        .ok_or_else(|| {
            policy_unavailable(format!(
                "repo `{}` is bound to no policy: failing closed",
                command.repo
            ))
            .with_field("command.repo")
        })?;
    let budget = Duration::from_millis(u64::from(binding.budget_ms));
    let evaluated =
        tokio::time::timeout(budget, within_budget(app, &client, &binding, &command)).await;
    drop(client);
    let (version, evaluated) = match evaluated {
        Ok(outcome) => outcome?,
        Err(_elapsed) => {
            record_timeout(app, &context, &binding, &command).await;
            return Err(timeout(&binding, &command));
        }
    };
    let decision = DecisionRecorded {
        repo: command.repo.clone(),
        item_id: command.item_id.clone(),
        action: command.action,
        decision: evaluated.decision,
        rule_id: evaluated.rule_id,
        reason: evaluated.reason,
        policy_id: binding.policy_id.clone(),
        version,
        input_digest: evaluated.input_digest,
        digests: command.digests.clone(),
        decided_by: context.actor.clone(),
        decided_at: Utc::now(),
        attributes: Some(evaluated.attributes.clone()),
    };
    let id = artifact::aggregate_id(&command.repo, &command.item_id);
    let done = app
        .artifacts
        .execute(
            &context,
            &id,
            ArtifactCommand::Decide {
                decision,
                attributes: evaluated.attributes,
            },
        )
        .await
        .map_err(artifact_rejection)?;
    reply(app, done).await
}

/// The request's own checks: names, digests.
fn check(command: &EvaluateDecision) -> Result<(), Rejection> {
    if !is_valid_repo(&command.repo) {
        return Err(bad_request(format!(
            "`{}` is not a repo name ([a-z0-9][a-z0-9_-]*, at most 64 characters)",
            command.repo
        ))
        .with_field("command.repo"));
    }
    if !is_valid_item_id(&command.item_id) {
        return Err(bad_request(format!(
            "`{}` is not an item id ([A-Za-z0-9][A-Za-z0-9_:-]*, at most 128 characters)",
            command.item_id
        ))
        .with_field("command.item_id"));
    }
    if command.digests.len() > MAX_DIGESTS {
        return Err(
            bad_request(format!("at most {MAX_DIGESTS} digests are accepted"))
                .with_field("command.digests"),
        );
    }
    if let Some((i, d)) = command
        .digests
        .iter()
        .enumerate()
        .find(|(_, d)| !is_valid_digest(d))
    {
        return Err(bad_request(format!(
            "`{d}` is not a digest (<algorithm>:<hex>, e.g. sha256:...)"
        ))
        .with_field(format!("command.digests[{i}]")));
    }
    Ok(())
}

/// Everything the budget covers: the active version, the compiled rules, the attributes and the
/// evaluation (on a blocking thread, so the budget holds however long a rule runs).
async fn within_budget(
    app: &App,
    client: &deadpool_postgres::ClientWrapper,
    binding: &RepoBound,
    command: &EvaluateDecision,
) -> Result<(u32, Evaluated), Rejection> {
    let policy_id = &binding.policy_id;
    let version = lookup::active_version(client, policy_id)
        .await
        .map_err(database)?
        .ok_or_else(|| {
            policy_unavailable(format!(
                "policy `{policy_id}` (bound to repo `{}`) has no active version: failing closed",
                command.repo
            ))
        })?;
    let compiled = app
        .compiled
        .get(&app.pg, policy_id, version)
        .await
        .map_err(|e| match e {
            WorkError::Fatal(why) => policy_unavailable(format!("{why}: failing closed")),
            WorkError::Transient(why) => unavailable(why),
        })?;
    let attributes = match &command.attributes {
        Some(attributes) => attributes.clone(),
        None => lookup::catalog_attributes(client, &command.item_id)
            .await
            .map_err(database)?
            .ok_or_else(|| {
                Rejection::new(
                    RejectionCode::NotFound,
                    format!(
                        "item `{}` is not a ready item of the catalog and the request carries no attributes",
                        command.item_id
                    ),
                )
                .with_field("command.attributes")
            })?,
    };
    let attributes = input_attributes(&command.repo, command.action, attributes);
    let (repo, item_id, action) = (
        command.repo.clone(),
        command.item_id.clone(),
        command.action,
    );
    let evaluated =
        tokio::task::spawn_blocking(move || decide(&compiled, &repo, &item_id, action, attributes))
            .await
            .map_err(|e| internal(format!("the evaluation task failed: {e}")))?
            .map_err(|why| {
                policy_unavailable(format!(
                    "policy `{policy_id}` version {version} cannot decide: {why}; failing closed"
                ))
            })?;
    Ok((version, evaluated))
}

/// Records the `policy.timeout` audit record (`PolicyTimedOut` on the repo). Its own command id:
/// a retry of the request is evaluated again.
async fn record_timeout(
    app: &App,
    context: &CommandContext,
    binding: &RepoBound,
    command: &EvaluateDecision,
) {
    let command_id = format!("timeout:{}", uuid::Uuid::now_v7());
    let ctx = CommandContext {
        request_hash: format!("{}{command_id}", crate::api::request::REQUEST_HASH_V2),
        legacy_request_hash: String::new(),
        command_id,
        actor: context.actor.clone(),
        delegated_by: context.delegated_by.clone(),
        correlation_id: context.correlation_id.clone(),
        causation_id: context.command_id.clone(),
        command_type: TIMEOUT_COMMAND_TYPE.to_owned(),
    };
    let record = PolicyTimedOut {
        repo: command.repo.clone(),
        item_id: command.item_id.clone(),
        action: command.action,
        policy_id: binding.policy_id.clone(),
        budget_ms: binding.budget_ms,
        request_command_id: context.command_id.clone(),
        timed_out_at: Utc::now(),
    };
    if let Err(e) = app
        .repos
        .execute(&ctx, &command.repo, RepoCommand::RecordTimeout(record))
        .await
    {
        tracing::error!(error.message = %e, repo = command.repo, item_id = command.item_id,
            "could not record a policy timeout");
    }
}

fn timeout(binding: &RepoBound, command: &EvaluateDecision) -> Rejection {
    Rejection::new(
        RejectionCode::PolicyTimeout,
        format!(
            "policy `{}` did not decide on `{}` within the budget of {} ms: failing closed",
            binding.policy_id, command.item_id, binding.budget_ms
        ),
    )
    .with_details(vec![json!({
        "fail_closed": true,
        "budget_ms": binding.budget_ms,
        "repo": command.repo,
        "item_id": command.item_id,
        "action": command.action,
    })])
}

pub(crate) fn policy_unavailable(message: String) -> Rejection {
    Rejection::new(RejectionCode::PolicyUnavailable, message)
}

/// The reply of a recorded decision (also of a retry answered from the command log).
async fn reply(app: &App, done: CommandAccepted) -> Result<DecisionReply, Rejection> {
    let decision: DecisionRecorded = serde_json::from_value(done.detail["decision"].clone())
        .map_err(|e| {
            Rejection::new(
                RejectionCode::IdempotencyConflict,
                format!(
                    "command_id `{}` was used for another command: {e}",
                    done.command_id
                ),
            )
            .with_field("command_id")
        })?;
    let client = app.pg.get().await.map_err(|e| unavailable(e.to_string()))?;
    let case = lookup::case_state(&client, &decision.repo, &decision.item_id)
        .await
        .map_err(database)?
        .map(|c| c.status);
    let outcome = DecisionOutcome {
        repo: decision.repo,
        item_id: decision.item_id,
        action: decision.action,
        decision: decision.decision,
        rule_id: decision.rule_id,
        reason: decision.reason,
        policy_id: decision.policy_id,
        version: decision.version,
        input_digest: decision.input_digest,
        case,
        case_opened: done.detail["case_opened"].as_bool().unwrap_or(false),
        decided_at: decision.decided_at,
    };
    Ok(DecisionReply {
        outcome,
        recorded: done,
    })
}
