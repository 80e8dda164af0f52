//! NATS connections and the JetStream streams the command side owns.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use gatehouse_events::subjects;

use crate::settings::Settings;

/// A broker failure.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot create or update stream {name}")]
    Stream {
        name: String,
        #[source]
        source: jetstream::context::CreateStreamError,
    },
    #[error("cannot delete stream {name}")]
    DeleteStream {
        name: String,
        #[source]
        source: jetstream::context::DeleteStreamError,
    },
}

/// Connects to NATS with the settings' credentials, naming the connection after the role.
pub async fn connect(settings: &Settings, role: &str) -> Result<async_nats::Client, BrokerError> {
    let mut options = match (&settings.nats_user, &settings.nats_password) {
        (Some(user), Some(pass)) => {
            async_nats::ConnectOptions::with_user_and_password(user.clone(), pass.clone())
        }
        _ => async_nats::ConnectOptions::new(),
    };
    options = options
        .name(format!("gatehouse-{role}"))
        .request_timeout(Some(settings.request_timeout))
        // Permission violations reach the client only through this callback: log them.
        .event_callback(|event| async move {
            match event {
                async_nats::Event::ServerError(e) => {
                    tracing::warn!(error.message = %e, "nats server error")
                }
                other => tracing::debug!(event = %other, "nats connection event"),
            }
        });
    let urls: Vec<String> = settings
        .nats_url
        .split(',')
        .map(|u| u.trim().to_owned())
        .collect();
    options
        .connect(urls.as_slice())
        .await
        .map_err(|source| BrokerError::Connect {
            url: settings.nats_url.clone(),
            source,
        })
}

/// A JetStream context whose API calls and PubAcks time out after 10 s.
pub fn jetstream(client: &async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .build(client.clone())
}

/// Creates or updates the events stream: every stored event, in commit order, kept for good.
pub async fn ensure_events_stream(
    js: &jetstream::Context,
    settings: &Settings,
) -> Result<stream::Info, BrokerError> {
    create_or_update(js, events_stream_config(settings)).await
}

