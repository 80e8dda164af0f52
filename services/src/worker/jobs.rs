//! The batch workers: evaluate one snapshot range per job from the work queue `<NS>_JOBS`
//! (durable `<ns>_workers`, shared by every worker process; each takes `jobs_in_flight` jobs at
//! a time, so more processes go faster).
//!
//! Per job: check the run in the `runs` read model (a cancelled run, or a job of an older
//! epoch, is dropped; a run not projected yet is waited for), load the compiled version, read
//! the range, evaluate it on the blocking pool, commit (counted once), ack. The batch that
//! brings `processed` to the snapshot's total completes the run. A job that cannot succeed
//! (the version does not compile, or its last delivery failed) fails the run and is terminated.

use std::sync::Arc;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use gatehouse_events::run::{EvaluationJob, RunStatus};
use gatehouse_rules::CompiledPolicy;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::completion::{complete_if_done, evaluate_blocking, fail_run};
use super::delivery::{self, WorkError};
use super::evaluate::tally;
use super::progress::{self, Commit, Run};
use super::store;
use super::Worker;

/// Pulls and works on jobs until `shutdown`, then finishes the jobs in hand.
pub(crate) async fn run(worker: Arc<Worker>, consumer: PullConsumer, shutdown: CancellationToken) {
    let slots = worker.settings.jobs_in_flight.max(1);
    let mut in_hand = JoinSet::new();
    let mut failures = 0;
    while !shutdown.is_cancelled() {
        while in_hand.try_join_next().is_some() {}
        if in_hand.len() >= slots {
            in_hand.join_next().await;
            continue;
        }
        // Only as many jobs as free slots: a job never waits in a busy process.
        let free = slots - in_hand.len();
        match delivery::fetch(&consumer, free, worker.settings.fetch_expiry).await {
            Ok(jobs) => {
                failures = 0;
                for message in jobs {
                    if shutdown.is_cancelled() {
                        // Not started: back to the queue for another worker at once.
                        delivery::answer(&message, AckKind::Nak(None)).await;
                    } else {
                        in_hand.spawn(handle(worker.clone(), message));
                    }
                }
            }
            Err(e) => {
                failures += 1;
                let pause = delivery::fetch_pause(failures);
                tracing::error!(error.message = %e, ?pause, "could not fetch batch jobs");
                if delivery::sleep_or_shutdown(pause, &shutdown).await {
                    break;
                }
            }
        }
    }
    while let Some(done) = in_hand.join_next().await {
        if let Err(e) = done {
            tracing::error!(error.message = %e, "a batch job panicked");
        }
    }
}

/// What became of a job.
enum Done {
    /// Evaluated and counted (or counted before).
    Evaluated,
    /// Not for evaluation any more: the run ended or moved to a newer epoch.
    Dropped(&'static str),
}

/// Works on one job and answers its message.
async fn handle(worker: Arc<Worker>, message: Message) {
    let job: EvaluationJob = match serde_json::from_slice(&message.payload) {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error.message = %e, subject = %message.subject, "undecodable batch job: terminated");
            return delivery::answer(&message, AckKind::Term).await;
        }
    };
    let span = tracing::info_span!("evaluate_batch", run_id = %job.run_id, batch = job.batch,
        epoch = job.epoch, items = job.to.saturating_sub(job.from));
    work_on(&worker, &message, &job).instrument(span).await
}

/// Processes the job (keeping its message alive), then acks, NAKs or terminates it.
async fn work_on(worker: &Worker, message: &Message, job: &EvaluationJob) {
    let delivered = delivery::delivered(message);
    let period = delivery::heartbeat_period(worker.settings.ack_wait);
    match delivery::with_heartbeat(std::slice::from_ref(message), period, process(worker, job))
        .await
    {
        Ok(Done::Evaluated) => delivery::ack_confirmed(message).await,
        Ok(Done::Dropped(why)) => {
            tracing::info!(why, "batch job dropped");
            delivery::ack_confirmed(message).await
        }
        Err(WorkError::Transient(why)) if delivered < worker.settings.max_deliver => {
            let delay = delivery::retry_delay(worker.settings.retry_delay, delivered);
            tracing::warn!(why, delivered, ?delay, "batch job will be retried");
            delivery::answer(message, AckKind::Nak(Some(delay))).await
        }
        Err(e) => {
            let reason = match e {
                WorkError::Fatal(reason) => reason,
                WorkError::Transient(why) => {
                    format!("batch {} failed {delivered} times: {why}", job.batch)
                }
            };
            fail_run(worker, &job.run_id, job.epoch, &reason).await;
            // Terminating removes the job from the work queue.
            delivery::answer(message, AckKind::Term).await
        }
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
