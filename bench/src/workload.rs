//! The commands a benchmark sends: realistic bodies (the attribute schema and rules document
//! the integration tests use), each with a fresh command id.

use gatehouse_events::policy::{CreatePolicy, DraftVersion};
use serde_json::json;

use gatehouse::client::Sender;

/// The actor recorded on every bench command.
pub const ACTOR: &str = "bench";

/// A sender with a fresh command id.
pub fn sender() -> Sender {
    Sender {
        actor: ACTOR.into(),
        command_id: uuid::Uuid::now_v7().to_string(),
        correlation_id: None,
    }
}

/// `policy.create` of `policy_id`, with a four-attribute schema (one nested).
pub fn create(policy_id: &str) -> anyhow::Result<CreatePolicy> {
    Ok(serde_json::from_value(json!({
        "policy_id": policy_id,
        "name": "Bench catalog",
        "description": "created by gatehouse bench",
        "attributes": {
            "kind": "string", "quality": "double", "tags": "list<string>",
            "scan": {"status": "string", "critical": "int"}
        }
    }))?)
}

/// `policy.draft` of `policy_id`: three CEL rules and a score, the threshold varied by `n`.
pub fn draft(policy_id: &str, n: u64) -> anyhow::Result<DraftVersion> {
    let threshold = 0.1 + (n % 80) as f64 / 100.0;
    let rules = json!({
        "rules": [
            {"id": "scan", "condition": "scan.status != \"clean\"", "decision": "quarantine", "reason": "scan not clean"},
            {"id": "low-quality", "condition": format!("quality < {threshold:?}"), "decision": "deny", "reason": "low quality"},
            {"id": "banned", "condition": "\"banned\" in tags", "decision": "deny", "reason": "banned tag"}
        ],
        "default_decision": "allow",
        "score": "quality * 10.0"
    });
    Ok(DraftVersion {
        policy_id: policy_id.into(),
        rules: serde_json::from_value(rules)?,
        notes: format!("bench draft {n}"),
    })
}
