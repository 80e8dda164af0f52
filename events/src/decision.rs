//! Publish and promote decisions: a host asks, per artifact version, what the policy bound to
//! its repo decides (see [`crate::repo`]).
//!
//! Command (`<ns>.cmd.decision.evaluate`): [`EvaluateDecision`], answered [`DecisionReply`].
//! Query (`<ns>.query.decision.list`): [`ListDecisions`]. The decision is recorded as
//! [`crate::artifact::DecisionRecorded`] on the item's `artifact` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::envelope::CommandAccepted;
use crate::quarantine::CaseStatus;
use crate::rules::Decision;

/// Most digests one decision carries.
pub const MAX_DIGESTS: usize = 32;
/// Longest digest: `<algorithm>:<hex>`.
pub const MAX_DIGEST_LEN: usize = 160;

/// What the host is about to do with the artifact version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Publish,
    Promote,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Promote => "promote",
        }
    }

    /// The action called `name`, if any.
    pub fn parse(name: &str) -> Option<Action> {
        match name {
            "publish" => Some(Action::Publish),
            "promote" => Some(Action::Promote),
            _ => None,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Is `digest` `<algorithm>:<hex>` (`[a-z0-9]+`, then at least 8 lowercase hex digits)?
pub fn is_valid_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    digest.len() <= MAX_DIGEST_LEN
        && !algorithm.is_empty()
        && algorithm
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && hex.len() >= 8
        && hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// `evaluate`: the decision of the repo's policy (its active version) on one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EvaluateDecision {
    pub repo: String,
    pub item_id: String,
    pub action: Action,
    /// The item's attributes; default: the catalog item's (ready, not deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
    /// The artifact's content digests (`sha256:<hex>`), so reads can be checked by digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<String>,
}

/// What a decision says, with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DecisionOutcome {
    pub repo: String,
    pub item_id: String,
    pub action: Action,
    pub decision: Decision,
    /// The rule that matched first; `None` when the default decision applied.
    pub rule_id: Option<String>,
    pub reason: String,
    pub policy_id: String,
    pub version: u32,
    /// `sha256:` + SHA-256 of the canonical JSON `{action, attributes, item_id, repo}` evaluated.
    pub input_digest: String,
    /// The item's quarantine case after this decision, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<CaseStatus>,
    /// True when this decision opened the case.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub case_opened: bool,
    pub decided_at: DateTime<Utc>,
}

/// The reply to `decision.evaluate`: the decision and where it was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DecisionReply {
    #[serde(flatten)]
    pub outcome: DecisionOutcome,
    /// The command's record (aggregate `artifact`, id `<repo>:<item_id>`, sequence: what
    /// `wait_for` takes).
    pub recorded: CommandAccepted,
}

// ----- queries -----

/// `list`: a repo's decisions, newest first, filtered; page with `before_position`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ListDecisions {
    pub repo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Only decisions recorded before this position (keyset paging, newest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_position: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DecisionEntry {
    /// The event's global position (newest first in lists).
    pub position: i64,
    pub repo: String,
    pub item_id: String,
    pub action: Action,
    pub decision: Decision,
    pub rule_id: Option<String>,
    pub reason: String,
    pub policy_id: String,
    pub version: u32,
    pub input_digest: String,
    pub digests: Vec<String>,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_algorithm_colon_hex() {
        assert!(is_valid_digest("sha256:0123456789abcdef"));
        assert!(!is_valid_digest("sha256:XYZ"));
        assert!(!is_valid_digest("0123456789abcdef"));
        assert!(!is_valid_digest("sha256:0123"));
    }

    #[test]
    fn actions_are_snake_case() {
        assert_eq!(serde_json::to_value(Action::Promote).unwrap(), "promote");
        assert_eq!(Action::parse("publish"), Some(Action::Publish));
        assert_eq!(Action::parse("delete"), None);
    }
}
