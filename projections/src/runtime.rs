//! The projector role: feeds one read model from the events stream `<NS>_EVENTS` through its
//! durable pull consumer `<ns>_<model>` (explicit ack, unlimited deliveries), checkpointing in
//! `projector_checkpoints`, parking what it cannot apply in `<NS>_DLQ` (see the private `batch` module).
//!
//! One instance per read model: the checkpoint assumes a single writer (like the outbox relay).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, context::GetStreamErrorKind, stream::Stream};
use deadpool_postgres::Pool;
use futures::StreamExt;
use gatehouse_events::subjects;
use tokio_util::sync::CancellationToken;

use crate::batch::Projector;
use crate::checkpoint::{ConsumerState, Progress};
use crate::consumer::{self, Durable};
use crate::dead_letter;
use crate::delivery::Delivery;
use crate::error::ProjectorError;
use crate::model::{ReadModel, Tables};
use crate::settings::ProjectorSettings;

/// How often to look for the events stream while the relay has not created it yet.
const STREAM_POLL: Duration = Duration::from_secs(1);
/// The longest pause between attempts after JetStream failed.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Runs `model`'s projector until `shutdown`: then it finishes the batch in hand (commit, ack)
/// and returns. It returns an error only if it cannot set up its consumer or the dead-letter
/// stream at start; later JetStream and Postgres failures are logged and retried.
pub async fn run(
    model: Arc<dyn ReadModel>,
    settings: ProjectorSettings,
    pool: Pool,
    js: jetstream::Context,
    shutdown: CancellationToken,
) -> Result<(), ProjectorError> {
    let ns = settings.namespace.clone();
    dead_letter::ensure_stream(&js, &ns).await?;
    let Some(stream) = events_stream(&js, &ns, &shutdown).await? else {
        return Ok(());
    };
    let consumer = ensure_consumer(&stream, model.as_ref(), &settings).await?;
    let name = model.name();
    tracing::info!(projector = name, consumer = %consumer_name(&settings, model.as_ref()),
        "projector started");
    let projector = Projector {
        consumer_name: consumer_name(&settings, model.as_ref()),
        progress: Progress::resume(ConsumerState::of(consumer.cached_info())),
        consumer,
        tables: Tables::live(model.as_ref()),
        model,
        settings,
        pool,
        js,
    };
    feed(projector, &stream, &shutdown).await;
    tracing::info!(projector = name, "projector stopped");
    Ok(())
}

/// Fetches and projects batches until `shutdown`, riding out JetStream failures.
async fn feed(mut projector: Projector, stream: &Stream, shutdown: &CancellationToken) {
    let mut pause = Duration::ZERO;
    loop {
        let fetched = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            fetched = fetch(&projector.consumer, &projector.settings) => fetched,
        };
        match fetched {
            Ok(batch) if batch.is_empty() => {
                if pause > Duration::ZERO {
                    // Fetching works again: a quiet projector is no longer degraded.
                    projector.settings.health.recover(&projector.consumer_name);
                }
                pause = Duration::ZERO;
                projector.idle().await;
            }
            Ok(batch) => {
                pause = Duration::ZERO;
                projector.handle(batch).await;
            }
            Err(e) => {
                pause = (pause * 2).clamp(Duration::from_secs(1), MAX_PAUSE);
                let reason = format!("could not fetch: {e}");
                projector
                    .settings
                    .health
                    .degrade(&projector.consumer_name, &reason);
                tracing::error!(error.message = %e, error.cause_chain = ?e,
                    projector = projector.model.name(), ?pause, "could not fetch from the events stream");
                if sleep_or_shutdown(pause, shutdown).await {
                    break;
                }
                // The consumer may have been deleted: create it again (a no-op otherwise).
                match ensure_consumer(stream, projector.model.as_ref(), &projector.settings).await {
                    Ok(recreated) => projector.consumer = recreated,
                    Err(e) => tracing::error!(error.message = %e, error.cause_chain = ?e,
                        "could not recreate the consumer"),
                }
            }
        }
    }
    // Acks are fire-and-forget publishes: make sure the last batch's reached the server.
    if let Err(e) = projector.js.client().flush().await {
        tracing::warn!(error.message = %e, error.cause_chain = ?e, "could not flush the last acks");
    }
}

