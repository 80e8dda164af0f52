//! Given/when/then tests of the run lifecycle, and property P2 (Promote succeeds only from
//! `success`).

use chrono::DateTime;
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use gatehouse_events::policy::{PolicyCreated, PolicyEvent, PolicyVersionDrafted};
use gatehouse_events::rules::{Decision, RulesDocument};
use gatehouse_events::run::*;
use proptest::prelude::*;

use super::*;
use crate::policy::aggregate::rules_hash;
use crate::policy::PolicyCommand;

type PolicyTest = TestFramework<Policy>;

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn rules() -> RulesDocument {
    RulesDocument {
        rules: vec![],
        default_decision: Decision::Allow,
        default_reason: "default".into(),
        score: "1.0".into(),
    }
}

fn history(versions: u32) -> Vec<PolicyEvent> {
    let mut events = vec![PolicyEvent::PolicyCreated(PolicyCreated {
        policy_id: "media".into(),
        name: "Media".into(),
        description: String::new(),
        attributes: Default::default(),
        created_by: "alice".into(),
        created_at: at(),
        require_second_approver: false,
    })];
    for v in 1..=versions {
        events.push(PolicyEvent::PolicyVersionDrafted(PolicyVersionDrafted {
            version: v,
            rules: rules(),
            notes: String::new(),
            author: "bob".into(),
            restored_from: None,
            rules_hash: rules_hash(&rules()),
            drafted_at: at(),
        }));
    }
    events
}

fn prepare(version: u32, total: u64) -> PolicyCommand {
    PolicyCommand::Prepare {
        prepare: Prepare {
            version,
            snapshot: Snapshot {
                snapshot_id: "s1".into(),
                cutoff: at(),
                total,
            },
            batch_size: 100,
            coverage_threshold: 1.0,
            max_errors: 0,
        },
        actor: "carol".into(),
        at: at(),
    }
}

fn prepared(run_number: u32, version: u32, total: u64) -> PolicyEvent {
    PolicyEvent::RunPrepared(RunPrepared {
        run_id: run_id("media", run_number),
        run_number,
        version,
        snapshot_id: "s1".into(),
        snapshot_cutoff: at(),
        total_ready_snapshot: total,
        batch_size: 100,
        batches: total.div_ceil(100) as u32,
        coverage_threshold: 1.0,
        max_errors: 0,
        prepared_by: "carol".into(),
        prepared_at: at(),
    })
}

fn counters(total: u64, processed: u64, errors: u64) -> RunCounters {
    RunCounters {
        total_ready_snapshot: total,
        processed,
        eligible: processed - errors,
        errors,
        ..Default::default()
    }
}

fn succeeded(total: u64, errors: u64) -> PolicyEvent {
    PolicyEvent::RunSucceeded(RunSucceeded {
        run_id: "media:1".into(),
        counters: counters(total, total, errors),
        completed_at: at(),
    })
}

fn promote(coverage_threshold: f64, max_errors: u64) -> PolicyCommand {
    promote_with_progress(coverage_threshold, max_errors, RunCounters::default())
}

fn promote_with_progress(
    coverage_threshold: f64,
    max_errors: u64,
    progress: RunCounters,
) -> PolicyCommand {
    PolicyCommand::Promote {
        command: PromoteRun {
            run_id: "media:1".into(),
            coverage_threshold: Some(coverage_threshold),
            max_errors: Some(max_errors),
        },
        progress,
        actor: "dave".into(),
        at: at(),
    }
}

fn complete(processed: u64) -> PolicyCommand {
    PolicyCommand::CompleteRun {
        command: CompleteRun {
            run_id: "media:1".into(),
            epoch: 1,
        },
        counters: counters(0, processed, 0),
        at: at(),
    }
}

#[tokio::test]
async fn prepare_records_a_run_with_its_frozen_snapshot() {
    PolicyTest::with(())
        .given(history(1))
        .when_async(prepare(1, 250))
        .await
        .then_expect_events(vec![prepared(1, 1, 250)]);
}

#[tokio::test]
async fn prepare_of_an_empty_snapshot_succeeds_at_once() {
    PolicyTest::with(())
        .given(history(1))
        .when_async(prepare(1, 0))
        .await
        .then_expect_events(vec![
            prepared(1, 1, 0),
            PolicyEvent::RunSucceeded(RunSucceeded {
                run_id: "media:1".into(),
                counters: RunCounters::default(),
                completed_at: at(),
            }),
        ]);
}

