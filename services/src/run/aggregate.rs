//! The run half of the policy aggregate: Prepare, complete/fail, cancel/resume, Promote. A run
//! lives in its policy's stream (one running run per policy is decided there), so these are
//! inherent methods of [`Policy`].
//!
//! Only coarse facts are events here (a run over a million items records a handful); per-batch
//! progress is committed by workers with the results, and its final counters come back with
//! `complete_run`/`fail_run`.

use chrono::{DateTime, Utc};
use gatehouse_events::policy::PolicyEvent;
use gatehouse_events::run::{
    blocking_reasons, run_id, BlockingReason, PolicyPromoted, RunCancelled, RunCounters, RunFailed,
    RunPrepared, RunResumed, RunStatus, RunSucceeded, MAX_BATCH_SIZE,
};
use serde::{Deserialize, Serialize};

use crate::policy::{Policy, PolicyError};

/// The frozen snapshot the gateway materialized for a Prepare.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub snapshot_id: String,
    pub cutoff: DateTime<Utc>,
    pub total: u64,
}

/// What `prepare` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepare {
    pub version: u32,
    pub snapshot: Snapshot,
    pub batch_size: u32,
    pub coverage_threshold: f64,
    pub max_errors: u64,
}

/// A run as the policy aggregate tracks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub run_id: String,
    pub version: u32,
    pub status: RunStatus,
    pub epoch: u32,
    pub total: u64,
    pub coverage_threshold: f64,
    pub max_errors: u64,
    /// Set when the run ends (success or failure).
    pub counters: Option<RunCounters>,
    pub promoted: bool,
}

impl Policy {
    pub(crate) fn run(&self, id: &str) -> Result<&RunState, PolicyError> {
        self.runs
            .iter()
            .find(|r| r.run_id == id)
            .ok_or_else(|| PolicyError::RunNotFound(id.to_owned()))
    }

    fn running(&self) -> Option<&RunState> {
        self.runs.iter().find(|r| r.status == RunStatus::Running)
    }

    /// Prepare: records the run, and its success at once when the snapshot is empty.
    /// The conditions of a Prepare, checkable before the snapshot is frozen.
    pub fn check_prepare(&self, p: &Prepare) -> Result<(), PolicyError> {
        self.require_exists()?;
        if !self.versions.iter().any(|v| v.version == p.version) {
            return Err(PolicyError::VersionNotFound(p.version));
        }
        if self.active_version == Some(p.version) {
            return Err(PolicyError::VersionAlreadyActive(p.version));
        }
        if let Some(r) = self.running() {
            return Err(PolicyError::RunAlreadyRunning(r.run_id.clone()));
        }
        check_thresholds(p.coverage_threshold, p.batch_size)
    }

