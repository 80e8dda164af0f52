//! The `audit` context: the audit read model (`audit_log`) and replays straight from the event
//! store (`events`), including an aggregate's state as of a time, and the requests refused
//! `forbidden` (`denials`, written by [`crate::api::roles::record`]). Queries `audit.log`,
//! `audit.replay` and `audit.denials` (declared in [`OPERATIONS`]).
//!
//! Layout: [`queries`].
pub mod queries;

use gatehouse_events::audit::{
    AuditEntry, AuditLogQuery, Denial, DenialsQuery, Replay, ReplayQuery,
};

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
    query!(
        "audit.denials",
        Viewer,
        "requests refused for lack of a role: who, what, when, which role",
        DenialsQuery => Vec<Denial>,
        queries::denials,
        None
    ),
];
