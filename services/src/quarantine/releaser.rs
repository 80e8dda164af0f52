//! Auto-release: when a policy version is promoted, the open cases of the repos bound to the
//! policy with `auto_release` on are evaluated again with it, and those it now allows are
//! released by Gatehouse (`quarantine.release` as `gatehouse`, an internal caller), the reason
//! naming the version.
//!
//! A consumer of `PolicyPromoted` on the events stream (durable `<ns>_releaser`), one promotion
//! at a time, on the consumer runtime: an undecodable record is dead-lettered, an outage is
//! retried without limit. Bindings and cases are read from `events` (never a lagging read
//! model). Each release's command id is `auto-release:` + a hash of (policy, version, repo,
//! item): a redelivered promotion is answered from the command log; a case a person resolved
//! first answers `invalid_state` (or a retry's `not_found` never happens: the case exists),
//! which counts as done. A promotion superseded by a later one releases nothing: the later one
//! decides.

use std::time::Duration;

use async_nats::jetstream::Message;
use async_trait::async_trait;
use deadpool_postgres::Pool;
use gatehouse_events::decision::Action;
use gatehouse_events::envelope::RejectionCode;
use gatehouse_events::policy::PolicyEvent;
use gatehouse_events::quarantine::ResolveCase;
use gatehouse_events::record::EventRecord;
use gatehouse_events::rules::Decision;
use gatehouse_projections::consumer::{self, Handler, Health, Outcome};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ClientError, Sender};
use crate::decision::{evaluate, lookup};
use crate::settings::Settings;
use crate::worker::delivery::WorkError;
use crate::worker::policies::PolicyCache;
use crate::{broker, db, RoleError};

/// The actor of automatic releases.
pub const SYSTEM_ACTOR: &str = "gatehouse";

/// Runs the releaser until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    run_with(settings, Health::default(), shutdown).await
}

/// Runs the releaser until `shutdown`, reporting an outage it rides out in `health`.
pub async fn run_with(
    settings: Settings,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), RoleError> {
    let pg = db::pool(&settings.database_url, 4)?;
    let nats = broker::connect(&settings, "releaser").await?;
    let js = broker::jetstream(&nats);
    let ns = settings.namespace.clone();
    let (consumer, config) = broker::promotions_consumer(&js, &settings, "releaser").await?;
    let releaser = Releaser {
        pg,
        policies: PolicyCache::default(),
        client: Client::new(nats.clone(), ns, Duration::from_secs(10)),
    };
    consumer::run(consumer, js, config, health, releaser, shutdown).await;
    let _ = nats.drain().await;
    Ok(())
}

struct Releaser {
    pg: Pool,
    policies: PolicyCache,
    client: Client,
}

#[async_trait]
impl Handler for Releaser {
    async fn handle(&self, messages: &[Message]) -> Outcome {
        let Some(message) = messages.first() else {
            return Outcome::Ack;
        };
        let (policy_id, version) = match promotion(&message.payload) {
            Ok(p) => p,
            Err(poison) => return Outcome::Poison(poison),
        };
        match self.release_allowed(&policy_id, version).await {
            Ok(released) => {
                if released > 0 {
                    tracing::info!(
                        policy_id,
                        version,
                        released,
                        "auto-released quarantine cases"
                    );
                }
                Outcome::Ack
            }
            Err(e) => e.outcome(),
        }
    }
}

/// The policy and version of a `PolicyPromoted` record; an undecodable record is poison.
fn promotion(body: &[u8]) -> Result<(String, u32), String> {
    let record: EventRecord =
        serde_json::from_slice(body).map_err(|e| format!("undecodable event record: {e}"))?;
    match serde_json::from_value::<PolicyEvent>(record.payload) {
        Ok(PolicyEvent::PolicyPromoted(p)) => Ok((record.aggregate_id, p.version)),
        Ok(_) => Err("a PolicyPromoted message without a promotion".into()),
        Err(e) => Err(format!("undecodable PolicyPromoted event: {e}")),
    }
}

/// The deterministic command id of the automatic release of `item_id` in `repo` by `version`.
pub fn command_id(policy_id: &str, version: u32, repo: &str, item_id: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [policy_id, &version.to_string(), repo, item_id] {
        hasher.update(part.as_bytes());
        hasher.update(b"\n");
    }
    format!("auto-release:{}", &hex::encode(hasher.finalize())[..40])
}

impl Releaser {
    /// Releases the open cases `version` of `policy_id` allows; how many it released.
    async fn release_allowed(&self, policy_id: &str, version: u32) -> Result<usize, WorkError> {
        let client = self.pg.get().await?;
        if lookup::active_version(&client, policy_id).await? != Some(version) {
            return Ok(0);
        }
        let repos: Vec<_> = lookup::bindings(&client)
            .await?
            .into_iter()
            .filter(|b| b.policy_id == policy_id && b.auto_release)
            .collect();
        let mut released = 0;
        for binding in repos {
            let cases = lookup::open_cases(&client, &binding.repo).await?;
            if cases.is_empty() {
                continue;
            }
            let compiled = self.policies.get(&self.pg, policy_id, version).await?;
            for case in cases {
                let Value::Object(attributes) = case.attributes else {
                    continue;
                };
                let action = attributes
                    .get(evaluate::ACTION_ATTRIBUTE)
                    .and_then(Value::as_str)
                    .and_then(Action::parse)
                    .unwrap_or(Action::Publish);
                let verdict =
                    match evaluate::evaluate(
                        &compiled,
                        &binding.repo,
                        &case.item_id,
                        action,
                        attributes,
                    ) {
                        Ok(v) => v,
                        // The version cannot decide on it: a person keeps the case.
                        Err(why) => {
                            tracing::info!(repo = binding.repo, item_id = case.item_id, why,
                            "a case stays quarantined: the promoted version cannot decide on it");
                            continue;
                        }
                    };
                if verdict.decision != Decision::Allow {
                    continue;
                }
                let reason = format!(
                    "auto-released: policy `{policy_id}` version {version} allows it ({})",
                    verdict
                        .rule_id
                        .as_deref()
                        .map_or_else(|| "default decision".to_owned(), |r| format!("rule `{r}`"))
                );
                let sender = Sender {
                    actor: SYSTEM_ACTOR.into(),
                    command_id: command_id(policy_id, version, &binding.repo, &case.item_id),
                    correlation_id: None,
                };
                let command = ResolveCase {
                    repo: binding.repo.clone(),
                    item_id: case.item_id.clone(),
                    reason,
                };
                match self
                    .client
                    .command("quarantine", "release", &sender, command)
                    .await
                {
                    Ok(_) => released += 1,
                    Err(ClientError::Rejected(r))
                        if matches!(
                            r.code,
                            RejectionCode::InvalidState | RejectionCode::NotFound
                        ) =>
                    {
                        tracing::debug!(repo = binding.repo, item_id = case.item_id, %r,
                            "the case was resolved before the automatic release")
                    }
                    Err(e) => return Err(WorkError::transient("quarantine.release", e)),
                }
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_id_is_deterministic_and_fits_the_envelope() {
        let a = command_id("media", 3, "npm", "left-pad:1.0.0");
        assert_eq!(a, command_id("media", 3, "npm", "left-pad:1.0.0"));
        assert_ne!(a, command_id("media", 4, "npm", "left-pad:1.0.0"));
        assert!(a.len() <= gatehouse_events::envelope::MAX_ID_LEN);
    }
}
