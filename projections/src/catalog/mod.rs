//! The catalog projector: keeps `catalog_items` from the stream `<NS>_CATALOG` (subjects
//! `<ns>.catalog.items.<id>`, one [`CatalogChange`](gatehouse_events::catalog::CatalogChange)
//! each), in bulk.
//!
//! A durable pull consumer `<ns>_catalog` feeds batches of thousands of messages, gathered and
//! decoded while the previous batch is written. Each batch keeps the last change per item and
//! writes the rows (binary COPY for items new to the catalog, an array UPDATE for the others)
//! in one transaction with the `catalog` checkpoint; every row write is guarded by the change's
//! stream sequence, so redeliveries and reorders change nothing. A message that
//! is no valid change becomes a `catalog_rejections` row (stream sequence, subject, reason).
//! Attributes are stored as given (a JSON object); the schema check is the evaluator's.
//!
//! Layout: this file (settings, stream and consumer, the pull loop); `gather` (batches from the
//! continuous pull); `batch` (one batch through the projector, and what happens when it fails);
//! [`change`] (the one reading of a message, shared with live evaluation and the import);
//! `decode` (messages to rows and rejections); `write` (the SQL).

mod batch;
pub mod change;
mod decode;
mod gather;
mod wire;
mod write;

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, stream};
use deadpool_postgres::Pool;
use gatehouse_events::subjects;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::batch::CatalogProjector;
pub use self::change::{check_change, read_change, ValidChange};
use self::gather::{Batcher, Gathered};
pub use self::write::{COPY_COLUMNS, COPY_TYPES};
use crate::checkpoint::{ConsumerState, Progress};
use crate::consumer::{self, Durable};
use crate::dead_letter;
use crate::error::ProjectorError;
use crate::settings::ProjectorSettings;

/// The projector's stable name: its checkpoint row and consumer (`<ns>_catalog`).
pub const NAME: &str = "catalog";
/// Messages written in one transaction by default.
pub const DEFAULT_BATCH_SIZE: usize = 5_000;
/// How long the catalog stream remembers a `Nats-Msg-Id`: a re-sent import dedupes within it.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);
/// The longest pause between attempts after JetStream failed.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// The catalog projector's settings: those of every projector, with batches of their own size.
#[derive(Clone, Debug)]
pub struct CatalogSettings {
    /// Namespace, fetch expiry, ack wait, NAK delays, health and test hooks.
    pub projector: ProjectorSettings,
    /// Most messages written in one transaction (default [`DEFAULT_BATCH_SIZE`]).
    pub batch_size: usize,
}

