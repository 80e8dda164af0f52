//! The `run` context: evaluation runs of a policy version over a frozen catalog snapshot.
//!
//! A run lives in its policy's event stream (one running run per policy, Promote only from a
//! successful run: one aggregate decides), so its commands are sent to the policy aggregate's
//! subjects (`policy.prepare`, `policy.promote`, ...); its queries are `run.get`, `run.list`,
//! `run.diff`. All are declared in [`OPERATIONS`].
//!
//! Layout:
//! - [`aggregate`]: the run half of the policy aggregate (decisions and state).
//! - [`commands`]: Prepare (freezes the snapshot first) and the other run commands.
//! - [`queries`]: runs with their progress, and a run's diff against the active version.
pub mod aggregate;
pub mod commands;
pub mod queries;

use gatehouse_events::envelope::CommandAccepted;
use gatehouse_events::run::{
    CompleteRun, DiffRun, FailRun, GetRun, ListRuns, PrepareRun, PromoteRun, RunDiff, RunRef,
    RunView,
};

use crate::api::{Operation, ReadModel};
use crate::{command, query};

/// The run context's commands and queries.
pub const OPERATIONS: &[Operation] = &[
    command!(
        "policy.prepare",
        Operator,
        "freeze the catalog and evaluate a version over it",
        PrepareRun => CommandAccepted,
        commands::prepare
    ),
    command!(
        "policy.cancel_run",
        Operator,
        "stop a running run",
        RunRef => CommandAccepted,
        commands::cancel
    ),
    command!(
        "policy.resume_run",
        Operator,
        "evaluate a cancelled or failed run's missing batches",
        RunRef => CommandAccepted,
        commands::resume
    ),
    command!(
        "policy.promote",
        Approver,
        "make a successful run's version the active one",
        PromoteRun => CommandAccepted,
        commands::promote
    ),
    command!(
        "policy.complete_run",
        Internal,
        "(workers) the run evaluated its whole snapshot",
        CompleteRun => CommandAccepted,
        commands::complete
    ),
    command!(
        "policy.fail_run",
        Internal,
        "(workers) the run cannot finish, and why",
        FailRun => CommandAccepted,
        commands::fail
    ),
    query!(
        "run.get",
        Viewer,
        "one run with its counters and blocking reasons",
        GetRun => RunView,
        queries::get,
        Some(ReadModel::Policies)
    ),
    query!(
        "run.list",
        Viewer,
        "runs, newest first, by policy and status",
        ListRuns => Vec<RunView>,
        queries::list,
        Some(ReadModel::Policies)
    ),
    query!(
        "run.diff",
        Viewer,
        "a run's snapshot against the active version: regressions and improvements",
        DiffRun => RunDiff,
        queries::diff,
        Some(ReadModel::Policies)
    ),
];
