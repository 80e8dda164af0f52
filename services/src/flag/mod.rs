//! The `flag` context: flags and progressive rollouts, emergency stop, and the `global`
//! aggregate's safe mode (its own context name, `global`, on the wire).
//!
//! Commands `flag.create`, `flag.update_values`, `flag.archive` (Author), `flag.set_rollout`,
//! `flag.emergency_stop`, `flag.resume`, `global.safe_mode` (Operator), `flag.auto_rollback`
//! (Internal: the [`monitor`]); queries `flag.get`, `flag.stats`,
//! `flag.list`, `flag.history`, `flag.snapshot`, `flag.evaluate`, `flag.evaluate_batch`,
//! `global.get` (Viewer). Evaluation is `gatehouse_flags`' code, as in the client crate.
//!
//! Layout: [`aggregate`] (the `flag` and `global` aggregates), [`commands`], [`queries`],
//! [`monitor`] (outcomes counted per window; auto-rollback).
pub mod aggregate;
pub mod commands;
pub mod monitor;
pub mod queries;

pub use aggregate::{Flag, FlagCommand, FlagError, Global, GlobalCommand};

use gatehouse_events::envelope::CommandAccepted;
use gatehouse_events::flag::{
    ArchiveFlag, AutoRollbackFlag, CreateFlag, EvaluateBatch, EvaluateFlag, Evaluation,
    FlagHistory, FlagSnapshot, FlagState, FlagStats, GetFlag, GetSnapshot, ListFlags,
    OutcomeWindow, RolloutChange, SafeMode, SetRollout, SetSafeMode, StopFlag, UpdateFlagValues,
};

use crate::api::{Operation, ReadModel};
use crate::{command, query};

/// The flag context's commands and queries.
pub const OPERATIONS: &[Operation] = &[
    command!("flag.create", Author, "create a flag (boolean or JSON with a schema) at 0%",
        CreateFlag => CommandAccepted, commands::create),
    command!("flag.update_values", Author, "change a flag's on/off values (and schema)",
        UpdateFlagValues => CommandAccepted, commands::update_values),
    command!("flag.archive", Author, "retire a flag: off from now on, no more changes",
        ArchiveFlag => CommandAccepted, commands::archive),
    command!("flag.set_rollout", Operator, "set who gets a flag's on value, with why",
        SetRollout => CommandAccepted, commands::set_rollout),
    command!("flag.emergency_stop", Operator, "turn a flag off at once, whatever its rollout",
        StopFlag => CommandAccepted, commands::emergency_stop),
    command!("flag.resume", Operator, "lift a flag's emergency stop",
        StopFlag => CommandAccepted, commands::resume),
    command!("flag.auto_rollback", Internal, "the flag monitor sets a failing rollout to 0%",
        AutoRollbackFlag => CommandAccepted, commands::auto_rollback),
    query!("flag.get", Viewer, "one flag with its rollout",
        GetFlag => FlagState, queries::get, Some(ReadModel::Flags)),
    query!("flag.list", Viewer, "flags by key",
        ListFlags => Vec<FlagState>, queries::list, Some(ReadModel::Flags)),
    query!("flag.history", Viewer, "a flag's rollout changes, newest first",
        FlagHistory => Vec<RolloutChange>, queries::history, Some(ReadModel::Flags)),
    query!("flag.snapshot", Service, "every flag and safe mode, from the event store (client crates start here)",
        GetSnapshot => FlagSnapshot, queries::snapshot, None),
    query!("flag.evaluate", Service, "a flag's value for a unit: enabled, value, reason, bucket",
        EvaluateFlag => Evaluation, queries::evaluate, Some(ReadModel::Flags)),
    query!("flag.evaluate_batch", Service, "several evaluations in one request",
        EvaluateBatch => Vec<Evaluation>, queries::evaluate_batch, Some(ReadModel::Flags)),
    query!("flag.stats", Viewer, "a flag's outcome windows: counts, rates, average durations",
        FlagStats => Vec<OutcomeWindow>, queries::stats, None),
];

/// The global context: safe mode.
pub const GLOBAL_OPERATIONS: &[Operation] = &[
    command!("global.safe_mode", Operator, "safe mode on or off: every flag answers its off value",
        SetSafeMode => CommandAccepted, commands::safe_mode),
    query!("global.get", Viewer, "safe mode: on or off, who, when, why",
        GetSnapshot => SafeMode, queries::safe_mode, Some(ReadModel::Flags)),
];
