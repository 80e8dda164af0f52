//! Evaluation workers: the batch jobs of Prepare runs and the live evaluation of catalog changes.
//!
//! One `gatehouse worker` process runs three consumer loops and the watchdog; the first to stop
//! stops the others:
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
//! - `delivery`: [`WorkError`](delivery::WorkError), how a job's or event's failure is answered
//!   (fetching, heartbeats and retry delays are the consumer runtime's).
//! - `watchdog`: re-enqueues or fails runs that stopped making progress.
//!
//! [`EvaluationJob`]: gatehouse_events::run::EvaluationJob

mod completion;
pub(crate) mod delivery;
/// Public (with [`store`]) so `gatehouse bench activation` measures its evaluation and COPY
/// limits through the workers' own code.
pub mod evaluate;
mod jobs;
mod live;
pub(crate) mod policies;
mod progress;
mod scheduler;
mod setup;

pub use setup::durables;
pub mod store;
mod watchdog;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use gatehouse_events::run::EvaluationJob;
use gatehouse_events::subjects;
use gatehouse_projections::consumer::{self, ConsumerSettings, Health};
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
    /// Ack wait of jobs and events; work in hand sends a progress ack every quarter of it, so
    /// it can be short: a crashed worker's jobs are redelivered after it (default 10 s).
    pub ack_wait: Duration,
    /// How long one pull waits for messages (default 1 s; also the shutdown latency).
    pub fetch_expiry: Duration,
    /// Catalog changes per live batch (default 2,000).
    pub live_batch: usize,
    /// How long a job waits in-process for the `runs` read model before it is NAKed (default 5 s).
    pub lag_wait: Duration,
    /// The first NAK delay after a transient failure (an outage); it doubles with each
    /// delivery, up to `max_retry_delay` (default 500 ms). There is no delivery budget.
    pub retry_delay: Duration,
    /// The longest NAK delay (default 5 s): after an outage, work resumes within seconds.
    pub max_retry_delay: Duration,
    /// Catalog items per page of the completion sweep (default 5,000).
    pub sweep_page: i64,
    /// `GATEHOUSE_WORKER_STALL_AFTER` (seconds): a running run whose progress did not advance
    /// for this long has its missing batches re-enqueued by the watchdog (default 120 s).
    pub stall_after: Duration,
    /// `GATEHOUSE_WORKER_STALL_LIMIT`: stalled windows in a row after which the watchdog fails
    /// the run instead (default 5).
    pub stall_limit: u32,
    /// Degraded consumers of this worker (an outage being ridden out); shared by clones.
    pub health: Health,
    #[doc(hidden)]
    pub hooks: WorkerHooks,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            jobs_in_flight: 2,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            ack_wait: consumer::DEFAULT_ACK_WAIT,
            fetch_expiry: Duration::from_secs(1),
            live_batch: 2_000,
            lag_wait: Duration::from_secs(5),
            retry_delay: Duration::from_millis(500),
            max_retry_delay: consumer::DEFAULT_MAX_RETRY_DELAY,
            sweep_page: 5_000,
            stall_after: Duration::from_secs(120),
            stall_limit: 5,
            health: Health::default(),
            hooks: WorkerHooks::default(),
        }
    }
}

impl WorkerSettings {
    /// The defaults, with `GATEHOUSE_WORKER_JOBS`, `GATEHOUSE_WORKER_THREADS`,
    /// `GATEHOUSE_WORKER_STALL_AFTER` and `GATEHOUSE_WORKER_STALL_LIMIT` if set.
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
        let stall_secs = defaults.stall_after.as_secs() as usize;
        let stall_limit = defaults.stall_limit as usize;
        Ok(WorkerSettings {
            jobs_in_flight: number("GATEHOUSE_WORKER_JOBS", defaults.jobs_in_flight)?,
            threads: number("GATEHOUSE_WORKER_THREADS", defaults.threads)?,
            stall_after: Duration::from_secs(
                number("GATEHOUSE_WORKER_STALL_AFTER", stall_secs)? as u64
            ),
            stall_limit: u32::try_from(number("GATEHOUSE_WORKER_STALL_LIMIT", stall_limit)?)
                .unwrap_or(u32::MAX),
            ..defaults
        })
    }

    /// The consumer runtime's settings for the durable `name`.
    fn consumer(&self, ns: &str, name: &str, batch: usize, concurrency: usize) -> ConsumerSettings {
        ConsumerSettings {
            batch,
            concurrency,
            fetch_expiry: self.fetch_expiry,
            ack_wait: self.ack_wait,
            retry_delay: self.retry_delay,
            max_retry_delay: self.max_retry_delay,
            ..ConsumerSettings::new(subjects::projector_consumer(ns, name), ns)
        }
    }
}

/// A test hook: called with the job.
#[doc(hidden)]
pub type JobHook = Arc<dyn Fn(&EvaluationJob) + Send + Sync>;

/// Test hooks; unset, they cost nothing.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct WorkerHooks {
    /// Called before a job's items are evaluated (a test makes it panic).
    pub before_evaluate: Option<JobHook>,
}

impl WorkerHooks {
    pub(crate) fn before_evaluate(&self, job: &EvaluationJob) {
        if let Some(hook) = &self.before_evaluate {
            hook(job);
        }
    }
}

impl std::fmt::Debug for WorkerHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHooks")
            .field("before_evaluate", &self.before_evaluate.is_some())
            .finish()
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
    let ns = worker.namespace.clone();
    let s = &worker.settings;
    let scheduler = s.consumer(&ns, "scheduler", 1, 1);
    let jobs = s.consumer(&ns, "workers", 1, s.jobs_in_flight.max(1));
    let live = s.consumer(&ns, "live", s.live_batch.max(1), 1);
    let health = s.health.clone();
    let js = worker.js.clone();
    let mut loops = JoinSet::new();
    loops.spawn(named(
        "scheduler",
        consumer::run(
            consumers.scheduler,
            js.clone(),
            scheduler,
            health.clone(),
            scheduler::Scheduler(worker.clone()),
            stop.clone(),
        ),
    ));
    loops.spawn(named(
        "batch workers",
        consumer::run(
            consumers.jobs,
            js.clone(),
            jobs,
            health.clone(),
            jobs::Jobs(worker.clone()),
            stop.clone(),
        ),
    ));
    loops.spawn(named(
        "live evaluation",
        consumer::run(
            consumers.live,
            js,
            live,
            health,
            live::Live(worker.clone()),
            stop.clone(),
        ),
    ));
    loops.spawn(named(
        "watchdog",
        watchdog::run(worker.clone(), stop.clone()),
    ));
    // The loops ride out failures: one that ends early (or panics) stops the others.
    let mut first_error = None;
    while let Some(joined) = loops.join_next().await {
        match joined {
            Ok(name) => tracing::info!(worker_loop = name, "worker loop stopped"),
            Err(e) => {
                tracing::error!(error.message = %e, "a worker loop panicked");
                first_error.get_or_insert(RoleError::Panicked {
                    task: "a worker loop",
                    message: e.to_string(),
                });
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
