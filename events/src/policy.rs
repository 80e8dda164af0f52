//! The `policy` aggregate: versioned policies.
//!
//! Commands (`<ns>.cmd.policy.<name>`): `create`, `draft`, `restore`, `configure`, and the run commands of
//! [`crate::run`] (`prepare`, `cancel_run`, `resume_run`, `promote`, `complete_run`, `fail_run`).
//! Queries (`<ns>.query.policy.<name>`): `list`, `get`, `versions`, `version`, `diff`.
//! Events: [`PolicyEvent`], published on `<ns>.events.policy.<policy_id>.<event_type>`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rules::{AttributeSchema, Decision, Rule, RulesDocument};
use crate::run::{PolicyPromoted, RunCancelled, RunFailed, RunPrepared, RunResumed, RunSucceeded};

/// The aggregate type name, as stored in the event store and used in subjects.
pub const AGGREGATE: &str = "policy";

/// Longest policy id: `[a-z0-9][a-z0-9_-]*`, at most 64 characters.
pub const MAX_POLICY_ID_LEN: usize = 64;
/// Longest policy name.
pub const MAX_NAME_LEN: usize = 200;
/// Longest description or change note.
pub const MAX_NOTES_LEN: usize = 4_000;
/// Most declared attributes (counting nested object fields).
pub const MAX_ATTRIBUTES: usize = 200;

/// `create`: a new policy with its declared attribute schema. It has no version yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CreatePolicy {
    pub policy_id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The attributes catalog items carry; rules may reference only these.
    pub attributes: AttributeSchema,
    /// Four-eyes promotion: a run may be promoted only by someone other than the author of the
    /// version it evaluated (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_second_approver: bool,
}

/// `draft`: a new immutable version `n + 1` with these rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DraftVersion {
    pub policy_id: String,
    pub rules: RulesDocument,
    /// Why this change: shown in history and audit.
    pub notes: String,
}

/// `configure`: change a policy's settings (today: four-eyes promotion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigurePolicy {
    pub policy_id: String,
    /// Four-eyes promotion: a run may be promoted only by someone other than the author of the
    /// version it evaluated.
    pub require_second_approver: bool,
    /// Why: shown in the audit log.
    #[serde(default)]
    pub notes: String,
}

/// `restore`: a new version `n + 1` with the rules of an earlier `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreVersion {
    pub policy_id: String,
    pub version: u32,
    #[serde(default)]
    pub notes: String,
}

/// Every event of the `policy` aggregate. Stored as serde's externally tagged JSON
/// (`{"PolicyCreated": {...}}`) under a name spelled out here, never derived from the Rust
/// variant: renaming a variant must not change what is stored. [`PolicyEvent::event_type`] is
/// the same name; `events/tests/stored_events.rs` pins every event's stored JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum PolicyEvent {
    #[serde(rename = "PolicyCreated")]
    PolicyCreated(PolicyCreated),
    #[serde(rename = "PolicyVersionDrafted")]
    PolicyVersionDrafted(PolicyVersionDrafted),
    #[serde(rename = "RunPrepared")]
    RunPrepared(RunPrepared),
    #[serde(rename = "RunSucceeded")]
    RunSucceeded(RunSucceeded),
    #[serde(rename = "RunFailed")]
    RunFailed(RunFailed),
    #[serde(rename = "RunCancelled")]
    RunCancelled(RunCancelled),
    #[serde(rename = "RunResumed")]
    RunResumed(RunResumed),
    #[serde(rename = "PolicyPromoted")]
    PolicyPromoted(PolicyPromoted),
    #[serde(rename = "PolicyConfigured")]
    PolicyConfigured(PolicyConfigured),
}

impl PolicyEvent {
    /// The stable stored type name; renaming a Rust variant must never change it.
    pub fn event_type(&self) -> &'static str {
        match self {
            PolicyEvent::PolicyCreated(_) => "PolicyCreated",
            PolicyEvent::PolicyVersionDrafted(_) => "PolicyVersionDrafted",
            PolicyEvent::RunPrepared(_) => "RunPrepared",
            PolicyEvent::RunSucceeded(_) => "RunSucceeded",
            PolicyEvent::RunFailed(_) => "RunFailed",
            PolicyEvent::RunCancelled(_) => "RunCancelled",
            PolicyEvent::RunResumed(_) => "RunResumed",
            PolicyEvent::PolicyPromoted(_) => "PolicyPromoted",
            PolicyEvent::PolicyConfigured(_) => "PolicyConfigured",
        }
    }

    /// The payload schema version of this event type.
    pub fn event_version(&self) -> &'static str {
        "1.0"
    }
}

