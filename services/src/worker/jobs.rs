//! The batch workers: evaluate one snapshot range per job from the work queue `<NS>_JOBS`
//! (durable `<ns>_workers`, shared by every worker process; each takes `jobs_in_flight` jobs at
//! a time, so more processes go faster).
//!
//! Per job: check the run in the `runs` read model (a cancelled run, or a job of an older
//! epoch, is dropped; a run not projected yet is waited for), load the compiled version, read
//! the range, evaluate it on the blocking pool, commit (counted once), ack. The batch that
//! brings `processed` to the snapshot's total completes the run. A job that cannot succeed
//! (the version does not compile) or panics (a bug) fails the run with the reason and is acked;
//! an outage is retried without limit and never fails the run.

use std::sync::Arc;

use async_nats::jetstream::Message;
use async_trait::async_trait;
use gatehouse_events::run::{EvaluationJob, RunStatus};
use gatehouse_projections::consumer::{Handler, Outcome};
use gatehouse_rules::CompiledPolicy;
use tracing::Instrument;

use super::completion::{complete_if_done, evaluate_blocking, fail_run};
use super::delivery::WorkError;
use super::evaluate::tally;
use super::progress::{self, Commit, Run};
use super::store;
use super::Worker;

/// The batch workers' handler: one job per call, `jobs_in_flight` calls at once.
pub(crate) struct Jobs(pub Arc<Worker>);

/// What became of a job.
enum Done {
    /// Evaluated and counted (or counted before).
    Evaluated,
    /// Not for evaluation any more: the run ended or moved to a newer epoch.
    Dropped(&'static str),
}

#[async_trait]
impl Handler for Jobs {
    async fn handle(&self, messages: &[Message]) -> Outcome {
        let job = match decode(messages) {
            Ok(job) => job,
            Err(poison) => return poison,
        };
        let worker = &self.0;
        let span = tracing::info_span!("evaluate_batch", run_id = %job.run_id, batch = job.batch,
            epoch = job.epoch, items = job.to.saturating_sub(job.from));
        match process(worker, &job).instrument(span).await {
            Ok(Done::Evaluated) => Outcome::Ack,
            Ok(Done::Dropped(why)) => {
                tracing::info!(run_id = %job.run_id, batch = job.batch, why, "batch job dropped");
                Outcome::Ack
            }
            Err(WorkError::Transient(why)) => Outcome::Transient(why),
            Err(WorkError::Fatal(reason)) => fail(worker, &job, &reason).await,
        }
    }

    /// A bug: the run fails with the panic's message (never left `running`).
    async fn on_panic(&self, messages: &[Message], panic: &str) -> Outcome {
        match decode(messages) {
            Ok(job) => {
                let reason = format!("batch {} panicked: {panic}", job.batch);
                fail(&self.0, &job, &reason).await
            }
            Err(poison) => poison,
        }
    }
}

/// The job a message carries; undecodable, it is poison.
fn decode(messages: &[Message]) -> Result<EvaluationJob, Outcome> {
    let Some(message) = messages.first() else {
        return Err(Outcome::Ack);
    };
    serde_json::from_slice(&message.payload)
        .map_err(|e| Outcome::Poison(format!("undecodable batch job: {e}")))
}

/// Fails the job's run with `reason`; the job is answered once the gateway took the command.
async fn fail(worker: &Worker, job: &EvaluationJob, reason: &str) -> Outcome {
    match fail_run(worker, &job.run_id, job.epoch, reason).await {
        Ok(()) => Outcome::Ack,
        Err(e) => Outcome::Transient(e.to_string()),
    }
}

/// The steps of one job.
async fn process(worker: &Worker, job: &EvaluationJob) -> Result<Done, WorkError> {
    let run = current_run(worker, job).await?;
    if let Some(why) = not_for_evaluation(&run, job) {
        return Ok(Done::Dropped(why));
    }
    let policy = worker
        .policies
        .get(&worker.pg, &job.policy_id, job.version)
        .await?;
    let mut client = worker.pg.get().await?;
    // A redelivered job whose batch was committed only needs the completion check.
    if !progress::batch_counted(&client, &job.run_id, job.batch).await? {
        match evaluate_range(worker, &mut client, job, &policy).await? {
            Commit::Counted { processed } if processed < run.total => return Ok(Done::Evaluated),
            Commit::Counted { .. } => {}
            Commit::AlreadyCounted => tracing::info!("batch was already counted"),
        }
    }
    drop(client);
    complete_if_done(worker, &job.run_id).await?;
    Ok(Done::Evaluated)
}

/// Reads the job's snapshot range, evaluates it on the blocking pool and commits it.
async fn evaluate_range(
    worker: &Worker,
    client: &mut deadpool_postgres::Object,
    job: &EvaluationJob,
    policy: &Arc<CompiledPolicy>,
) -> Result<Commit, WorkError> {
    let items =
        store::snapshot_items(&*client, &job.snapshot_id, job.batch, job.from, job.to).await?;
    let expected = job.to.saturating_sub(job.from);
    if items.len() as u64 != expected {
        // The run could never reach its total: fail it rather than hang.
        return Err(WorkError::Fatal(format!(
            "snapshot {} has {} rows in ordinals [{}, {}), expected {expected}",
            job.snapshot_id,
            items.len(),
            job.from,
            job.to
        )));
    }
    worker.settings.hooks.before_evaluate(job);
    let (items, verdicts) = evaluate_blocking(worker, policy, items).await?;
    let tally = tally(&items, &verdicts);
    let commit = progress::commit_batch(client, job, &items, &verdicts, &tally).await?;
    tracing::debug!(
        ?commit,
        counted = tally.counters.processed,
        "batch committed"
    );
    Ok(commit)
}

/// The job's run once the `runs` read model has caught up with the job's epoch, waiting up to
/// `lag_wait` in-process; then a transient error (the job is NAKed).
async fn current_run(worker: &Worker, job: &EvaluationJob) -> Result<Run, WorkError> {
    let until = tokio::time::Instant::now() + worker.settings.lag_wait;
    let mut pause = std::time::Duration::from_millis(20);
    loop {
        let client = worker.pg.get().await?;
        match progress::read_run(&client, &job.run_id).await? {
            Some(run) if run.epoch >= job.epoch => return Ok(run),
            _ if tokio::time::Instant::now() >= until => {
                return Err(WorkError::Transient(format!(
                    "the runs read model has not caught up with run {} epoch {}",
                    job.run_id, job.epoch
                )))
            }
            _ => {}
        }
        drop(client);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(500));
    }
}

/// Why a job is not evaluated, if it is not: its run ended, or it belongs to an older epoch.
fn not_for_evaluation(run: &Run, job: &EvaluationJob) -> Option<&'static str> {
    if run.status != RunStatus::Running {
        Some("the run is not running")
    } else if run.epoch != job.epoch {
        Some("the job belongs to an older epoch of the run")
    } else {
        None
    }
}