fn consumer_name(settings: &ProjectorSettings, model: &dyn ReadModel) -> String {
    subjects::projector_consumer(&settings.namespace, model.name())
}

/// The events stream, once the relay has created it; `None` on shutdown.
async fn events_stream(
    js: &jetstream::Context,
    ns: &str,
    shutdown: &CancellationToken,
) -> Result<Option<Stream>, ProjectorError> {
    let name = subjects::events_stream(ns);
    let mut logged = false;
    loop {
        match js.get_stream(&name).await {
            Ok(stream) => return Ok(Some(stream)),
            Err(e)
                if matches!(e.kind(), GetStreamErrorKind::JetStream(ref j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                if !logged {
                    tracing::info!(stream = %name, "waiting for the relay to create the events stream");
                    logged = true;
                }
            }
            Err(e) => {
                return Err(ProjectorError::jetstream(
                    format!("look up stream {name}"),
                    e,
                ))
            }
        }
        if sleep_or_shutdown(STREAM_POLL, shutdown).await {
            return Ok(None);
        }
    }
}

/// Creates the model's durable consumer, or updates its mutable settings.
async fn ensure_consumer(
    stream: &Stream,
    model: &dyn ReadModel,
    settings: &ProjectorSettings,
) -> Result<PullConsumer, ProjectorError> {
    let Durable { config, .. } = durable(model, settings);
    let name = consumer_name(settings, model);
    stream
        .create_consumer(config)
        .await
        .map_err(|e| ProjectorError::jetstream(format!("create or update consumer {name}"), e))
}

/// The durable consumer of `model`'s projector on the events stream.
pub fn durable(model: &dyn ReadModel, settings: &ProjectorSettings) -> Durable {
    let mut filters = model.filter_subjects(&settings.namespace);
    // One filter goes in `filter_subject`, which every server version understands.
    let filter_subject = if filters.len() == 1 {
        filters.remove(0)
    } else {
        String::new()
    };
    let batch = i64::try_from(settings.batch_size).unwrap_or(i64::MAX);
    let config = pull::Config {
        durable_name: Some(consumer_name(settings, model)),
        description: Some(format!(
            "Gatehouse projector of the {} read model",
            model.name()
        )),
        filter_subject,
        filter_subjects: filters,
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: settings.ack_wait,
        max_deliver: consumer::UNLIMITED_DELIVERIES,
        max_ack_pending: settings.max_ack_pending.max(batch),
        ..Default::default()
    };
    Durable {
        stream: subjects::events_stream(&settings.namespace),
        config,
    }
}

/// One pull: up to `batch_size` messages, waiting at most `fetch_expiry` for the first one.
async fn fetch(
    consumer: &PullConsumer,
    settings: &ProjectorSettings,
) -> Result<Vec<Delivery>, async_nats::Error> {
    let mut messages = consumer
        .fetch()
        .max_messages(settings.batch_size)
        .expires(settings.fetch_expiry)
        .messages()
        .await?;
    let mut batch = Vec::new();
    while let Some(message) = messages.next().await {
        match message.and_then(Delivery::new) {
            Ok(delivery) => batch.push(delivery),
            Err(e) if batch.is_empty() => return Err(e),
            // Keep what arrived; the rest is redelivered after `ack_wait`.
            Err(e) => {
                tracing::warn!(error.message = %e, error.cause_chain = ?e, "a fetch ended early");
                break;
            }
        }
    }
    Ok(batch)
}

/// Sleeps for `pause`; true if shutdown came first.
async fn sleep_or_shutdown(pause: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(pause) => false,
    }
}