/// A policy's settings changed (`configure`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PolicyConfigured {
    pub require_second_approver: bool,
    pub notes: String,
    pub configured_by: String,
    pub configured_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PolicyCreated {
    pub policy_id: String,
    pub name: String,
    pub description: String,
    pub attributes: AttributeSchema,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Four-eyes promotion (absent when false, as in events stored before it existed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_second_approver: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PolicyVersionDrafted {
    /// `n + 1` where `n` is the latest version before (versions start at 1).
    pub version: u32,
    pub rules: RulesDocument,
    pub notes: String,
    pub author: String,
    /// Set when this version restores an earlier one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<u32>,
    /// SHA-256 of the canonical rules JSON: equal hashes mean equal rules.
    pub rules_hash: String,
    pub drafted_at: DateTime<Utc>,
}

// ----- queries -----

/// `list`: policies, by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ListPolicies {
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub offset: Option<u32>,
}

/// `get`: one policy's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GetPolicy {
    pub policy_id: String,
}

/// `versions`: a policy's versions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ListVersions {
    pub policy_id: String,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub offset: Option<u32>,
}

/// `version`: one version with its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GetVersion {
    pub policy_id: String,
    pub version: u32,
}

/// `diff`: rule-by-rule differences from version `from` to version `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DiffVersions {
    pub policy_id: String,
    pub from: u32,
    pub to: u32,
}

/// A policy as the read model knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PolicySummary {
    pub policy_id: String,
    pub name: String,
    pub description: String,
    pub attributes: AttributeSchema,
    /// 0 until the first version is drafted.
    pub latest_version: u32,
    /// `None` until a promotion.
    pub active_version: Option<u32>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Four-eyes promotion (`create`, `configure`).
    #[serde(default)]
    pub require_second_approver: bool,
    /// The aggregate sequence this row reflects (to wait for read-your-writes).
    pub sequence: u64,
}

/// One version without its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VersionSummary {
    pub version: u32,
    pub author: String,
    pub notes: String,
    pub restored_from: Option<u32>,
    pub rules_hash: String,
    pub rule_count: u32,
    pub drafted_at: DateTime<Utc>,
    pub active: bool,
}

/// One version with its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PolicyVersion {
    pub policy_id: String,
    #[serde(flatten)]
    pub summary: VersionSummary,
    pub rules: RulesDocument,
}

/// The differences between two versions' rules documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PolicyDiff {
    pub policy_id: String,
    pub from: u32,
    pub to: u32,
    /// Rule changes: added, removed, modified and moved rules, in the order of `to` then removals.
    pub rules: Vec<RuleChange>,
    /// Ids of rules identical in both versions and at the same position.
    pub unchanged: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_decision: Option<Change<Decision>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_reason: Option<Change<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<Change<String>>,
}

impl PolicyDiff {
    /// True when the two documents are identical.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
            && self.default_decision.is_none()
            && self.default_reason.is_none()
            && self.score.is_none()
    }
}

/// A value before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Change<T> {
    pub from: T,
    pub to: T,
}

/// How one rule changed between two versions (rules are matched by id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum RuleChange {
    Added {
        position: u32,
        rule: Rule,
    },
    Removed {
        position: u32,
        rule: Rule,
    },
    Modified {
        id: String,
        from_position: u32,
        to_position: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        condition: Option<Change<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decision: Option<Change<Decision>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Change<String>>,
    },
    /// Same content, different position (which changes first-match order).
    Moved {
        id: String,
        from_position: u32,
        to_position: u32,
    },
}

#[cfg(feature = "cqrs")]
impl cqrs_es::DomainEvent for PolicyEvent {
    fn event_type(&self) -> String {
        PolicyEvent::event_type(self).to_owned()
    }

    fn event_version(&self) -> String {
        PolicyEvent::event_version(self).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_stored_externally_tagged_under_their_type_name() {
        let ev = PolicyEvent::PolicyCreated(PolicyCreated {
            policy_id: "p1".into(),
            name: "P".into(),
            description: String::new(),
            attributes: AttributeSchema::new(),
            created_by: "alice".into(),
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
            require_second_approver: false,
        });
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            json!({"PolicyCreated": {"policy_id": "p1", "name": "P", "description": "",
                "attributes": {}, "created_by": "alice", "created_at": "1970-01-01T00:00:00Z"}})
        );
        assert_eq!(ev.event_type(), "PolicyCreated");
    }

    #[test]
    fn a_rule_change_is_tagged_by_kind() {
        let c = RuleChange::Moved {
            id: "r1".into(),
            from_position: 0,
            to_position: 1,
        };
        assert_eq!(
            serde_json::to_value(c).unwrap(),
            json!({"change": "moved", "id": "r1", "from_position": 0, "to_position": 1})
        );
    }
}
