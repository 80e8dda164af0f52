//! Evaluation runs: Prepare a policy version over a frozen catalog snapshot, watch it, diff it,
//! cancel/resume it, and Promote it.
//!
//! Runs live in their policy's event stream (aggregate `policy`), so that "one running run per
//! policy" and "only a promotion changes the active version" are decided atomically. A run id is
//! `<policy_id>:<run_number>`. Per-batch progress is not an event: workers commit it together with
//! the batch's results (see docs/architecture.md).
//!
//! Commands (`<ns>.cmd.policy.<name>`): `prepare`, `cancel_run`, `resume_run`, `promote`, and
//! the workers' `complete_run`, `fail_run`. Queries (`<ns>.query.run.<name>`): `get`, `list`, `diff`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Default and bounds of the items per evaluation batch.
pub const DEFAULT_BATCH_SIZE: u32 = 1_000;
pub const MAX_BATCH_SIZE: u32 = 20_000;
/// At most this many error samples are kept per run, each message at most 500 characters.
pub const MAX_ERROR_SAMPLES: usize = 10;
pub const MAX_ERROR_MESSAGE: usize = 500;
/// Items listed per change kind in a diff.
pub const DIFF_TOP: usize = 50;

/// The policy id of run `<policy_id>:<n>`.
pub fn policy_of(run_id: &str) -> Option<&str> {
    let (policy, n) = run_id.rsplit_once(':')?;
    (!policy.is_empty() && n.parse::<u32>().is_ok()).then_some(policy)
}

/// `<policy_id>:<n>`.
pub fn run_id(policy_id: &str, run_number: u32) -> String {
    format!("{policy_id}:{run_number}")
}

// ----- commands -----

/// `prepare`: evaluate `version` over every ready item as of now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PrepareRun {
    pub policy_id: String,
    pub version: u32,
    /// Items per batch job (default 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// The run is ready to promote only with coverage at least this (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_threshold: Option<f64>,
    /// ... and at most this many errors (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<u64>,
}

/// `cancel_run`, `resume_run`: address one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RunRef {
    pub run_id: String,
}

/// `promote`: make the run's version active, if the thresholds hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PromoteRun {
    pub run_id: String,
    /// Default 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_threshold: Option<f64>,
    /// Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<u64>,
}

/// `fail_run` (workers): a fatal error stops the run; cursor and counters are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FailRun {
    pub run_id: String,
    pub epoch: u32,
    pub reason: String,
}

/// `complete_run` (workers): every snapshot item is processed; the gateway reads the counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CompleteRun {
    pub run_id: String,
    pub epoch: u32,
}

// ----- event payloads (variants of `policy::PolicyEvent`) -----

/// The counters of a run. Invariant: the five outcomes add up to `processed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunCounters {
    pub total_ready_snapshot: u64,
    pub processed: u64,
    /// Allowed.
    pub eligible: u64,
    /// Denied.
    pub ineligible: u64,
    pub quarantined: u64,
    /// In the snapshot but no longer ready (or deleted) when evaluated: decision deferred.
    pub pending: u64,
    /// Could not be evaluated (attribute schema mismatch, runtime CEL error).
    pub errors: u64,
}

impl RunCounters {
    /// `processed / total_ready_snapshot` (1.0 for an empty snapshot).
    pub fn coverage(&self) -> f64 {
        if self.total_ready_snapshot == 0 {
            1.0
        } else {
            self.processed as f64 / self.total_ready_snapshot as f64
        }
    }

