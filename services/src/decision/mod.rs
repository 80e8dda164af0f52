//! The `decision` context: publish and promote decisions, per artifact version, by the active
//! version of the policy bound to the repo — within the repo's budget, failing closed.
//!
//! Command `decision.evaluate` (service); query `decision.list` (declared in [`OPERATIONS`]).
//! A decision is recorded on the item's `artifact` aggregate ([`crate::artifact`]), with the
//! quarantine case it opens or joins.
//!
//! Layout: [`evaluate`] (pure: input, digest, verdict), [`lookup`] (what a decision reads from
//! the event store), [`commands`], [`queries`].
pub mod commands;
pub mod evaluate;
pub mod lookup;
pub mod queries;

use gatehouse_events::decision::{DecisionEntry, DecisionReply, EvaluateDecision, ListDecisions};

use crate::api::{Operation, ReadModel};
use crate::{command, query};

/// The decision context's command and query.
pub const OPERATIONS: &[Operation] = &[
    command!(
        "decision.evaluate",
        Service,
        "the decision of the repo's policy on publishing or promoting an item, recorded with its provenance; fails closed",
        EvaluateDecision => DecisionReply,
        commands::evaluate
    ),
    query!(
        "decision.list",
        Viewer,
        "a repo's decisions, newest first, by item and action",
        ListDecisions => Vec<DecisionEntry>,
        queries::list,
        Some(ReadModel::Quarantine)
    ),
];
