//! The `quarantine` context: the one case per (repo, item) a `quarantine` decision opens,
//! resolved once — released or rejected — by an approver with a reason, or released by
//! Gatehouse when a newly promoted version allows the item ([`releaser`]).
//!
//! Commands `quarantine.release`, `quarantine.reject` (approver); queries `quarantine.list`,
//! `quarantine.get` (declared in [`OPERATIONS`]). The case lives in the item's `artifact`
//! aggregate ([`crate::artifact`]).
//!
//! Layout: [`commands`], [`queries`], [`releaser`] (auto-release on a promotion).
pub mod commands;
pub mod queries;
pub mod releaser;

use gatehouse_events::envelope::CommandAccepted;
use gatehouse_events::quarantine::{CaseDetail, CasePage, GetCase, ListCases, ResolveCase};

use crate::api::{Operation, ReadModel};
use crate::{command, query};

/// The quarantine context's commands and queries.
pub const OPERATIONS: &[Operation] = &[
    command!(
        "quarantine.release",
        Approver,
        "release the item's open case, with a reason: reads are allowed again",
        ResolveCase => CommandAccepted,
        commands::release
    ),
    command!(
        "quarantine.reject",
        Approver,
        "reject the item's open case, with a reason: reads stay refused",
        ResolveCase => CommandAccepted,
        commands::reject
    ),
    query!(
        "quarantine.list",
        Viewer,
        "cases by repo and status (quarantined, released, rejected), oldest opened first",
        ListCases => CasePage,
        queries::list,
        Some(ReadModel::Quarantine)
    ),
    query!(
        "quarantine.get",
        Viewer,
        "one item's case with its decision history",
        GetCase => CaseDetail,
        queries::get,
        Some(ReadModel::Quarantine)
    ),
];
