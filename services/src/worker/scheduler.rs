//! The scheduler: turns `RunPrepared` and `RunResumed` events (durable `<ns>_scheduler` on
//! `<NS>_EVENTS`, shared by every worker process: each event goes to one of them) into batch
//! jobs on `<ns>.jobs.evaluate`.
//!
//! A Prepare enqueues every batch; a resume enqueues only the batches not counted yet, with the
//! new epoch (jobs of older epochs are then dropped by the workers). Jobs are published with
//! `Nats-Msg-Id = <run>:<epoch>:<batch>` and PubAcks pipelined; the event is acked after the
//! last PubAck, so a crash re-publishes (deduplicated) rather than loses jobs. The watchdog
//! re-enqueues a stalled run's missing batches through [`enqueue`] the same way.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Message;
use async_trait::async_trait;
use futures::stream::{FuturesOrdered, StreamExt};
use gatehouse_events::policy::PolicyEvent;
use gatehouse_events::record::EventRecord;
use gatehouse_events::run::{EvaluationJob, RunPrepared, RunResumed, RunStatus};
use gatehouse_events::subjects;
use gatehouse_projections::consumer::{Handler, Outcome};
use tracing::Instrument;

use super::completion::{complete_if_done, fail_run, sweep};
use super::delivery::WorkError;
use super::progress::{self, Run};
use super::Worker;

/// PubAcks awaited at most at once while enqueueing.
const PUBLISH_WINDOW: usize = 256;

/// The scheduler's handler: one run event per call.
pub(crate) struct Scheduler(pub Arc<Worker>);

#[async_trait]
impl Handler for Scheduler {
    async fn handle(&self, messages: &[Message]) -> Outcome {
        let Some(message) = messages.first() else {
            return Outcome::Ack;
        };
        let event = match decode(message) {
            Ok(event) => event,
            Err(e) => return Outcome::Poison(format!("undecodable run event: {e}")),
        };
        let Some((run_id, epoch)) = run_of(&event) else {
            return Outcome::Ack;
        };
        let span = tracing::info_span!("schedule_run", run_id, epoch);
        let worker = &self.0;
        let scheduled = async {
            match &event {
                PolicyEvent::RunPrepared(p) => prepared(worker, p).await,
                PolicyEvent::RunResumed(r) => resumed(worker, r).await,
                _ => Ok(()),
            }
        };
        match scheduled.instrument(span).await {
            Ok(()) => Outcome::Ack,
            Err(WorkError::Transient(why)) => Outcome::Transient(why),
            Err(WorkError::Fatal(why)) => {
                let reason = format!("could not schedule the run's batches: {why}");
                fail(worker, &run_id, epoch, &reason).await
            }
        }
    }

    /// A bug: the run fails with the panic's message.
    async fn on_panic(&self, messages: &[Message], panic: &str) -> Outcome {
        let run = messages.first().and_then(|m| decode(m).ok());
        match run.as_ref().and_then(run_of) {
            Some((run_id, epoch)) => {
                let reason = format!("scheduling the run panicked: {panic}");
                fail(&self.0, &run_id, epoch, &reason).await
            }
            None => Outcome::Poison(format!("the scheduler panicked: {panic}")),
        }
    }
}

fn decode(message: &Message) -> Result<PolicyEvent, String> {
    let record =
        serde_json::from_slice::<EventRecord>(&message.payload).map_err(|e| e.to_string())?;
    serde_json::from_value::<PolicyEvent>(record.payload).map_err(|e| e.to_string())
}

/// The run and epoch a run event schedules; `None` for any other event.
fn run_of(event: &PolicyEvent) -> Option<(String, u32)> {
    match event {
        PolicyEvent::RunPrepared(p) => Some((p.run_id.clone(), 1)),
        PolicyEvent::RunResumed(r) => Some((r.run_id.clone(), r.epoch)),
        _ => None,
    }
}

async fn fail(worker: &Worker, run_id: &str, epoch: u32, reason: &str) -> Outcome {
    match fail_run(worker, run_id, epoch, reason).await {
        Ok(()) => Outcome::Ack,
        Err(e) => Outcome::Transient(e.to_string()),
    }
}

/// Prepare: every batch, unless the run already moved on (an old event replayed).
async fn prepared(worker: &Worker, p: &RunPrepared) -> Result<(), WorkError> {
    let client = worker.pg.get().await?;
    let run = progress::read_run(&client, &p.run_id).await?;
    drop(client);
    if matches!(&run, Some(run) if run.status != RunStatus::Running || run.epoch != 1) {
        tracing::info!("run already ended or resumed: nothing to schedule");
        return Ok(());
    }
    let Some(policy_id) = gatehouse_events::run::policy_of(&p.run_id) else {
        return Err(WorkError::Fatal(format!("`{}` is not a run id", p.run_id)));
    };
    if p.batches == 0 {
        // An empty snapshot succeeds at once; the sweep still completes the catalog.
        let policy = worker
            .policies
            .get(&worker.pg, policy_id, p.version)
            .await?;
        sweep(worker, policy_id, p.version, &policy).await?;
        return Ok(());
    }
    let run = Run {
        run_id: p.run_id.clone(),
        policy_id: policy_id.to_owned(),
        version: p.version,
        status: RunStatus::Running,
        epoch: 1,
        snapshot_id: p.snapshot_id.clone(),
        total: p.total_ready_snapshot,
        batch_size: p.batch_size,
        batches: p.batches,
    };
    let published = enqueue(worker, &run, 0..p.batches, None).await?;
    tracing::info!(published, "run scheduled");
    Ok(())
}

