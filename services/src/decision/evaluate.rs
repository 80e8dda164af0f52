//! One decision's evaluation, pure: the evaluated input (the item's attributes with `action`
//! and `repo` put in), its digest, and the compiled version's verdict. The gateway
//! (`decision.evaluate`) and the releaser (auto-release) both evaluate through it.

use gatehouse_events::decision::Action;
use gatehouse_events::rules::Decision;
use gatehouse_rules::CompiledPolicy;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The attributes a rule may read besides the item's own (when the policy declares them).
pub const ACTION_ATTRIBUTE: &str = "action";
pub const REPO_ATTRIBUTE: &str = "repo";

/// What the policy decided, and on what.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub decision: Decision,
    pub rule_id: Option<String>,
    pub reason: String,
    /// `sha256:` + SHA-256 of the canonical evaluated input.
    pub input_digest: String,
    /// The attributes as evaluated (with `action` and `repo`).
    pub attributes: Value,
}

/// The attributes evaluated: the item's, with `action` and `repo` set (replacing the item's own
/// attributes of those names).
pub fn input_attributes(
    repo: &str,
    action: Action,
    mut attributes: Map<String, Value>,
) -> Map<String, Value> {
    attributes.insert(ACTION_ATTRIBUTE.into(), action.as_str().into());
    attributes.insert(REPO_ATTRIBUTE.into(), repo.into());
    attributes
}

/// `sha256:` + SHA-256 of the canonical JSON `{action, attributes, item_id, repo}` (serde_json
/// sorts object keys, so equal inputs hash alike whatever order they were sent in).
pub fn input_digest(repo: &str, item_id: &str, action: Action, attributes: &Value) -> String {
    let canonical = json!({
        "action": action.as_str(),
        "attributes": attributes,
        "item_id": item_id,
        "repo": repo,
    });
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Evaluates `attributes` (already [`input_attributes`]) of `item_id` in `repo` with `policy`.
/// An item that does not fit the schema, or a rule that fails on it, is an error (the caller
/// fails closed).
pub fn evaluate(
    policy: &CompiledPolicy,
    repo: &str,
    item_id: &str,
    action: Action,
    attributes: Map<String, Value>,
) -> Result<Evaluated, String> {
    let attributes = Value::Object(attributes);
    let input_digest = input_digest(repo, item_id, action, &attributes);
    let item = policy
        .item(&attributes)
        .map_err(|e| format!("the item does not fit the policy's schema: {e}"))?;
    let verdict = policy
        .evaluate(&item)
        .map_err(|e| format!("the policy failed on the item: {e}"))?;
    drop(item);
    Ok(Evaluated {
        decision: verdict.decision,
        rule_id: verdict.rule_id.map(|r| r.to_string()),
        reason: verdict.reason.to_string(),
        input_digest,
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_events::rules::{AttributeSchema, RulesDocument};

    fn policy() -> CompiledPolicy {
        let schema: AttributeSchema = serde_json::from_value(
            json!({"quality": "double", "action": "string", "repo": "string"}),
        )
        .unwrap();
        let doc: RulesDocument = serde_json::from_value(json!({
            "rules": [
                {"id": "promote-quality", "condition": "action == \"promote\" && quality < 0.8",
                 "decision": "quarantine", "reason": "promotion needs quality"},
                {"id": "low", "condition": "quality < 0.4", "decision": "deny", "reason": "low quality"}
            ],
            "default_decision": "allow",
            "score": "quality"
        }))
        .unwrap();
        gatehouse_rules::validate(&doc, &schema).unwrap()
    }

    fn attrs(quality: f64, action: Action) -> Map<String, Value> {
        let Value::Object(m) = json!({"quality": quality, "action": "forged"}) else {
            unreachable!()
        };
        input_attributes("npm", action, m)
    }

    #[test]
    fn rules_read_the_action_and_the_repo_set_by_gatehouse() {
        let p = policy();
        let publish =
            evaluate(&p, "npm", "a", Action::Publish, attrs(0.5, Action::Publish)).unwrap();
        assert_eq!(publish.decision, Decision::Allow);
        assert_eq!(publish.rule_id, None);
        let promote =
            evaluate(&p, "npm", "a", Action::Promote, attrs(0.5, Action::Promote)).unwrap();
        assert_eq!(promote.decision, Decision::Quarantine);
        assert_eq!(promote.rule_id.as_deref(), Some("promote-quality"));
        assert_eq!(promote.attributes["action"], "promote");
        assert_ne!(publish.input_digest, promote.input_digest);
    }

    #[test]
    fn the_digest_is_of_the_canonical_input() {
        let a = json!({"b": 1, "a": [1, 2]});
        let b: Value = serde_json::from_str(r#"{"a":[1,2],"b":1}"#).unwrap();
        assert_eq!(
            input_digest("npm", "x", Action::Publish, &a),
            input_digest("npm", "x", Action::Publish, &b)
        );
        assert_ne!(
            input_digest("npm", "x", Action::Publish, &a),
            input_digest("npm", "y", Action::Publish, &a)
        );
        assert!(input_digest("npm", "x", Action::Publish, &a).starts_with("sha256:"));
    }

    #[test]
    fn an_item_that_does_not_fit_is_an_error() {
        let Value::Object(m) = json!({"quality": "high"}) else {
            unreachable!()
        };
        let e = evaluate(
            &policy(),
            "npm",
            "a",
            Action::Publish,
            input_attributes("npm", Action::Publish, m),
        )
        .unwrap_err();
        assert!(e.contains("quality"), "{e}");
    }
}
