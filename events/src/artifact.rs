//! The `artifact` aggregate: what Gatehouse decided about one item in one repo — every
//! decision ([`crate::decision`]) and the item's one quarantine case ([`crate::quarantine`]).
//! Its id is `<repo>:<item_id>` (a repo name has no `:`).
//!
//! Query (`<ns>.query.artifact.can_read`): [`CanRead`], answered [`ReadAllowed`] or refused
//! `quarantined_blob`. Events: [`ArtifactEvent`] on `<ns>.events.artifact.<repo>:<item>.<type>`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::Action;
use crate::quarantine::CaseStatus;
use crate::rules::Decision;

/// The aggregate type name.
pub const AGGREGATE: &str = "artifact";

/// The aggregate id of `item_id` in `repo`.
pub fn aggregate_id(repo: &str, item_id: &str) -> String {
    format!("{repo}:{item_id}")
}

/// `(repo, item_id)` of an aggregate id (split at the first `:`).
pub fn split_id(id: &str) -> Option<(&str, &str)> {
    id.split_once(':')
}

/// Every event of the `artifact` aggregate (externally tagged under the spelled-out name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ArtifactEvent {
    #[serde(rename = "DecisionRecorded")]
    DecisionRecorded(DecisionRecorded),
    #[serde(rename = "QuarantineOpened")]
    QuarantineOpened(QuarantineOpened),
    #[serde(rename = "QuarantineJoined")]
    QuarantineJoined(QuarantineJoined),
    #[serde(rename = "QuarantineReleased")]
    QuarantineReleased(CaseResolved),
    #[serde(rename = "QuarantineRejected")]
    QuarantineRejected(CaseResolved),
}

impl ArtifactEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            ArtifactEvent::DecisionRecorded(_) => "DecisionRecorded",
            ArtifactEvent::QuarantineOpened(_) => "QuarantineOpened",
            ArtifactEvent::QuarantineJoined(_) => "QuarantineJoined",
            ArtifactEvent::QuarantineReleased(_) => "QuarantineReleased",
            ArtifactEvent::QuarantineRejected(_) => "QuarantineRejected",
        }
    }

    pub fn event_version(&self) -> &'static str {
        "1.0"
    }
}

/// One decision, with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DecisionRecorded {
    pub repo: String,
    pub item_id: String,
    pub action: Action,
    pub decision: Decision,
    pub rule_id: Option<String>,
    pub reason: String,
    pub policy_id: String,
    pub version: u32,
    pub input_digest: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<String>,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
    /// The attributes evaluated (with `action` and `repo`): what `input_digest` digests, and
    /// what the search index finds the item by. Absent in decisions recorded before it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Value>,
}

/// A `quarantine` decision opened the item's case. `attributes` are what was evaluated (with
/// `action` and `repo`), kept so a newly promoted version can evaluate the case again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct QuarantineOpened {
    pub policy_id: String,
    pub version: u32,
    pub rule_id: Option<String>,
    pub reason: String,
    pub attributes: serde_json::Value,
    pub opened_by: String,
    pub opened_at: DateTime<Utc>,
}

/// Another `quarantine` decision joined the open case (its attributes replace the case's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct QuarantineJoined {
    pub policy_id: String,
    pub version: u32,
    pub rule_id: Option<String>,
    pub reason: String,
    pub attributes: serde_json::Value,
    pub joined_at: DateTime<Utc>,
}

/// The case was released or rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CaseResolved {
    pub reason: String,
    pub resolved_by: String,
    pub resolved_at: DateTime<Utc>,
}

/// `can_read`: may `item_id` (or the item(s) with `digest`) of `repo` be read (downloaded)?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CanRead {
    pub repo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// The answer to an allowed read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ReadAllowed {
    pub allowed: bool,
    pub repo: String,
    /// The items checked (the one named, or those a digest resolved to).
    pub item_ids: Vec<String>,
    /// `released` when a case was released (a waiver); absent when there is no case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<CaseStatus>,
}

#[cfg(feature = "cqrs")]
impl cqrs_es::DomainEvent for ArtifactEvent {
    fn event_type(&self) -> String {
        ArtifactEvent::event_type(self).to_owned()
    }

    fn event_version(&self) -> String {
        ArtifactEvent::event_version(self).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_id_splits_at_the_first_colon() {
        let id = aggregate_id("npm", "left-pad:1.0.0");
        assert_eq!(id, "npm:left-pad:1.0.0");
        assert_eq!(split_id(&id), Some(("npm", "left-pad:1.0.0")));
    }
}