    /// Do the outcomes add up to `processed`?
    pub fn is_consistent(&self) -> bool {
        self.eligible + self.ineligible + self.quarantined + self.pending + self.errors
            == self.processed
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunPrepared {
    pub run_id: String,
    pub run_number: u32,
    pub version: u32,
    /// The frozen snapshot's id (rows of `run_snapshot`).
    pub snapshot_id: String,
    /// Items ready, not deleted and updated at or before this time form the snapshot.
    pub snapshot_cutoff: DateTime<Utc>,
    pub total_ready_snapshot: u64,
    pub batch_size: u32,
    pub batches: u32,
    pub coverage_threshold: f64,
    pub max_errors: u64,
    pub prepared_by: String,
    pub prepared_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunSucceeded {
    pub run_id: String,
    pub counters: RunCounters,
    pub completed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunFailed {
    pub run_id: String,
    pub reason: String,
    pub counters: RunCounters,
    pub failed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunCancelled {
    pub run_id: String,
    pub cancelled_by: String,
    pub cancelled_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunResumed {
    pub run_id: String,
    /// Jobs of earlier epochs are ignored by workers.
    pub epoch: u32,
    pub resumed_by: String,
    pub resumed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PolicyPromoted {
    pub version: u32,
    pub previous_version: Option<u32>,
    pub run_id: String,
    pub counters: RunCounters,
    pub coverage_threshold: f64,
    pub max_errors: u64,
    pub promoted_by: String,
    pub promoted_at: DateTime<Utc>,
}

// ----- status, queries, jobs, notifications -----

/// A run's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Success,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "running" => RunStatus::Running,
            "success" => RunStatus::Success,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => return None,
        })
    }
}

/// Why a run is not ready to promote: one entry per failed condition, with its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "condition", rename_all = "snake_case")]
pub enum BlockingReason {
    /// The run is not `success`.
    Status { status: RunStatus },
    /// `coverage < threshold`.
    Coverage {
        coverage: f64,
        threshold: f64,
        processed: u64,
        total_ready_snapshot: u64,
    },
    /// `errors > max_errors`.
    Errors { errors: u64, max_errors: u64 },
}

impl std::fmt::Display for BlockingReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockingReason::Status { status } => write!(f, "status is {}, not success", status.as_str()),
            BlockingReason::Coverage { coverage, threshold, processed, total_ready_snapshot } => write!(
                f,
                "coverage {coverage:.4} ({processed}/{total_ready_snapshot}) is below the threshold {threshold}"
            ),
            BlockingReason::Errors { errors, max_errors } => write!(f, "{errors} errors exceed the maximum {max_errors}"),
        }
    }
}

/// `ready_to_promote = status = success AND coverage >= threshold AND errors <= max_errors`;
/// the reasons it does not hold (empty: ready).
pub fn blocking_reasons(
    status: RunStatus,
    counters: &RunCounters,
    threshold: f64,
    max_errors: u64,
) -> Vec<BlockingReason> {
    let mut reasons = Vec::new();
    if status != RunStatus::Success {
        reasons.push(BlockingReason::Status { status });
    }
    let coverage = counters.coverage();
    if coverage < threshold {
        reasons.push(BlockingReason::Coverage {
            coverage,
            threshold,
            processed: counters.processed,
            total_ready_snapshot: counters.total_ready_snapshot,
        });
    }
    if counters.errors > max_errors {
        reasons.push(BlockingReason::Errors {
            errors: counters.errors,
            max_errors,
        });
    }
    reasons
}

/// One error sample of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorSample {
    pub item_id: String,
    pub message: String,
}

/// `run.get`: one run's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunView {
    pub run_id: String,
    pub policy_id: String,
    pub version: u32,
    pub status: RunStatus,
    pub epoch: u32,
    pub counters: RunCounters,
    pub coverage: f64,
    pub coverage_threshold: f64,
    pub max_errors: u64,
    pub ready_to_promote: bool,
    pub blocking_reasons: Vec<BlockingReason>,
    /// Batches done, of `batches`; `cursor` is the first batch not done yet.
    pub batches: u32,
    pub batches_done: u32,
    pub cursor: u32,
    pub snapshot_cutoff: DateTime<Utc>,
    pub error_samples: Vec<ErrorSample>,
    pub failure: Option<String>,
    pub promoted: bool,
    pub prepared_by: String,
    pub prepared_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// `run.get` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GetRun {
    pub run_id: String,
}

/// `run.list`: newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ListRuns {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
}

/// `run.diff`: a successful run's results against the active version's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DiffRun {
    pub run_id: String,
}

/// The answer to `run.diff`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunDiff {
    pub run_id: String,
    pub policy_id: String,
    pub version: u32,
    /// The version compared against (`None`: nothing active, every item is newly evaluated).
    pub active_version: Option<u32>,
    /// Allowed before, denied or quarantined now.
    pub regressions: u64,
    /// Denied or quarantined before, allowed now.
    pub improvements: u64,
    pub unchanged: u64,
    /// Changed between deny, quarantine, pending and error without involving allow.
    pub other_changes: u64,
    /// No result for the active version.
    pub newly_evaluated: u64,
    /// Top items of each change, by the new score.
    pub top_regressions: Vec<DiffItem>,
    pub top_improvements: Vec<DiffItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DiffItem {
    pub item_id: String,
    pub score: f64,
    pub before: String,
    pub after: String,
    pub rule_id: Option<String>,
    pub reason: String,
}

