//! The `repo` aggregate: a repository of a host system bound to the policy that decides what it
//! publishes and promotes (see [`crate::decision`]).
//!
//! Commands (`<ns>.cmd.repo.<name>`): `bind`. Queries (`<ns>.query.repo.<name>`): `get`,
//! `list`. Events: [`RepoEvent`], on `<ns>.events.repo.<repo>.<event_type>`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::Action;

/// The aggregate type name, as stored in the event store and used in subjects.
pub const AGGREGATE: &str = "repo";

/// Longest repo name: `[a-z0-9][a-z0-9_-]*` (no `:`, which separates it from the item id in an
/// artifact's id), at most 64 characters.
pub const MAX_REPO_LEN: usize = 64;

/// The evaluation budget of a repo that sets none, in milliseconds.
pub const DEFAULT_BUDGET_MS: u32 = 250;
/// The largest evaluation budget a repo may set, in milliseconds.
pub const MAX_BUDGET_MS: u32 = 5_000;

/// Is `repo` usable as a repo name?
pub fn is_valid_repo(repo: &str) -> bool {
    let mut chars = repo.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && repo.len() <= MAX_REPO_LEN
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `bind`: the repo's decisions are made by `policy_id`'s active version from now on (a repo
/// bound before is bound again: a new event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BindRepo {
    pub repo: String,
    pub policy_id: String,
    /// The evaluation budget in ms (default [`DEFAULT_BUDGET_MS`], 1..=[`MAX_BUDGET_MS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_ms: Option<u32>,
    /// Release open cases a newly promoted version allows (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_release: Option<bool>,
}

/// Every event of the `repo` aggregate (externally tagged under the spelled-out name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum RepoEvent {
    #[serde(rename = "RepoBound")]
    RepoBound(RepoBound),
    /// The `policy.timeout` audit record: an evaluation that ran past the repo's budget.
    #[serde(rename = "PolicyTimedOut")]
    PolicyTimedOut(PolicyTimedOut),
}

impl RepoEvent {
    /// The stable stored type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            RepoEvent::RepoBound(_) => "RepoBound",
            RepoEvent::PolicyTimedOut(_) => "PolicyTimedOut",
        }
    }

    pub fn event_version(&self) -> &'static str {
        "1.0"
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RepoBound {
    pub repo: String,
    pub policy_id: String,
    pub budget_ms: u32,
    pub auto_release: bool,
    /// The policy the repo was bound to before, when this is a rebinding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_policy_id: Option<String>,
    pub bound_by: String,
    pub bound_at: DateTime<Utc>,
}

/// The command type recorded in the metadata of [`PolicyTimedOut`].
pub const TIMEOUT_COMMAND_TYPE: &str = "policy.timeout";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PolicyTimedOut {
    pub repo: String,
    pub item_id: String,
    pub action: Action,
    pub policy_id: String,
    pub budget_ms: u32,
    /// The command id of the request that timed out.
    pub request_command_id: String,
    pub timed_out_at: DateTime<Utc>,
}

// ----- queries -----

/// `get`: one repo's binding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GetRepo {
    pub repo: String,
}

/// `list`: repos by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ListRepos {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub offset: Option<u32>,
}

/// A repo as the read model knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RepoSummary {
    pub repo: String,
    pub policy_id: String,
    pub budget_ms: u32,
    pub auto_release: bool,
    pub bound_by: String,
    pub bound_at: DateTime<Utc>,
    /// Evaluations that ran past the budget.
    pub timeouts: u64,
    /// The aggregate sequence this row reflects.
    pub sequence: u64,
}

#[cfg(feature = "cqrs")]
impl cqrs_es::DomainEvent for RepoEvent {
    fn event_type(&self) -> String {
        RepoEvent::event_type(self).to_owned()
    }

    fn event_version(&self) -> String {
        RepoEvent::event_version(self).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_are_lowercase_tokens_without_a_colon() {
        assert!(is_valid_repo("npm-public"));
        assert!(is_valid_repo("r_1"));
        assert!(!is_valid_repo("npm:public"));
        assert!(!is_valid_repo("Npm"));
        assert!(!is_valid_repo(""));
        assert!(!is_valid_repo(&"a".repeat(65)));
    }
}
