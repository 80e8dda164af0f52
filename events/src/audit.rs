//! The audit trail: queries over the audit read model and over the event store itself.
//!
//! Queries (`<ns>.query.audit.<name>`): `log` (the audit read model, filtered), `replay`
//! (one aggregate's full history from the event store, optionally its state as of a time) and
//! `denials` (requests refused `forbidden`, recorded by the gateway).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::EventRecord;

/// Most rows one `log` query returns.
pub const MAX_LOG_LIMIT: u32 = 1_000;

/// `log`: audit rows, oldest first, filtered; page with `after_position`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditLogQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Only events recorded at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Only events recorded before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Only events after this global position (keyset paging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_position: Option<i64>,
    /// At most this many rows (default 100, at most [`MAX_LOG_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `denials`: refused requests, oldest first, filtered; page with `after_position`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DenialsQuery {
    /// Only requests of this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Only requests for this operation, e.g. `policy.promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Only denials after this position (keyset paging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_position: Option<i64>,
    /// At most this many rows (default 100, at most [`MAX_LOG_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One refused request: who asked for what, when, and the role they lacked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Denial {
    pub position: i64,
    pub denied_at: DateTime<Utc>,
    /// The authenticated user that sent the request.
    pub user: String,
    /// The user's account, e.g. `CLIENTS`.
    pub account: String,
    /// The operation, e.g. `policy.promote`.
    pub operation: String,
    /// The role the user did not hold.
    pub missing_role: String,
    /// The delegate that sent the request for `user` (the HTTP adapter, the console), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated_by: Option<String>,
}

/// One row of the audit trail: one stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuditEntry {
    /// The event's global position in the event store.
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    /// The delegate that sent the command for `actor` (the HTTP adapter, the console), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated_by: Option<String>,
    pub aggregate: String,
    pub aggregate_id: String,
    pub sequence: u64,
    pub event_type: String,
    pub command_id: String,
    pub correlation_id: String,
    pub causation_id: String,
    pub payload: serde_json::Value,
}

/// `replay`: one aggregate's history from the event store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ReplayQuery {
    pub aggregate: String,
    pub aggregate_id: String,
    /// Only events recorded at or before this time, and the state they produce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
}

/// The answer to `replay`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Replay {
    pub aggregate: String,
    pub aggregate_id: String,
    pub as_of: Option<DateTime<Utc>>,
    /// Every stored event (up to `as_of`), in sequence order.
    pub events: Vec<EventRecord>,
    /// The aggregate's state after those events.
    pub state: serde_json::Value,
}
