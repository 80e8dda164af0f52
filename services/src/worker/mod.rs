//! Evaluation workers: the batch jobs of Prepare runs and the live evaluation of catalog changes.
//!
//! One `gatehouse worker` process runs three loops; the first to stop stops the others:
//! - the **scheduler** (durable `<ns>_scheduler` on `<NS>_EVENTS`, filtered to `RunPrepared` and
//!   `RunResumed`) turns a run into [`EvaluationJob`]s on the work queue `<NS>_JOBS`
//!   (`<ns>.jobs.evaluate`, `Nats-Msg-Id = <run>:<epoch>:<batch>`);
//! - the **batch workers** (durable `<ns>_workers` on `<NS>_JOBS`) evaluate one snapshot range
//!   per job and commit its results (`eval_results`), its `run_batches` row and the run's
//!   `run_progress` counters in one transaction; the batch that completes the snapshot sweeps
//!   the rest of the catalog and sends `policy.complete_run`;
//! - the **live evaluation** (durable `<ns>_live` on `<NS>_CATALOG`) re-evaluates every changed
//!   item against each active version and each candidate version (running or successful runs
//!   not promoted yet).
//!
//! Every process binds the same durables, so starting more workers evaluates faster. Every write
//! names its policy version and is guarded by the item's catalog sequence (`item_seq`), and a
//! batch is counted once (`run_batches`), so redeliveries and crashes change nothing.
//!
//! Layout:
//! - `setup`: streams and the three durable consumers.
//! - `scheduler`, `jobs`, `live`: the three loops.
//! - `completion`: the completion sweep and the `complete_run` / `fail_run` commands.
//! - `policies`: compiled policy versions, loaded from the event store once per process.
//! - `evaluate`: one item's outcome; a batch split across threads.
//! - `store`: catalog reads (snapshot ranges, the sweep) and result upserts (binary COPY).
//! - `progress`: the `runs` read model as workers see it; the counted-once batch commit.
//! - `delivery`: fetching, heartbeats and retry delays shared by the loops.
//!
//! [`EvaluationJob`]: gatehouse_events::run::EvaluationJob

mod completion;
mod delivery;
pub mod evaluate;
mod jobs;
mod live;
mod policies;
mod progress;
mod scheduler;
mod setup;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::settings::{Settings, SettingsError};
use crate::RoleError;
use policies::PolicyCache;

/// How a worker process paces itself. The defaults suit production; tests shorten the waits.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// `GATEHOUSE_WORKER_JOBS`: batch jobs one process works on at once (default 2: one
    /// evaluates while the other reads or commits).
    pub jobs_in_flight: usize,
    /// `GATEHOUSE_WORKER_THREADS`: threads one batch is split across (default: the cores).
    pub threads: usize,
    /// Ack wait of jobs and events; work in hand sends a progress ack every quarter of it
    /// (default 60 s).
    pub ack_wait: Duration,
    /// Deliveries of one job or event before the run is failed (default 5).
    pub max_deliver: i64,
    /// How long one pull waits for messages (default 1 s; also the shutdown latency).
    pub fetch_expiry: Duration,
    /// Catalog changes per live batch (default 2,000).
    pub live_batch: usize,
    /// How long a job waits in-process for the `runs` read model before it is NAKed (default 5 s).
    pub lag_wait: Duration,
    /// The first NAK delay; it doubles with each delivery, up to 30 s (default 1 s).
    pub retry_delay: Duration,
    /// Catalog items per page of the completion sweep (default 5,000).
    pub sweep_page: i64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            jobs_in_flight: 2,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            ack_wait: Duration::from_secs(60),
            max_deliver: 5,
            fetch_expiry: Duration::from_secs(1),
            live_batch: 2_000,
            lag_wait: Duration::from_secs(5),
            retry_delay: Duration::from_secs(1),
            sweep_page: 5_000,
        }
    }
}

impl WorkerSettings {
    /// The defaults, with `GATEHOUSE_WORKER_JOBS` and `GATEHOUSE_WORKER_THREADS` if set.
    pub fn from_env() -> Result<Self, SettingsError> {
        let number = |key: &'static str, default: usize| -> Result<usize, SettingsError> {
            match std::env::var(key).ok().filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => match v.parse() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(SettingsError::Invalid(key, v)),
                },
            }
        };
        let defaults = WorkerSettings::default();
        Ok(WorkerSettings {
            jobs_in_flight: number("GATEHOUSE_WORKER_JOBS", defaults.jobs_in_flight)?,
            threads: number("GATEHOUSE_WORKER_THREADS", defaults.threads)?,
            ..defaults
        })
    }
}

/// What the three loops share.
pub(crate) struct Worker {
    pub settings: WorkerSettings,
    pub namespace: String,
    pub pg: Pool,
    pub js: async_nats::jetstream::Context,
    /// Sends `complete_run` / `fail_run` to the gateway.
    pub client: Client,
    pub policies: PolicyCache,
}

/// Runs an evaluation worker with [`WorkerSettings::from_env`] until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    run_with(settings, WorkerSettings::from_env()?, shutdown).await
}

/// Runs an evaluation worker until `shutdown`: then each loop finishes the message in hand
/// (commit, ack) and returns. It fails only if its streams or consumers cannot be set up;
/// later Postgres and NATS failures are logged and retried.
pub async fn run_with(
    settings: Settings,
    worker_settings: WorkerSettings,
    shutdown: CancellationToken,
) -> Result<(), RoleError> {
    // A job holds at most two connections (the sweep reads with one and writes with the
    // other), so does the scheduler (it may sweep), the live evaluation one.
    let connections = settings
        .db_pool_size
        .max(2 * worker_settings.jobs_in_flight + 3);
    let pg = crate::db::pool(&settings.database_url, connections)?;
    let nats = crate::broker::connect(&settings, "worker").await?;
    let js = crate::broker::jetstream(&nats);
    let consumers = setup::consumers(&js, &settings, &worker_settings).await?;
    let worker = Arc::new(Worker {
        namespace: settings.namespace.clone(),
        client: Client::new(nats, settings.namespace.clone(), settings.request_timeout),
        policies: PolicyCache::default(),
        settings: worker_settings,
        pg,
        js,
    });
    tracing::info!(namespace = %worker.namespace, "worker started");
    let stop = shutdown.child_token();
    let mut loops = JoinSet::new();
    loops.spawn(named(
        "scheduler",
        scheduler::run(worker.clone(), consumers.scheduler, stop.clone()),
    ));
    loops.spawn(named(
        "batch workers",
        jobs::run(worker.clone(), consumers.jobs, stop.clone()),
    ));
    loops.spawn(named(
        "live evaluation",
        live::run(worker.clone(), consumers.live, stop.clone()),
    ));
    // The loops ride out failures: one that ends early (or panics) stops the others.
    let mut first_error = None;
    while let Some(joined) = loops.join_next().await {
        match joined {
            Ok(name) => tracing::info!(worker_loop = name, "worker loop stopped"),
            Err(e) => {
                tracing::error!(error.message = %e, "a worker loop panicked");
                first_error
                    .get_or_insert(RoleError::Broker(format!("a worker loop panicked: {e}")));
            }
        }
        stop.cancel();
    }
    tracing::info!("worker stopped");
    first_error.map_or(Ok(()), Err)
}

async fn named(name: &'static str, f: impl std::future::Future<Output = ()>) -> &'static str {
    f.await;
    name
}