#[tokio::test]
async fn prepare_of_a_missing_version_is_rejected() {
    PolicyTest::with(())
        .given(history(1))
        .when_async(prepare(2, 10))
        .await
        .then_expect_error(PolicyError::VersionNotFound(2));
}

#[tokio::test]
async fn prepare_while_another_run_is_running_names_that_run() {
    let mut given = history(2);
    given.push(prepared(1, 1, 10));
    PolicyTest::with(())
        .given(given)
        .when_async(prepare(2, 10))
        .await
        .then_expect_error(PolicyError::RunAlreadyRunning("media:1".into()));
}

#[tokio::test]
async fn prepare_of_the_active_version_is_rejected() {
    let mut given = history(1);
    given.extend([prepared(1, 1, 10), succeeded(10, 0)]);
    given.push(PolicyEvent::PolicyPromoted(PolicyPromoted {
        version: 1,
        previous_version: None,
        run_id: "media:1".into(),
        counters: counters(10, 10, 0),
        coverage_threshold: 1.0,
        max_errors: 0,
        promoted_by: "dave".into(),
        promoted_at: at(),
    }));
    PolicyTest::with(())
        .given(given)
        .when_async(prepare(1, 10))
        .await
        .then_expect_error(PolicyError::VersionAlreadyActive(1));
}

#[tokio::test]
async fn complete_before_every_item_is_processed_is_rejected() {
    let mut given = history(1);
    given.push(prepared(1, 1, 10));
    PolicyTest::with(())
        .given(given)
        .when_async(complete(9))
        .await
        .then_expect_error(PolicyError::RunIncomplete {
            processed: 9,
            total: 10,
        });
}

#[tokio::test]
async fn complete_with_every_item_processed_succeeds() {
    let mut given = history(1);
    given.push(prepared(1, 1, 10));
    PolicyTest::with(())
        .given(given)
        .when_async(complete(10))
        .await
        .then_expect_events(vec![succeeded(10, 0)]);
}

#[tokio::test]
async fn a_stale_epoch_cannot_complete_a_resumed_run() {
    let mut given = history(1);
    given.push(prepared(1, 1, 10));
    given.push(PolicyEvent::RunCancelled(RunCancelled {
        run_id: "media:1".into(),
        cancelled_by: "x".into(),
        cancelled_at: at(),
    }));
    given.push(PolicyEvent::RunResumed(RunResumed {
        run_id: "media:1".into(),
        epoch: 2,
        resumed_by: "x".into(),
        resumed_at: at(),
    }));
    PolicyTest::with(())
        .given(given)
        .when_async(complete(10))
        .await
        .then_expect_error(PolicyError::StaleEpoch {
            current: 2,
            given: 1,
        });
}

#[tokio::test]
async fn cancel_is_only_for_a_running_run() {
    let mut given = history(1);
    given.extend([prepared(1, 1, 10), succeeded(10, 0)]);
    let cmd = PolicyCommand::CancelRun {
        command: RunRef {
            run_id: "media:1".into(),
        },
        actor: "x".into(),
        at: at(),
    };
    PolicyTest::with(())
        .given(given)
        .when_async(cmd)
        .await
        .then_expect_error(PolicyError::RunNotRunning {
            run_id: "media:1".into(),
            status: RunStatus::Success,
        });
}

#[tokio::test]
async fn resume_of_a_cancelled_run_starts_a_new_epoch() {
    let mut given = history(1);
    given.push(prepared(1, 1, 10));
    given.push(PolicyEvent::RunCancelled(RunCancelled {
        run_id: "media:1".into(),
        cancelled_by: "x".into(),
        cancelled_at: at(),
    }));
    let cmd = PolicyCommand::ResumeRun {
        command: RunRef {
            run_id: "media:1".into(),
        },
        actor: "y".into(),
        at: at(),
    };
    PolicyTest::with(())
        .given(given)
        .when_async(cmd)
        .await
        .then_expect_events(vec![PolicyEvent::RunResumed(RunResumed {
            run_id: "media:1".into(),
            epoch: 2,
            resumed_by: "y".into(),
            resumed_at: at(),
        })]);
}

