//! The `repo` context: repos bound to the policy that decides what they publish and promote.
//!
//! Command `repo.bind` (operator); queries `repo.get`, `repo.list` (declared in
//! [`OPERATIONS`]). The aggregate also records `PolicyTimedOut`, the `policy.timeout` audit
//! record of an evaluation past the repo's budget ([`crate::decision`]).
//!
//! Layout: [`aggregate`]; [`commands`], [`queries`]: the handlers.
pub mod aggregate;
pub mod commands;
pub mod queries;

pub use aggregate::{Repo, RepoCommand, RepoError};

use gatehouse_events::envelope::CommandAccepted;
use gatehouse_events::repo::{BindRepo, GetRepo, ListRepos, RepoSummary};

use crate::api::{Operation, ReadModel};
use crate::{command, query};

/// The repo context's commands and queries.
pub const OPERATIONS: &[Operation] = &[
    command!(
        "repo.bind",
        Operator,
        "bind a repo to the policy whose active version decides its publishes and promotions",
        BindRepo => CommandAccepted,
        commands::bind
    ),
    query!(
        "repo.get",
        Viewer,
        "one repo's binding, budget and timeouts",
        GetRepo => RepoSummary,
        queries::get,
        Some(ReadModel::Quarantine)
    ),
    query!(
        "repo.list",
        Viewer,
        "repos by name, optionally those bound to one policy",
        ListRepos => Vec<RepoSummary>,
        queries::list,
        Some(ReadModel::Quarantine)
    ),
];
