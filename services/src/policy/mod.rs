//! The `policy` context: versioned policies.
//!
//! Commands `policy.create`, `policy.draft`, `policy.restore`, `policy.configure`; queries `policy.list`,
//! `policy.get`, `policy.versions`, `policy.version`, `policy.diff` (declared in
//! [`OPERATIONS`]). Runs live in the same aggregate but are their own context ([`crate::run`]).
//!
//! Layout:
//! - [`aggregate`]: the `policy` aggregate (commands, state, handle/apply).
//! - [`validation`]: field formats and sizes.
//! - [`diff`]: rule-by-rule differences between two versions.
//! - [`commands`], [`queries`]: the handlers of the operations.
pub mod aggregate;
pub mod commands;
pub mod diff;
pub mod queries;
pub mod validation;

pub use aggregate::{Policy, PolicyCommand, PolicyError};

use gatehouse_events::envelope::CommandAccepted;
use gatehouse_events::policy::{
    ConfigurePolicy, CreatePolicy, DiffVersions, DraftVersion, GetPolicy, GetVersion, ListPolicies,
    ListVersions, PolicyDiff, PolicySummary, PolicyVersion, RestoreVersion, VersionSummary,
};

use crate::api::{Operation, ReadModel};
use crate::{command, query};

/// The policy context's commands and queries.
pub const OPERATIONS: &[Operation] = &[
    command!(
        "policy.create",
        Author,
        "create a policy with the attributes its rules may read",
        CreatePolicy => CommandAccepted,
        commands::create
    ),
    command!(
        "policy.draft",
        Author,
        "draft a new immutable version from a rules document",
        DraftVersion => CommandAccepted,
        commands::draft
    ),
    command!(
        "policy.restore",
        Author,
        "draft a new version with an earlier version's rules",
        RestoreVersion => CommandAccepted,
        commands::restore
    ),
    command!(
        "policy.configure",
        Admin,
        "change a policy's settings: four-eyes promotion on or off",
        ConfigurePolicy => CommandAccepted,
        commands::configure
    ),
    query!(
        "policy.list",
        Viewer,
        "policies by id",
        ListPolicies => Vec<PolicySummary>,
        queries::list,
        Some(ReadModel::Policies)
    ),
    query!(
        "policy.get",
        Viewer,
        "one policy: versions, the active one, its schema",
        GetPolicy => PolicySummary,
        queries::get,
        Some(ReadModel::Policies)
    ),
    query!(
        "policy.versions",
        Viewer,
        "a policy's versions, newest first",
        ListVersions => Vec<VersionSummary>,
        queries::versions,
        Some(ReadModel::Policies)
    ),
    query!(
        "policy.version",
        Viewer,
        "one version with its rules",
        GetVersion => PolicyVersion,
        queries::version,
        Some(ReadModel::Policies)
    ),
    query!(
        "policy.diff",
        Viewer,
        "rule-by-rule differences between two versions",
        DiffVersions => PolicyDiff,
        queries::diff,
        Some(ReadModel::Policies)
    ),
];
