//! Shared test fixtures: the reference catalog schema and a document builder.

use gatehouse_events::rules::{AttributeSchema, Decision, Rule, RulesDocument};
use serde_json::json;

/// The attributes of the reference catalog (see `shared/reference/rule-engine.md`).
pub(crate) fn schema() -> AttributeSchema {
    serde_json::from_value(json!({
        "id": "string", "kind": "string", "status": "string", "quality": "double",
        "rating": "double", "trending": "double", "tags": "list<string>",
        "scan": {"status": "string", "critical": "int"}, "age_days": "int",
        "owner": {"tier": "string"}, "published_at": "timestamp"
    }))
    .unwrap()
}

/// A document of `rules` as (id, condition, decision); each reason is `because <id>`.
pub(crate) fn doc(rules: &[(&str, &str, Decision)], score: &str) -> RulesDocument {
    RulesDocument {
        rules: rules
            .iter()
            .map(|(id, condition, decision)| Rule {
                id: (*id).to_owned(),
                condition: (*condition).to_owned(),
                decision: *decision,
                reason: format!("because {id}"),
            })
            .collect(),
        default_decision: Decision::Allow,
        default_reason: "default".to_owned(),
        score: score.to_owned(),
    }
}

/// The reference policy: five first-match rules and a weighted score.
pub(crate) fn reference_doc() -> RulesDocument {
    use Decision::{Deny, Quarantine};
    doc(
        &[
            ("scan-not-clean", r#"scan.status != "clean""#, Quarantine),
            ("critical-findings", "scan.critical > 0", Deny),
            ("low-quality", "quality < 0.4", Deny),
            ("banned-tag", r#""banned" in tags"#, Deny),
            (
                "old-low-rated-video",
                r#"kind == "video" && age_days > 365 && rating < 2.0"#,
                Deny,
            ),
        ],
        "trending * 0.7 + rating * 10.0 * 0.3",
    )
}