    pub(crate) fn prepare(
        &self,
        p: Prepare,
        actor: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<PolicyEvent>, PolicyError> {
        self.check_prepare(&p)?;
        let run_number = self.runs.len() as u32 + 1;
        let id = run_id(self.policy_id.as_deref().unwrap_or_default(), run_number);
        let batches = p.snapshot.total.div_ceil(u64::from(p.batch_size)) as u32;
        let mut events = vec![PolicyEvent::RunPrepared(RunPrepared {
            run_id: id.clone(),
            run_number,
            version: p.version,
            snapshot_id: p.snapshot.snapshot_id,
            snapshot_cutoff: p.snapshot.cutoff,
            total_ready_snapshot: p.snapshot.total,
            batch_size: p.batch_size,
            batches,
            coverage_threshold: p.coverage_threshold,
            max_errors: p.max_errors,
            prepared_by: actor,
            prepared_at: at,
        })];
        if p.snapshot.total == 0 {
            let counters = RunCounters::default();
            events.push(PolicyEvent::RunSucceeded(RunSucceeded {
                run_id: id,
                counters,
                completed_at: at,
            }));
        }
        Ok(events)
    }

    /// Every snapshot item is processed: the run succeeds with these counters.
    pub(crate) fn complete(
        &self,
        id: &str,
        epoch: u32,
        counters: RunCounters,
        at: DateTime<Utc>,
    ) -> Result<PolicyEvent, PolicyError> {
        let run = self.current_epoch(id, epoch)?;
        let counters = RunCounters {
            total_ready_snapshot: run.total,
            ..counters
        };
        if !counters.is_consistent() {
            return Err(PolicyError::InconsistentCounters(counters));
        }
        if counters.processed != run.total {
            return Err(PolicyError::RunIncomplete {
                processed: counters.processed,
                total: run.total,
            });
        }
        Ok(PolicyEvent::RunSucceeded(RunSucceeded {
            run_id: id.to_owned(),
            counters,
            completed_at: at,
        }))
    }

    /// A fatal error: the run fails; its cursor and counters stay for a resume.
    pub(crate) fn fail(
        &self,
        id: &str,
        epoch: u32,
        reason: String,
        counters: RunCounters,
        at: DateTime<Utc>,
    ) -> Result<PolicyEvent, PolicyError> {
        let run = self.current_epoch(id, epoch)?;
        let counters = RunCounters {
            total_ready_snapshot: run.total,
            ..counters
        };
        Ok(PolicyEvent::RunFailed(RunFailed {
            run_id: id.to_owned(),
            reason,
            counters,
            failed_at: at,
        }))
    }

    pub(crate) fn cancel(
        &self,
        id: &str,
        actor: String,
        at: DateTime<Utc>,
    ) -> Result<PolicyEvent, PolicyError> {
        let run = self.run(id)?;
        if run.status != RunStatus::Running {
            return Err(PolicyError::RunNotRunning {
                run_id: id.to_owned(),
                status: run.status,
            });
        }
        Ok(PolicyEvent::RunCancelled(RunCancelled {
            run_id: id.to_owned(),
            cancelled_by: actor,
            cancelled_at: at,
        }))
    }

    /// Resume a failed or cancelled run whose version is still a candidate (not active).
    pub(crate) fn resume(
        &self,
        id: &str,
        actor: String,
        at: DateTime<Utc>,
    ) -> Result<PolicyEvent, PolicyError> {
        let run = self.run(id)?;
        if !matches!(run.status, RunStatus::Failed | RunStatus::Cancelled) {
            return Err(PolicyError::RunNotResumable {
                run_id: id.to_owned(),
                status: run.status,
            });
        }
        if self.active_version == Some(run.version) {
            return Err(PolicyError::VersionAlreadyActive(run.version));
        }
        if let Some(other) = self.running() {
            return Err(PolicyError::RunAlreadyRunning(other.run_id.clone()));
        }
        let epoch = run.epoch + 1;
        Ok(PolicyEvent::RunResumed(RunResumed {
            run_id: id.to_owned(),
            epoch,
            resumed_by: actor,
            resumed_at: at,
        }))
    }

    /// Promote: only from `success` and only when the thresholds `(coverage, max_errors)` hold.
    /// `progress` counts an unfinished run (whose counters are recorded only when it ends).
    pub(crate) fn promote(
        &self,
        id: &str,
        (threshold, max_errors): (f64, u64),
        progress: RunCounters,
        actor: String,
        at: DateTime<Utc>,
    ) -> Result<PolicyEvent, PolicyError> {
        let run = self.run(id)?;
        check_thresholds(threshold, 1)?;
        if run.promoted {
            return Err(PolicyError::RunAlreadyPromoted {
                run_id: id.to_owned(),
                version: run.version,
                active: self.active_version,
            });
        }
        if self.active_version == Some(run.version) {
            return Err(PolicyError::VersionAlreadyActive(run.version));
        }
        self.check_second_approver(run.version, &actor)?;
        let counters = run.counters.unwrap_or(RunCounters {
            total_ready_snapshot: run.total,
            ..progress
        });
        let reasons = blocking_reasons(run.status, &counters, threshold, max_errors);
        if !reasons.is_empty() {
            return Err(PolicyError::PromoteBlocked(reasons));
        }
        Ok(PolicyEvent::PolicyPromoted(PolicyPromoted {
            version: run.version,
            previous_version: self.active_version,
            run_id: id.to_owned(),
            counters,
            coverage_threshold: threshold,
            max_errors,
            promoted_by: actor,
            promoted_at: at,
        }))
    }

    /// Four-eyes: with `require_second_approver`, the author of `version` may not promote it.
    fn check_second_approver(&self, version: u32, promoter: &str) -> Result<(), PolicyError> {
        let author = self.version(version).map(|v| v.author.as_str());
        match author {
            Some(author) if self.require_second_approver && author == promoter => {
                Err(PolicyError::ApprovalRequired {
                    version,
                    author: author.to_owned(),
                    promoter: promoter.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    fn current_epoch(&self, id: &str, epoch: u32) -> Result<&RunState, PolicyError> {
        let run = self.run(id)?;
        if run.status != RunStatus::Running {
            return Err(PolicyError::RunNotRunning {
                run_id: id.to_owned(),
                status: run.status,
            });
        }
        if run.epoch != epoch {
            return Err(PolicyError::StaleEpoch {
                current: run.epoch,
                given: epoch,
            });
        }
        Ok(run)
    }

    /// Folds a run event into the state.
    pub(crate) fn run_prepared(&mut self, e: RunPrepared) {
        self.runs.push(RunState {
            run_id: e.run_id,
            version: e.version,
            status: RunStatus::Running,
            epoch: 1,
            total: e.total_ready_snapshot,
            coverage_threshold: e.coverage_threshold,
            max_errors: e.max_errors,
            counters: None,
            promoted: false,
        });
    }

    pub(crate) fn run_resumed(&mut self, e: RunResumed) {
        if let Some(r) = self.runs.iter_mut().find(|r| r.run_id == e.run_id) {
            r.status = RunStatus::Running;
            r.epoch = e.epoch;
        }
    }

    pub(crate) fn promoted(&mut self, e: PolicyPromoted) {
        self.active_version = Some(e.version);
        if let Some(r) = self.runs.iter_mut().find(|r| r.run_id == e.run_id) {
            r.promoted = true;
        }
    }

    pub(crate) fn end_run(&mut self, id: &str, status: RunStatus, counters: Option<RunCounters>) {
        if let Some(r) = self.runs.iter_mut().find(|r| r.run_id == id) {
            r.status = status;
            if counters.is_some() {
                r.counters = counters;
            }
        }
    }
}

fn check_thresholds(coverage_threshold: f64, batch_size: u32) -> Result<(), PolicyError> {
    if !(0.0..=1.0).contains(&coverage_threshold) {
        return Err(PolicyError::InvalidThreshold(coverage_threshold));
    }
    if batch_size == 0 || batch_size > MAX_BATCH_SIZE {
        return Err(PolicyError::InvalidBatchSize(batch_size));
    }
    Ok(())
}

/// `version 1; version 2 is active now`, or `version 1 is active`, for error messages.
pub fn describe_promoted(version: u32, active: Option<u32>) -> String {
    match active {
        Some(a) if a == version => format!("version {version} is active"),
        Some(a) => format!("version {version}; version {a} is active now"),
        None => format!("version {version}; no version is active now"),
    }
}

/// The reasons, for error messages.
pub fn describe(reasons: &[BlockingReason]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