/// A batch job on the work-queue stream `<NS>_JOBS` (`<ns>.jobs.evaluate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EvaluationJob {
    pub run_id: String,
    pub policy_id: String,
    pub version: u32,
    pub epoch: u32,
    pub snapshot_id: String,
    pub batch: u32,
    /// Snapshot ordinals `[from, to)`.
    pub from: u64,
    pub to: u64,
}

impl EvaluationJob {
    /// `Nats-Msg-Id`: `<run_id>:<epoch>:<batch>`.
    pub fn message_id(&self) -> String {
        format!("{}:{}:{}", self.run_id, self.epoch, self.batch)
    }
}

/// The public `policy.promoted` notification (`<ns>.notify.policy.promoted`, durable, and
/// `<ns>.live.policy.promoted`, core).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PolicyPromotedNotice {
    pub policy_id: String,
    pub version: u32,
    pub previous_version: Option<u32>,
    pub run_id: String,
    pub counters: RunCounters,
    pub promoted_by: String,
    pub promoted_at: DateTime<Utc>,
    /// The policy event's sequence: notices of one policy are in this order.
    pub sequence: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(processed: u64, total: u64, errors: u64) -> RunCounters {
        RunCounters {
            total_ready_snapshot: total,
            processed,
            eligible: processed - errors,
            errors,
            ..Default::default()
        }
    }

    #[test]
    fn a_coverage_threshold_parses_to_the_nearest_double() {
        // The workspace enables serde_json's `float_roundtrip`: its default parser can be one
        // unit in the last place off on such text. Rust's own parser is exact.
        for text in [
            "0.1",
            "0.30000000000000004",
            "1.38e-23",
            "0.9999999999999999",
        ] {
            let json = format!(r#"{{"run_id": "media:1", "coverage_threshold": {text}}}"#);
            let promote: PromoteRun = serde_json::from_str(&json).unwrap();
            assert_eq!(
                promote.coverage_threshold,
                Some(text.parse().unwrap()),
                "{text}"
            );
        }
    }

    #[test]
    fn a_run_id_names_its_policy() {
        assert_eq!(policy_of(&run_id("media-v2", 7)), Some("media-v2"));
        assert_eq!(policy_of("media"), None);
        assert_eq!(policy_of("media:x"), None);
    }

    #[test]
    fn a_successful_complete_run_within_thresholds_has_no_blocking_reason() {
        assert!(blocking_reasons(RunStatus::Success, &counters(10, 10, 0), 1.0, 0).is_empty());
    }

    #[test]
    fn every_failed_condition_is_named_with_its_numbers() {
        let reasons = blocking_reasons(RunStatus::Running, &counters(5, 10, 2), 1.0, 0);
        assert_eq!(reasons.len(), 3);
        assert!(reasons[1].to_string().contains("5/10"));
        assert!(reasons[2].to_string().contains("2 errors"));
    }

    #[test]
    fn an_empty_snapshot_has_full_coverage() {
        assert_eq!(RunCounters::default().coverage(), 1.0);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn status() -> impl Strategy<Value = RunStatus> {
            prop_oneof![
                Just(RunStatus::Running),
                Just(RunStatus::Success),
                Just(RunStatus::Failed),
                Just(RunStatus::Cancelled)
            ]
        }

        proptest! {
            /// P1: ready_to_promote is exactly
            /// `status = success AND coverage >= threshold AND errors <= max_errors`.
            #[test]
            fn ready_to_promote_is_exactly_the_formula(
                status in status(),
                total in 0u64..2_000,
                done in 0u64..2_000,
                errors in 0u64..50,
                threshold in 0.0f64..=1.0,
                max_errors in 0u64..50,
            ) {
                let processed = done.min(total);
                let errors = errors.min(processed);
                let counters = RunCounters {
                    total_ready_snapshot: total,
                    processed,
                    eligible: processed - errors,
                    errors,
                    ..Default::default()
                };
                let coverage = if total == 0 { 1.0 } else { processed as f64 / total as f64 };
                let formula = status == RunStatus::Success && coverage >= threshold && errors <= max_errors;
                let reasons = blocking_reasons(status, &counters, threshold, max_errors);
                prop_assert_eq!(reasons.is_empty(), formula);
                // Each failed condition is named exactly once.
                let failed = usize::from(status != RunStatus::Success)
                    + usize::from(coverage < threshold)
                    + usize::from(errors > max_errors);
                prop_assert_eq!(reasons.len(), failed);
            }
        }
    }
}