/// Resume: the batches not counted yet, with the new epoch; none left means complete it.
async fn resumed(worker: &Worker, r: &RunResumed) -> Result<(), WorkError> {
    let client = worker.pg.get().await?;
    let run = match progress::read_run(&client, &r.run_id).await? {
        Some(run)
            if run.epoch > r.epoch || run.status != RunStatus::Running && run.epoch == r.epoch =>
        {
            tracing::info!("run already moved on: nothing to schedule");
            return Ok(());
        }
        Some(run) if run.epoch == r.epoch => run,
        _ => {
            return Err(WorkError::Transient(
                "the runs read model has not caught up with the resume".into(),
            ))
        }
    };
    let missing = progress::missing_batches(&client, &run).await?;
    drop(client);
    if missing.is_empty() {
        return complete_if_done(worker, &run.run_id).await;
    }
    let published = enqueue(worker, &run, missing, None).await?;
    tracing::info!(published, "run rescheduled");
    Ok(())
}

/// Publishes the jobs of `batches`, awaiting up to [`PUBLISH_WINDOW`] PubAcks at once. The
/// watchdog's `retry`-th re-enqueue gets message ids of its own (`<run>:<epoch>:<batch>:w<retry>`):
/// the jobs stream's duplicate window would drop the same ids, and a batch is counted once anyway.
pub(crate) async fn enqueue(
    worker: &Worker,
    run: &Run,
    batches: impl IntoIterator<Item = u32>,
    retry: Option<u32>,
) -> Result<usize, WorkError> {
    let subject = subjects::evaluation_jobs(&worker.namespace);
    let mut acks = FuturesOrdered::new();
    let mut published = 0;
    for job in batches.into_iter().map(|batch| job(run, batch)) {
        let body = serde_json::to_vec(&job).map_err(|e| WorkError::Fatal(e.to_string()))?;
        let publish = PublishMessage::build()
            .message_id(match retry {
                None => job.message_id(),
                Some(retry) => format!("{}:w{retry}", job.message_id()),
            })
            .payload(body.into());
        let ack = worker
            .js
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| WorkError::transient("publish a batch job", e))?;
        acks.push_back(ack.into_future());
        if acks.len() >= PUBLISH_WINDOW {
            await_ack(&mut acks).await?;
        }
        published += 1;
    }
    while !acks.is_empty() {
        await_ack(&mut acks).await?;
    }
    Ok(published)
}

async fn await_ack<F>(acks: &mut FuturesOrdered<F>) -> Result<(), WorkError>
where
    F: std::future::Future<
        Output = Result<
            async_nats::jetstream::publish::PublishAck,
            async_nats::jetstream::context::PublishError,
        >,
    >,
{
    match tokio::time::timeout(Duration::from_secs(30), acks.next()).await {
        Ok(Some(Ok(_))) | Ok(None) => Ok(()),
        Ok(Some(Err(e))) => Err(WorkError::transient("a batch job was not stored", e)),
        Err(_) => Err(WorkError::Transient("no PubAck for a batch job".into())),
    }
}

/// Batch `batch` of the run: snapshot ordinals `[batch * size, min((batch + 1) * size, total))`.
fn job(run: &Run, batch: u32) -> EvaluationJob {
    let size = u64::from(run.batch_size);
    EvaluationJob {
        run_id: run.run_id.clone(),
        policy_id: run.policy_id.clone(),
        version: run.version,
        epoch: run.epoch,
        snapshot_id: run.snapshot_id.clone(),
        batch,
        from: u64::from(batch) * size,
        to: ((u64::from(batch) + 1) * size).min(run.total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(total: u64, batch_size: u32) -> Run {
        Run {
            run_id: "p:1".into(),
            policy_id: "p".into(),
            version: 2,
            status: RunStatus::Running,
            epoch: 3,
            snapshot_id: "s".into(),
            total,
            batch_size,
            batches: total.div_ceil(u64::from(batch_size)) as u32,
        }
    }

    #[test]
    fn batches_cover_the_snapshot_without_overlap_and_the_last_is_short() {
        let run = run(250, 100);
        let ranges: Vec<_> = (0..run.batches)
            .map(|b| job(&run, b))
            .map(|j| (j.from, j.to))
            .collect();
        assert_eq!(ranges, [(0, 100), (100, 200), (200, 250)]);
    }

    #[test]
    fn a_job_carries_the_runs_epoch_in_its_message_id() {
        let job = job(&run(10, 5), 1);
        assert_eq!(job.message_id(), "p:1:3:1");
        assert_eq!((job.version, job.policy_id.as_str()), (2, "p"));
    }
}
