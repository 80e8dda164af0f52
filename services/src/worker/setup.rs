//! The streams a worker reads and writes, and its three durable pull consumers. Every worker
//! process creates them idempotently (create-or-update) and binds the same durables.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, stream::Stream};
use gatehouse_events::policy::AGGREGATE;
use gatehouse_events::subjects;
use gatehouse_projections::consumer::{self, Durable};

use super::WorkerSettings;
use crate::settings::Settings;
use crate::{broker, RoleError};

/// Run events a scheduler instance handles at once (each to one process).
const SCHEDULER_PENDING: i64 = 64;
/// Catalog changes delivered and not answered yet, across every worker process.
const LIVE_PENDING: i64 = 20_000;

/// The worker's three consumers.
pub(crate) struct Consumers {
    pub scheduler: PullConsumer,
    pub jobs: PullConsumer,
    pub live: PullConsumer,
}

/// Creates (or updates) the events, jobs, catalog and dead-letter streams and the worker's
/// consumers.
pub(crate) async fn consumers(
    js: &jetstream::Context,
    settings: &Settings,
    worker: &WorkerSettings,
) -> Result<Consumers, RoleError> {
    let ns = &settings.namespace;
    broker::ensure_events_stream(js, settings).await?;
    broker::ensure_jobs_stream(js, settings).await?;
    broker::ensure_catalog_stream(js, settings).await?;
    // Poison is parked there: without it, a worker alone would retry poison forever.
    gatehouse_projections::dead_letter::ensure_stream(js, ns)
        .await
        .map_err(RoleError::from)?;
    let [scheduler, jobs, live] = durables(ns, worker);
    Ok(Consumers {
        scheduler: create(js, scheduler).await?,
        jobs: create(js, jobs).await?,
        live: create(js, live).await?,
    })
}

/// The worker's three durable consumers: the scheduler's, the batch jobs' and the live
/// evaluation's.
pub fn durables(ns: &str, worker: &WorkerSettings) -> [Durable; 3] {
    let run_events = ["RunPrepared", "RunResumed"]
        .map(|event_type| subjects::event(ns, AGGREGATE, "*", event_type));
    let scheduler = pull::Config {
        durable_name: Some(subjects::projector_consumer(ns, "scheduler")),
        description: Some("Gatehouse workers: turns runs into batch jobs".into()),
        filter_subjects: run_events.to_vec(),
        max_ack_pending: SCHEDULER_PENDING,
        ..config(worker)
    };
    // A work-queue consumer must deliver everything; one consumer per subject.
    let jobs = pull::Config {
        durable_name: Some(subjects::projector_consumer(ns, "workers")),
        description: Some("Gatehouse workers: evaluation batch jobs".into()),
        filter_subject: subjects::evaluation_jobs(ns),
        // A global cap: each process takes only `jobs_in_flight` jobs at a time.
        max_ack_pending: 1_024,
        ..config(worker)
    };
    let live = pull::Config {
        durable_name: Some(subjects::projector_consumer(ns, "live")),
        description: Some("Gatehouse workers: live evaluation of catalog changes".into()),
        filter_subject: subjects::all_catalog_items(ns),
        max_ack_pending: LIVE_PENDING.max(worker.live_batch as i64 * 4),
        ..config(worker)
    };
    [
        (subjects::events_stream(ns), scheduler),
        (subjects::jobs_stream(ns), jobs),
        (subjects::catalog_stream(ns), live),
    ]
    .map(|(stream, config)| Durable { stream, config })
}

/// Unlimited deliveries: only a handler's verdict parks a message, an outage never does.
fn config(worker: &WorkerSettings) -> pull::Config {
    pull::Config {
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: worker.ack_wait.max(Duration::from_secs(1)),
        max_deliver: consumer::UNLIMITED_DELIVERIES,
        ..Default::default()
    }
}

async fn create(js: &jetstream::Context, durable: Durable) -> Result<PullConsumer, RoleError> {
    let name = durable.name().to_owned();
    let stream: Stream = js
        .get_stream(&durable.stream)
        .await
        .map_err(RoleError::broker(format!(
            "look up stream {}",
            durable.stream
        )))?;
    stream
        .create_consumer(durable.config)
        .await
        .map_err(RoleError::broker(format!(
            "create or update consumer {name}"
        )))
}
