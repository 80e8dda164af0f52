//! The end of a run: when every snapshot item is processed, the completion sweep evaluates the
//! catalog items the snapshot did not cover (changed after the cutoff, or new), so the public
//! catalog is complete at promotion, then `policy.complete_run` is sent. And `policy.fail_run`.
//!
//! Both commands carry a deterministic command id (`complete:<run>:<epoch>`,
//! `fail:<run>:<epoch>`), so a retry returns the original reply.

use std::sync::Arc;

use gatehouse_events::envelope::{Rejection, RejectionCode};
use gatehouse_events::run::{CompleteRun, FailRun, RunStatus};
use gatehouse_rules::CompiledPolicy;

use super::delivery::WorkError;
use super::evaluate::{evaluate_all, Candidate, Verdict};
use super::progress::{self, Run};
use super::store::{self, Results};
use super::Worker;
use crate::client::{ClientError, Sender};

/// The actor the workers' commands are recorded under.
const ACTOR: &str = "gatehouse-worker";

/// Completes `run_id` if it is running and every snapshot item is processed: sweep, then
/// `complete_run` with the run's current epoch (a batch of an older epoch may be the last to
/// commit after a resume). Safe to call any number of times.
pub(crate) async fn complete_if_done(worker: &Worker, run_id: &str) -> Result<(), WorkError> {
    let client = worker.pg.get().await?;
    let Some(run) = progress::read_run(&client, run_id).await? else {
        return Ok(());
    };
    if run.status != RunStatus::Running || progress::processed(&client, run_id).await? < run.total {
        return Ok(());
    }
    drop(client);
    let policy = worker
        .policies
        .get(&worker.pg, &run.policy_id, run.version)
        .await?;
    let swept = sweep(worker, &run.policy_id, run.version, &policy).await?;
    // A run bulk-loads up to millions of results: fresh statistics keep the diff and public
    // catalog queries on index joins (a never-analysed table is planned as nearly empty).
    worker
        .pg
        .get()
        .await?
        .batch_execute("ANALYZE eval_results")
        .await?;
    let command = CompleteRun {
        run_id: run.run_id.clone(),
        epoch: run.epoch,
    };
    let sender = sender(format!("complete:{}:{}", run.run_id, run.epoch));
    match worker
        .client
        .command("policy", "complete_run", &sender, command)
        .await
    {
        Ok(done) => {
            tracing::info!(
                run_id,
                epoch = run.epoch,
                swept,
                duplicate = done.duplicate,
                "run completed"
            );
            Ok(())
        }
        Err(e) => final_or_transient("complete_run", &run, e),
    }
}

/// Evaluates every catalog item without a current result for the version, page by page, and
/// upserts the results outside any run's counters; returns how many it wrote.
pub(crate) async fn sweep(
    worker: &Worker,
    policy_id: &str,
    version: u32,
    policy: &Arc<CompiledPolicy>,
) -> Result<u64, WorkError> {
    // One connection reads (a portal in a read transaction), the other writes each page.
    let mut reader = worker.pg.get().await?;
    let read = reader.transaction().await?;
    let stale = store::open_stale(&read, policy_id, version).await?;
    let page = worker.settings.sweep_page.clamp(1, i64::from(i32::MAX)) as i32;
    let mut written = 0;
    loop {
        let items = store::next_stale(&read, &stale, page).await?;
        if items.is_empty() {
            break;
        }
        let full = items.len() as i32 == page;
        let (items, verdicts) = evaluate_blocking(worker, policy, items).await?;
        let mut writer = worker.pg.get().await?;
        let tx = writer.transaction().await?;
        let results = Results {
            policy_id,
            version,
            run_id: None,
            items: &items,
            verdicts: &verdicts,
        };
        written += store::upsert(&tx, &[results]).await?;
        tx.commit().await?;
        if !full {
            break;
        }
    }
    read.commit().await?;
    Ok(written)
}

/// Evaluates `items` on the blocking pool, split across the configured threads.
pub(crate) async fn evaluate_blocking(
    worker: &Worker,
    policy: &Arc<CompiledPolicy>,
    items: Vec<Candidate>,
) -> Result<(Vec<Candidate>, Vec<Verdict>), WorkError> {
    let policy = Arc::clone(policy);
    let threads = worker.settings.threads;
    tokio::task::spawn_blocking(move || {
        let verdicts = evaluate_all(&policy, &items, threads);
        (items, verdicts)
    })
    .await
    .map_err(|e| match e.try_into_panic() {
        // A bug: the consumer runtime catches it and fails the run with its message.
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(e) => WorkError::Transient(format!("the evaluation task was cancelled: {e}")),
    })
}

/// Fails the run (this epoch) with `reason`. A refusal (the run is not running any more, or
/// is in a newer epoch) is final; a failure to reach the gateway is transient, and the caller
/// retries (the command id makes a retry return the first reply).
pub(crate) async fn fail_run(
    worker: &Worker,
    run_id: &str,
    epoch: u32,
    reason: &str,
) -> Result<(), WorkError> {
    let sender = sender(format!("fail:{run_id}:{epoch}"));
    let command = FailRun {
        run_id: run_id.to_owned(),
        epoch,
        reason: reason.to_owned(),
    };
    match worker
        .client
        .command("policy", "fail_run", &sender, command)
        .await
    {
        Ok(_) => {
            tracing::error!(run_id, epoch, reason, "run failed");
            Ok(())
        }
        Err(ClientError::Rejected(r)) if !is_transient(&r) => {
            tracing::warn!(run_id, epoch, reason, rejection = %r, "fail_run refused");
            Ok(())
        }
        Err(e) => Err(WorkError::transient("fail_run", e)),
    }
}

fn final_or_transient(command: &str, run: &Run, error: ClientError) -> Result<(), WorkError> {
    match error {
        ClientError::Rejected(r) if !is_transient(&r) => {
            // E.g. cancelled or resumed meanwhile: the newer epoch completes it.
            tracing::info!(run_id = %run.run_id, epoch = run.epoch, rejection = %r, "{command} refused");
            Ok(())
        }
        e => Err(WorkError::transient(command, e)),
    }
}

fn is_transient(rejection: &Rejection) -> bool {
    matches!(
        rejection.code,
        RejectionCode::Conflict | RejectionCode::Unavailable | RejectionCode::Internal
    )
}

fn sender(command_id: String) -> Sender {
    Sender {
        actor: ACTOR.into(),
        command_id,
        correlation_id: None,
    }
}
