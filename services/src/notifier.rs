//! Announces every promotion as `policy.promoted`: durably on `<ns>.notify.policy.promoted`
//! (stream `<NS>_NOTIFY`, which external subscribers read through their durable consumer
//! `subscriber`, replayable from the beginning) and live on the core subject
//! `<ns>.live.policy.promoted`.
//!
//! Reads `PolicyPromoted` events from the events stream with its own durable consumer, one at a
//! time (so notices of a policy keep their order), and acks each only after the notice's PubAck.
//! A notice's `Nats-Msg-Id` is `policy.promoted:<policy_id>:<sequence>`: a redelivery is deduped.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, AckKind};
use async_nats::HeaderMap;
use futures::StreamExt;
use gatehouse_events::policy::PolicyEvent;
use gatehouse_events::record::EventRecord;
use gatehouse_events::run::PolicyPromotedNotice;
use gatehouse_events::subjects;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
use crate::{broker, RoleError};

/// Runs the notifier until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    let client = broker::connect(&settings, "notifier").await?;
    let js = broker::jetstream(&client);
    broker::ensure_events_stream(&js, &settings).await?;
    broker::ensure_notify_stream(&js, &settings).await?;
    let ns = settings.namespace.clone();
    ensure_subscriber_consumer(&js, &ns).await?;
    let consumer = js
        .get_stream(subjects::events_stream(&ns))
        .await
        .map_err(broker_error)?
        .create_consumer(pull::Config {
            durable_name: Some(subjects::projector_consumer(&ns, "notifier")),
            filter_subject: format!("{ns}.events.policy.*.PolicyPromoted"),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            max_ack_pending: 1,
            max_deliver: -1,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(broker_error)?;
    while !shutdown.is_cancelled() {
        let batch = consumer
            .fetch()
            .max_messages(50)
            .expires(Duration::from_millis(500))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error.message = %e, "notifier fetch failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(message) = batch.next().await {
            let Ok(message) = message else { break };
            match announce(&client, &js, &ns, &message.payload).await {
                Ok(()) => {
                    if let Err(e) = message.double_ack().await {
                        tracing::warn!(error.message = %e, "notifier ack failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(error.message = %e, "cannot announce a promotion; retrying");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                    break;
                }
            }
        }
    }
    let _ = client.drain().await;
    Ok(())
}

/// Publishes one promotion's notice (durable, then live).
async fn announce(
    client: &async_nats::Client,
    js: &jetstream::Context,
    ns: &str,
    body: &[u8],
) -> Result<(), String> {
    let record: EventRecord = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Ok(PolicyEvent::PolicyPromoted(p)) =
        serde_json::from_value::<PolicyEvent>(record.payload.clone())
    else {
        tracing::error!(
            position = record.position,
            "a PolicyPromoted message without a promotion: skipped"
        );
        return Ok(());
    };
    let notice = PolicyPromotedNotice {
        policy_id: record.aggregate_id.clone(),
        version: p.version,
        previous_version: p.previous_version,
        run_id: p.run_id,
        counters: p.counters,
        promoted_by: p.promoted_by,
        promoted_at: p.promoted_at,
        sequence: record.sequence,
    };
    let payload = serde_json::to_vec(&notice).map_err(|e| e.to_string())?;
    let mut headers = HeaderMap::new();
    let id = format!("policy.promoted:{}:{}", notice.policy_id, notice.sequence);
    headers.insert("Nats-Msg-Id", id.as_str());
    js.publish_with_headers(
        subjects::policy_promoted(ns),
        headers,
        payload.clone().into(),
    )
    .await
    .map_err(|e| e.to_string())?
    .await
    .map_err(|e| e.to_string())?;
    client
        .publish(subjects::policy_promoted_live(ns), payload.into())
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The durable consumer external subscribers bind to (they may not create consumers).
async fn ensure_subscriber_consumer(js: &jetstream::Context, ns: &str) -> Result<(), RoleError> {
    js.get_stream(subjects::notify_stream(ns))
        .await
        .map_err(broker_error)?
        .create_consumer(pull::Config {
            durable_name: Some(subjects::SUBSCRIBER_CONSUMER.to_owned()),
            filter_subject: subjects::policy_promoted(ns),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: Duration::from_secs(30),
            max_deliver: -1,
            ..Default::default()
        })
        .await
        .map_err(broker_error)?;
    Ok(())
}

fn broker_error(e: impl std::fmt::Display) -> RoleError {
    RoleError::Broker(e.to_string())
}