/// The events stream's configuration (what [`ensure_events_stream`] creates).
pub fn events_stream_config(settings: &Settings) -> stream::Config {
    let ns = &settings.namespace;
    stream::Config {
        name: subjects::events_stream(ns),
        subjects: vec![subjects::all_events(ns)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: settings.events_duplicate_window,
        // The relay reads the last message per subject after a crash (see relay.rs).
        allow_direct: true,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

/// Creates or updates the notification stream external subscribers consume.
pub async fn ensure_notify_stream(
    js: &jetstream::Context,
    settings: &Settings,
) -> Result<stream::Info, BrokerError> {
    create_or_update(js, notify_stream_config(settings)).await
}

/// The notification stream's configuration.
pub fn notify_stream_config(settings: &Settings) -> stream::Config {
    let ns = &settings.namespace;
    stream::Config {
        name: subjects::notify_stream(ns),
        subjects: vec![subjects::all_notifications(ns)],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(600),
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

/// Creates or updates the outcomes stream: flag outcomes services report, kept a day (the
/// flag monitor counts them into windows; they are not the record).
pub async fn ensure_outcomes_stream(
    js: &jetstream::Context,
    settings: &Settings,
) -> Result<stream::Info, BrokerError> {
    create_or_update(js, outcomes_stream_config(settings)).await
}

/// The outcomes stream's configuration.
pub fn outcomes_stream_config(settings: &Settings) -> stream::Config {
    let ns = &settings.namespace;
    stream::Config {
        name: subjects::outcomes_stream(ns),
        subjects: vec![subjects::all_outcomes(ns)],
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(86_400),
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

/// Creates or updates the catalog stream: upserts and deletes of items, kept for replay.
pub async fn ensure_catalog_stream(
    js: &jetstream::Context,
    settings: &Settings,
) -> Result<stream::Info, BrokerError> {
    let config = gatehouse_projections::catalog::stream_config(&settings.namespace);
    create_or_update(js, config).await
}

/// Creates or updates the work-queue stream of evaluation batch jobs.
pub async fn ensure_jobs_stream(
    js: &jetstream::Context,
    settings: &Settings,
) -> Result<stream::Info, BrokerError> {
    create_or_update(js, jobs_stream_config(settings)).await
}

/// The jobs work queue's configuration.
pub fn jobs_stream_config(settings: &Settings) -> stream::Config {
    let ns = &settings.namespace;
    stream::Config {
        name: subjects::jobs_stream(ns),
        subjects: vec![subjects::all_jobs(ns)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::WorkQueue,
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    }
}

async fn create_or_update(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Info, BrokerError> {
    let name = config.name.clone();
    js.create_or_update_stream(config)
        .await
        .map_err(|source| BrokerError::Stream { name, source })
}

/// Deletes the streams named `names` that exist, with their consumers, connecting as the user
/// named by `NATS_ADMIN_USER` / `NATS_ADMIN_PASSWORD` (the scripts set them to `admin`): the
/// service's own user may not delete streams, as the event log is append-only. For the
/// harnesses that made a namespace (tests, benchmarks) to remove its streams
/// ([`subjects::namespace_streams`]). Returns how many it deleted, or `None` when no admin user
/// is set.
pub async fn delete_streams(
    settings: &Settings,
    names: impl IntoIterator<Item = String>,
) -> Result<Option<usize>, BrokerError> {
    let (Ok(user), Ok(password)) = (
        std::env::var("NATS_ADMIN_USER"),
        std::env::var("NATS_ADMIN_PASSWORD"),
    ) else {
        return Ok(None);
    };
    let mut admin = settings.clone();
    admin.nats_user = Some(user);
    admin.nats_password = Some(password);
    let client = connect(&admin, "admin").await?;
    let js = jetstream(&client);
    let mut deleted = 0;
    for name in names {
        match js.delete_stream(&name).await {
            Ok(_) => deleted += 1,
            Err(e) if is_stream_not_found(&e) => {}
            Err(source) => return Err(BrokerError::DeleteStream { name, source }),
        }
    }
    Ok(Some(deleted))
}

fn is_stream_not_found(e: &jetstream::context::DeleteStreamError) -> bool {
    match e.kind() {
        jetstream::context::DeleteStreamErrorKind::JetStream(js) => {
            js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
        }
        _ => false,
    }
}

/// The durable consumer `<ns>_<role>` of every `PolicyPromoted` on the events stream, one at a
/// time (a policy's promotions keep their order), never giving up on a message: what the
/// notifier and the releaser run on the consumer runtime. Ensures the events and dead-letter
/// streams first.
pub async fn promotions_consumer(
    js: &jetstream::Context,
    settings: &Settings,
    role: &str,
) -> Result<
    (
        jetstream::consumer::Consumer<jetstream::consumer::pull::Config>,
        gatehouse_projections::consumer::ConsumerSettings,
    ),
    crate::RoleError,
> {
    use crate::RoleError;
    ensure_events_stream(js, settings).await?;
    let ns = settings.namespace.clone();
    gatehouse_projections::dead_letter::ensure_stream(js, &ns)
        .await
        .map_err(RoleError::broker("create the dead-letter stream"))?;
    let durable = promotions_durable(&ns, role);
    let mut config =
        gatehouse_projections::consumer::ConsumerSettings::new(durable.name(), ns.clone());
    config.ack_wait = durable.config.ack_wait;
    let consumer = js
        .get_stream(&durable.stream)
        .await
        .map_err(RoleError::broker("look up the events stream"))?
        .create_consumer(durable.config)
        .await
        .map_err(RoleError::broker(format!("create the {role}'s consumer")))?;
    Ok((consumer, config))
}

/// The durable consumer `<ns>_<role>` of [`promotions_consumer`].
pub fn promotions_durable(ns: &str, role: &str) -> gatehouse_projections::consumer::Durable {
    use gatehouse_projections::consumer::{DEFAULT_ACK_WAIT, UNLIMITED_DELIVERIES};
    use jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    let promoted = subjects::event(
        ns,
        gatehouse_events::policy::AGGREGATE,
        "*",
        "PolicyPromoted",
    );
    gatehouse_projections::consumer::Durable {
        stream: subjects::events_stream(ns),
        config: pull::Config {
            durable_name: Some(subjects::projector_consumer(ns, role)),
            filter_subject: promoted,
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            max_ack_pending: 1,
            max_deliver: UNLIMITED_DELIVERIES,
            ack_wait: DEFAULT_ACK_WAIT,
            ..Default::default()
        },
    }
}