impl CatalogSettings {
    pub fn new(projector: ProjectorSettings) -> Self {
        Self {
            projector,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }

    /// Messages delivered and not yet acked: the batch being written, the next one decoded,
    /// one being gathered, and what the client pulls ahead (up to one and a half batches).
    fn max_ack_pending(&self) -> i64 {
        let batch = i64::try_from(self.batch_size).unwrap_or(i64::MAX / 8);
        self.projector.max_ack_pending.max(batch.saturating_mul(5))
    }
}

/// The catalog stream of namespace `ns`: file storage, every `<ns>.catalog.items.>` subject,
/// a one-hour dedupe window. The one definition: whoever creates the stream uses it.
pub fn stream_config(ns: &str) -> stream::Config {
    stream::Config {
        name: subjects::catalog_stream(ns),
        description: Some("Gatehouse: catalog item upserts and deletes".into()),
        subjects: vec![subjects::all_catalog_items(ns)],
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// Creates the catalog stream of `ns`, or brings its config up to date.
pub async fn ensure_stream(
    js: &jetstream::Context,
    ns: &str,
) -> Result<stream::Stream, ProjectorError> {
    let config = stream_config(ns);
    let name = config.name.clone();
    js.create_or_update_stream(config)
        .await
        .map_err(|e| ProjectorError::jetstream(format!("create or update stream {name}"), e))?;
    js.get_stream(&name)
        .await
        .map_err(|e| ProjectorError::jetstream(format!("look up stream {name}"), e))
}

/// Runs the catalog projector until `shutdown`: then it finishes the batch in hand (commit,
/// ack) and returns. It returns an error only if it cannot set up its stream, consumer or the
/// dead-letter stream at start; later JetStream and Postgres failures are logged and retried.
pub async fn run(
    settings: CatalogSettings,
    pool: Pool,
    js: jetstream::Context,
    shutdown: CancellationToken,
) -> Result<(), ProjectorError> {
    let ns = settings.projector.namespace.clone();
    dead_letter::ensure_stream(&js, &ns).await?;
    let stream = ensure_stream(&js, &ns).await?;
    let consumer = ensure_consumer(&stream, &settings).await?;
    let consumer_name = subjects::projector_consumer(&ns, NAME);
    tracing::info!(projector = NAME, consumer = %consumer_name, "projector started");
    let projector = CatalogProjector {
        progress: Progress::resume(ConsumerState::of(consumer.cached_info())),
        consumer,
        consumer_name,
        settings,
        pool,
        js,
    };
    feed(projector, &stream, &shutdown).await;
    tracing::info!(projector = NAME, "projector stopped");
    Ok(())
}

/// Creates the durable consumer, or updates its mutable settings.
async fn ensure_consumer(
    stream: &stream::Stream,
    settings: &CatalogSettings,
) -> Result<PullConsumer, ProjectorError> {
    let Durable { config, .. } = durable(settings);
    let name = config.durable_name.clone().unwrap_or_default();
    stream
        .create_consumer(config)
        .await
        .map_err(|e| ProjectorError::jetstream(format!("create or update consumer {name}"), e))
}

/// The catalog projector's durable consumer on the catalog stream.
pub fn durable(settings: &CatalogSettings) -> Durable {
    let ns = &settings.projector.namespace;
    let config = pull::Config {
        durable_name: Some(subjects::projector_consumer(ns, NAME)),
        description: Some("Gatehouse catalog projector".into()),
        filter_subject: subjects::all_catalog_items(ns),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: settings.projector.ack_wait,
        max_deliver: consumer::UNLIMITED_DELIVERIES,
        max_ack_pending: settings.max_ack_pending(),
        ..Default::default()
    };
    Durable {
        stream: subjects::catalog_stream(ns),
        config,
    }
}

/// Pulls continuously (the client fetches the next messages while a batch is written) and
/// projects whatever has arrived, up to a batch, until `shutdown`.
async fn feed(
    mut projector: CatalogProjector,
    stream: &stream::Stream,
    shutdown: &CancellationToken,
) {
    let mut pause = Duration::ZERO;
    loop {
        let failure = match pull(&projector).await {
            Ok(messages) => {
                pause = Duration::ZERO;
                match project(&mut projector, messages, shutdown).await {
                    None => break,
                    Some(e) => e,
                }
            }
            Err(e) => e,
        };
        pause = (pause * 2).clamp(Duration::from_secs(1), MAX_PAUSE);
        tracing::error!(error.message = %failure, error.cause_chain = ?failure, ?pause,
            "could not pull from the catalog stream");
        let reason = format!("could not pull: {failure}");
        projector
            .settings
            .projector
            .health
            .degrade(&projector.consumer_name, &reason);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
        // The consumer may have been deleted: create it again (a no-op otherwise).
        match ensure_consumer(stream, &projector.settings).await {
            Ok(consumer) => projector.consumer = consumer,
            Err(e) => tracing::error!(error.message = %e, error.cause_chain = ?e,
                "could not recreate the catalog consumer"),
        }
    }
    // Acks are fire-and-forget publishes: make sure the last batch's reached the server.
    if let Err(e) = projector.js.client().flush().await {
        tracing::warn!(error.message = %e, error.cause_chain = ?e, "could not flush the last acks");
    }
}

async fn pull(projector: &CatalogProjector) -> Result<pull::Stream, async_nats::Error> {
    let expires = projector
        .settings
        .projector
        .fetch_expiry
        .max(Duration::from_secs(1));
    let messages = projector
        .consumer
        .stream()
        .max_messages_per_batch(projector.settings.batch_size)
        .expires(expires)
        .heartbeat(expires / 2)
        .messages()
        .await?;
    Ok(messages)
}

/// Projects batches from `messages` until shutdown (`None`) or a failure of the pull.
async fn project(
    projector: &mut CatalogProjector,
    messages: pull::Stream,
    shutdown: &CancellationToken,
) -> Option<async_nats::Error> {
    let settings = &projector.settings;
    let batcher = Batcher::new(messages, settings.batch_size);
    let (tx, mut batches) = mpsc::channel(1);
    let idle = settings.projector.fetch_expiry;
    let gatherer = tokio::spawn(gather::run(batcher, idle, tx));
    let _gatherer = AbortOnDrop(gatherer);
    loop {
        let gathered = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            gathered = batches.recv() => gathered,
        };
        let Some(Gathered {
            batch,
            plan,
            failure,
        }) = gathered
        else {
            return Some("the catalog gatherer stopped".into());
        };
        if batch.is_empty() && failure.is_none() {
            projector.idle().await;
        }
        if !batch.is_empty() {
            projector.handle(batch, plan).await;
        }
        if failure.is_some() {
            return failure;
        }
    }
}

/// Stops the gatherer when the projector stops pulling: what it gathered is redelivered.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
