//! Compiled policy versions, compiled once per process and shared by every thread.
//!
//! The rules and the attribute schema are read from the event store (`events`: the policy's
//! `PolicyCreated` and the `PolicyVersionDrafted` of the version), not from the read models,
//! which may lag behind a Prepare. Versions are immutable, so a compiled version never expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;
use gatehouse_events::policy::{PolicyEvent, AGGREGATE};
use gatehouse_rules::CompiledPolicy;
use tokio::sync::OnceCell;

use super::delivery::WorkError;

type Slot = Arc<OnceCell<Arc<CompiledPolicy>>>;

/// `(policy_id, version)` → the compiled version.
#[derive(Default)]
pub(crate) struct PolicyCache {
    slots: Mutex<HashMap<(String, u32), Slot>>,
}

impl PolicyCache {
    /// The compiled `version` of `policy_id`, loading and compiling it on first use (once, even
    /// when several jobs ask at the same time). A version that does not exist or does not
    /// compile is [`WorkError::Fatal`]; a failed load is retried by the next caller.
    pub async fn get(
        &self,
        pg: &Pool,
        policy_id: &str,
        version: u32,
    ) -> Result<Arc<CompiledPolicy>, WorkError> {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            slots
                .entry((policy_id.to_owned(), version))
                .or_default()
                .clone()
        };
        slot.get_or_try_init(|| load(pg, policy_id, version))
            .await
            .cloned()
    }
}

/// Reads the schema and the version's rules from the event store and compiles them.
async fn load(pg: &Pool, policy_id: &str, version: u32) -> Result<Arc<CompiledPolicy>, WorkError> {
    let client = pg.get().await?;
    let rows = client
        .query(
            "SELECT payload FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2
                AND (event_type = 'PolicyCreated'
                     OR (event_type = 'PolicyVersionDrafted'
                         AND payload -> 'PolicyVersionDrafted' ->> 'version' = $3))
              ORDER BY sequence",
            &[&AGGREGATE, &policy_id, &version.to_string()],
        )
        .await?;
    let (mut schema, mut rules) = (None, None);
    for row in rows {
        let payload: serde_json::Value = row.get(0);
        match serde_json::from_value::<PolicyEvent>(payload) {
            Ok(PolicyEvent::PolicyCreated(created)) => schema = Some(created.attributes),
            Ok(PolicyEvent::PolicyVersionDrafted(drafted)) if drafted.version == version => {
                rules = Some(drafted.rules)
            }
            Ok(_) => {}
            Err(e) => {
                return Err(WorkError::Fatal(format!(
                    "policy `{policy_id}`: undecodable event: {e}"
                )))
            }
        }
    }
    let (Some(schema), Some(rules)) = (schema, rules) else {
        return Err(WorkError::Fatal(format!(
            "policy `{policy_id}` has no version {version} in the event store"
        )));
    };
    match gatehouse_rules::validate(&rules, &schema) {
        Ok(compiled) => {
            tracing::info!(policy_id, version, "compiled a policy version");
            Ok(Arc::new(compiled))
        }
        Err(errors) => {
            let problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
            Err(WorkError::Fatal(format!(
                "policy `{policy_id}` version {version} does not compile: {}",
                problems.join("; ")
            )))
        }
    }
}
