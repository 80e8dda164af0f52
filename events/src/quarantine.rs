//! Quarantine cases: one per (repo, item), opened by a `quarantine` decision, resolved once by
//! an approver (or by Gatehouse when a newly promoted version allows the item).
//!
//! Commands (`<ns>.cmd.quarantine.<name>`): `release`, `reject` ([`ResolveCase`]). Queries
//! (`<ns>.query.quarantine.<name>`): `list`, `get`. The case lives in the item's `artifact`
//! aggregate ([`crate::artifact`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::DecisionEntry;

/// Longest resolution reason.
pub const MAX_REASON_LEN: usize = 4_000;

/// A case's status: `quarantined → released | rejected`, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Quarantined,
    Released,
    Rejected,
}

impl CaseStatus {
    /// Every status, in wire order (what `quarantine.list` accepts).
    pub const ALL: [CaseStatus; 3] = [
        CaseStatus::Quarantined,
        CaseStatus::Released,
        CaseStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Quarantined => "quarantined",
            CaseStatus::Released => "released",
            CaseStatus::Rejected => "rejected",
        }
    }

    pub fn parse(name: &str) -> Option<CaseStatus> {
        CaseStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Are reads of the item refused (`quarantined_blob`)?
    pub fn blocks_reads(self) -> bool {
        !matches!(self, CaseStatus::Released)
    }
}

impl std::fmt::Display for CaseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `release` and `reject`: resolve the item's open case, with a reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ResolveCase {
    pub repo: String,
    pub item_id: String,
    pub reason: String,
}

// ----- queries -----

/// `list`: cases, oldest opened first, filtered by repo and status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ListCases {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// `quarantined`, `released` or `rejected`; anything else is `bad_request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
}

/// `get`: one item's case with its decision history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GetCase {
    pub repo: String,
    pub item_id: String,
}

/// A case as the read model knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CaseSummary {
    pub repo: String,
    pub item_id: String,
    pub status: CaseStatus,
    /// The decision that opened it.
    pub policy_id: String,
    pub version: u32,
    pub rule_id: Option<String>,
    pub reason: String,
    pub opened_by: String,
    pub opened_at: DateTime<Utc>,
    /// Quarantine decisions the case holds (the opening one included).
    pub decisions: u32,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution_reason: Option<String>,
}

/// A page of `list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CasePage {
    pub cases: Vec<CaseSummary>,
    /// Cases matching the filter in all.
    pub total: u64,
}

/// The answer to `get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CaseDetail {
    #[serde(flatten)]
    pub case: CaseSummary,
    /// Every decision on the item in the repo, newest first (at most 1,000).
    pub history: Vec<DecisionEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_from_their_wire_names_only() {
        for s in CaseStatus::ALL {
            assert_eq!(CaseStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(CaseStatus::parse("open"), None);
        assert!(CaseStatus::Quarantined.blocks_reads() && CaseStatus::Rejected.blocks_reads());
        assert!(!CaseStatus::Released.blocks_reads());
    }
}