#[tokio::test]
async fn resume_of_a_running_run_is_rejected() {
    let mut given = history(1);
    given.push(prepared(1, 1, 10));
    let cmd = PolicyCommand::ResumeRun {
        command: RunRef {
            run_id: "media:1".into(),
        },
        actor: "y".into(),
        at: at(),
    };
    let result = PolicyTest::with(()).given(given).when_async(cmd).await;
    assert!(matches!(
        result.inspect_result(),
        Err(PolicyError::RunNotResumable { .. })
    ));
}

#[tokio::test]
async fn promote_of_a_successful_run_switches_the_active_version() {
    let mut given = history(1);
    given.extend([prepared(1, 1, 10), succeeded(10, 0)]);
    let result = PolicyTest::with(())
        .given(given)
        .when_async(promote(1.0, 0))
        .await;
    let events = result.inspect_result().unwrap();
    assert!(
        matches!(&events[..], [PolicyEvent::PolicyPromoted(p)] if p.version == 1 && p.previous_version.is_none())
    );
}

/// [`history`] of a policy that requires a second approver; its versions are bob's.
fn four_eyes_history(versions: u32) -> Vec<PolicyEvent> {
    let mut events = history(versions);
    if let PolicyEvent::PolicyCreated(created) = &mut events[0] {
        created.require_second_approver = true;
    }
    events
}

fn promote_by(actor: &str) -> PolicyCommand {
    match promote(1.0, 0) {
        PolicyCommand::Promote {
            command,
            progress,
            at,
            ..
        } => PolicyCommand::Promote {
            command,
            progress,
            actor: actor.into(),
            at,
        },
        other => other,
    }
}

#[tokio::test]
async fn promote_by_the_versions_author_is_refused_when_a_second_approver_is_required() {
    let mut given = four_eyes_history(1);
    given.extend([prepared(1, 1, 10), succeeded(10, 0)]);
    PolicyTest::with(())
        .given(given)
        .when_async(promote_by("bob"))
        .await
        .then_expect_error(PolicyError::ApprovalRequired {
            version: 1,
            author: "bob".into(),
            promoter: "bob".into(),
        });
}

#[tokio::test]
async fn promote_by_someone_other_than_the_author_passes_four_eyes() {
    let mut given = four_eyes_history(1);
    given.extend([prepared(1, 1, 10), succeeded(10, 0)]);
    let result = PolicyTest::with(())
        .given(given)
        .when_async(promote_by("dave"))
        .await;
    let events = result.inspect_result().unwrap();
    assert!(matches!(&events[..], [PolicyEvent::PolicyPromoted(p)] if p.promoted_by == "dave"));
}

#[tokio::test]
async fn without_four_eyes_the_author_may_promote_their_own_version() {
    let mut given = history(1);
    given.extend([prepared(1, 1, 10), succeeded(10, 0)]);
    let result = PolicyTest::with(())
        .given(given)
        .when_async(promote_by("bob"))
        .await;
    assert!(result.inspect_result().is_ok());
}

#[test]
fn the_approval_required_message_names_the_author_and_the_promoter() {
    let e = PolicyError::ApprovalRequired {
        version: 2,
        author: "bob".into(),
        promoter: "bob".into(),
    };
    let message = e.to_string();
    assert!(
        message.contains("version 2") && message.contains("`bob`"),
        "{message}"
    );
}

#[tokio::test]
async fn promote_below_the_error_threshold_is_rejected_with_its_reason() {
    let mut given = history(1);
    given.extend([prepared(1, 1, 10), succeeded(10, 3)]);
    PolicyTest::with(())
        .given(given)
        .when_async(promote(1.0, 0))
        .await
        .then_expect_error(PolicyError::PromoteBlocked(vec![BlockingReason::Errors {
            errors: 3,
            max_errors: 0,
        }]));
}

#[tokio::test]
async fn promote_from_running_is_rejected() {
    let mut given = history(1);
    given.push(prepared(1, 1, 10));
    let result = PolicyTest::with(())
        .given(given)
        .when_async(promote(1.0, 0))
        .await;
    assert!(
        matches!(result.inspect_result(), Err(PolicyError::PromoteBlocked(r)) if r.iter().any(|r| matches!(r, BlockingReason::Status { .. })))
    );
}

