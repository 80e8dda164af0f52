//! The `audit` context: the audit read model (`audit_log`) and replays straight from the event
//! store (`events`), including an aggregate's state as of a time. Queries `audit.log` and
//! `audit.replay` (declared in [`OPERATIONS`]).
//!
//! Layout: [`queries`].
pub mod queries;

use gatehouse_events::audit::{AuditEntry, AuditLogQuery, Replay, ReplayQuery};

use crate::api::{Operation, ReadModel};
use crate::query;

/// The audit context's queries.
pub const OPERATIONS: &[Operation] = &[
    query!(
        "audit.log",
        Viewer,
        "recorded events with who, what and why, filtered",
        AuditLogQuery => Vec<AuditEntry>,
        queries::log,
        Some(ReadModel::Audit)
    ),
    query!(
        "audit.replay",
        Viewer,
        "an aggregate's events and its state as of a time",
        ReplayQuery => Replay,
        queries::replay,
        Some(ReadModel::Audit)
    ),
];
