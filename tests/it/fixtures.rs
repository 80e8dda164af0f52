//! Policies and rules documents the tests share.

use gatehouse_events::policy::{CreatePolicy, DraftVersion};
use serde_json::json;

pub fn create_policy(policy_id: &str) -> CreatePolicy {
    serde_json::from_value(json!({
        "policy_id": policy_id,
        "name": "Media catalog",
        "description": "what the public catalog may show",
        "attributes": {
            "kind": "string", "quality": "double", "tags": "list<string>",
            "scan": {"status": "string", "critical": "int"}
        }
    }))
    .unwrap()
}

/// A valid rules document denying quality below `threshold`.
pub fn rules(threshold: f64) -> serde_json::Value {
    json!({
        "rules": [
            {"id": "scan", "condition": "scan.status != \"clean\"", "decision": "quarantine", "reason": "scan not clean"},
            {"id": "low-quality", "condition": format!("quality < {threshold:?}"), "decision": "deny", "reason": "low quality"},
            {"id": "banned", "condition": "\"banned\" in tags", "decision": "deny", "reason": "banned tag"}
        ],
        "default_decision": "allow",
        "score": "quality * 10.0"
    })
}

pub fn draft(policy_id: &str, threshold: f64, notes: &str) -> DraftVersion {
    DraftVersion {
        policy_id: policy_id.into(),
        rules: serde_json::from_value(rules(threshold)).unwrap(),
        notes: notes.into(),
    }
}