#[tokio::test]
async fn a_promoted_run_cannot_be_promoted_again() {
    let mut given = history(1);
    given.extend([prepared(1, 1, 10), succeeded(10, 0)]);
    let mut policy = Policy::default();
    for e in given.clone() {
        policy.apply(e);
    }
    let promoted = policy
        .promote(
            "media:1",
            (1.0, 0),
            RunCounters::default(),
            "d".into(),
            at(),
        )
        .unwrap();
    given.push(promoted);
    PolicyTest::with(())
        .given(given)
        .when_async(promote(1.0, 0))
        .await
        .then_expect_error(PolicyError::RunAlreadyPromoted {
            run_id: "media:1".into(),
            version: 1,
            active: Some(1),
        });
}

#[tokio::test]
async fn promote_of_a_run_promoted_before_says_so_while_another_version_is_active() {
    let mut given = history(2);
    given.extend([prepared(1, 1, 10), succeeded(10, 0)]);
    given.push(promoted("media:1", 1, None));
    given.extend([
        prepared(2, 2, 10),
        PolicyEvent::RunSucceeded(RunSucceeded {
            run_id: "media:2".into(),
            counters: counters(10, 10, 0),
            completed_at: at(),
        }),
    ]);
    given.push(promoted("media:2", 2, Some(1)));
    PolicyTest::with(())
        .given(given)
        .when_async(promote(1.0, 0))
        .await
        .then_expect_error_message(
            "run media:1 was already promoted (version 1; version 2 is active now)",
        );
}

#[tokio::test]
async fn promote_of_a_cancelled_run_blocks_with_the_progress_it_made() {
    let mut given = history(1);
    given.push(prepared(1, 1, 10));
    given.push(PolicyEvent::RunCancelled(RunCancelled {
        run_id: "media:1".into(),
        cancelled_by: "carol".into(),
        cancelled_at: at(),
    }));
    PolicyTest::with(())
        .given(given)
        .when_async(promote_with_progress(1.0, 0, counters(0, 4, 0)))
        .await
        .then_expect_error(PolicyError::PromoteBlocked(vec![
            BlockingReason::Status {
                status: RunStatus::Cancelled,
            },
            BlockingReason::Coverage {
                coverage: 0.4,
                threshold: 1.0,
                processed: 4,
                total_ready_snapshot: 10,
            },
        ]));
}

fn promoted(run_id: &str, version: u32, previous_version: Option<u32>) -> PolicyEvent {
    PolicyEvent::PolicyPromoted(PolicyPromoted {
        version,
        previous_version,
        run_id: run_id.into(),
        counters: counters(10, 10, 0),
        coverage_threshold: 1.0,
        max_errors: 0,
        promoted_by: "dave".into(),
        promoted_at: at(),
    })
}

/// Builds a policy whose run 1 ended in `status` with `errors` errors out of 10 items.
fn with_run(status: RunStatus, errors: u64) -> Policy {
    let mut events = history(1);
    events.push(prepared(1, 1, 10));
    let c = counters(
        10,
        if status == RunStatus::Running { 5 } else { 10 },
        errors.min(5),
    );
    match status {
        RunStatus::Running => {}
        RunStatus::Success => events.push(PolicyEvent::RunSucceeded(RunSucceeded {
            run_id: "media:1".into(),
            counters: c,
            completed_at: at(),
        })),
        RunStatus::Failed => events.push(PolicyEvent::RunFailed(RunFailed {
            run_id: "media:1".into(),
            reason: "x".into(),
            counters: c,
            failed_at: at(),
        })),
        RunStatus::Cancelled => events.push(PolicyEvent::RunCancelled(RunCancelled {
            run_id: "media:1".into(),
            cancelled_by: "x".into(),
            cancelled_at: at(),
        })),
    }
    let mut policy = Policy::default();
    for e in events {
        policy.apply(e);
    }
    policy
}

proptest! {
    /// P2: Promote succeeds only from `success`, whatever the thresholds.
    #[test]
    fn promote_succeeds_only_from_success(
        status in prop_oneof![Just(RunStatus::Running), Just(RunStatus::Success), Just(RunStatus::Failed), Just(RunStatus::Cancelled)],
        errors in 0u64..5,
        threshold in 0.0f64..=1.0,
        max_errors in 0u64..10,
    ) {
        let policy = with_run(status, errors);
        let outcome = policy.promote("media:1", (threshold, max_errors), RunCounters::default(), "d".into(), at());
        if status != RunStatus::Success {
            prop_assert!(outcome.is_err());
        }
        if outcome.is_ok() {
            prop_assert_eq!(status, RunStatus::Success);
        }
    }
}
