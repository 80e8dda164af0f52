//! Announces every promotion as `policy.promoted`: durably on `<ns>.notify.policy.promoted`
//! (stream `<NS>_NOTIFY`, which external subscribers read through their durable consumer
//! `subscriber`, replayable from the beginning) and live on the core subject
//! `<ns>.live.policy.promoted`.
//!
//! Reads `PolicyPromoted` events from the events stream with its own durable consumer, one at a
//! time (so notices of a policy keep their order), and acks each only after the notice's PubAck.
//! A notice's `Nats-Msg-Id` is `policy.promoted:<policy_id>:<sequence>`: a redelivery is deduped.
//! It runs on the consumer runtime ([`gatehouse_projections::consumer`]): an undecodable record
//! is dead-lettered (`<ns>.dlq.<ns>_notifier`) and the notifier moves on; a failed publish is
//! retried without limit.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, Message};
use async_nats::HeaderMap;
use async_trait::async_trait;
use gatehouse_events::policy::PolicyEvent;
use gatehouse_events::record::EventRecord;
use gatehouse_events::run::PolicyPromotedNotice;
use gatehouse_events::subjects;
use gatehouse_projections::consumer::{self, Durable, Handler, Health, Outcome};
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
use crate::{broker, RoleError};

/// Runs the notifier until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    run_with(settings, Health::default(), shutdown).await
}

/// Runs the notifier until `shutdown`, reporting an outage it rides out in `health`.
pub async fn run_with(
    settings: Settings,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), RoleError> {
    let client = broker::connect(&settings, "notifier").await?;
    let js = broker::jetstream(&client);
    broker::ensure_notify_stream(&js, &settings).await?;
    let ns = settings.namespace.clone();
    ensure_subscriber_consumer(&js, &ns).await?;
    let (consumer, config) = broker::promotions_consumer(&js, &settings, "notifier").await?;
    let notifier = Notifier {
        client: client.clone(),
        js: js.clone(),
        ns,
    };
    consumer::run(consumer, js, config, health, notifier, shutdown).await;
    let _ = client.drain().await;
    Ok(())
}

/// The notifier's handler: one `PolicyPromoted` event per call.
struct Notifier {
    client: async_nats::Client,
    js: jetstream::Context,
    ns: String,
}

#[async_trait]
impl Handler for Notifier {
    async fn handle(&self, messages: &[Message]) -> Outcome {
        let Some(message) = messages.first() else {
            return Outcome::Ack;
        };
        let notice = match notice(&message.payload) {
            Ok(notice) => notice,
            Err(poison) => return Outcome::Poison(poison),
        };
        match announce(&self.client, &self.js, &self.ns, &notice).await {
            Ok(()) => Outcome::Ack,
            Err(e) => Outcome::Transient(format!("cannot announce a promotion: {e}")),
        }
    }
}

/// The notice of a `PolicyPromoted` record; an undecodable record is poison.
fn notice(body: &[u8]) -> Result<PolicyPromotedNotice, String> {
    let record: EventRecord =
        serde_json::from_slice(body).map_err(|e| format!("undecodable event record: {e}"))?;
    let p = match serde_json::from_value::<PolicyEvent>(record.payload.clone()) {
        Ok(PolicyEvent::PolicyPromoted(p)) => p,
        Ok(_) => return Err("a PolicyPromoted message without a promotion".into()),
        Err(e) => return Err(format!("undecodable PolicyPromoted event: {e}")),
    };
    Ok(PolicyPromotedNotice {
        policy_id: record.aggregate_id.clone(),
        version: p.version,
        previous_version: p.previous_version,
        run_id: p.run_id,
        counters: p.counters,
        promoted_by: p.promoted_by,
        promoted_at: p.promoted_at,
        sequence: record.sequence,
    })
}

/// Publishes one promotion's notice (durable, then live).
async fn announce(
    client: &async_nats::Client,
    js: &jetstream::Context,
    ns: &str,
    notice: &PolicyPromotedNotice,
) -> Result<(), String> {
    let payload = serde_json::to_vec(notice).map_err(|e| e.to_string())?;
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

/// Creates the durable consumer external subscribers bind to (they may not create consumers).
async fn ensure_subscriber_consumer(js: &jetstream::Context, ns: &str) -> Result<(), RoleError> {
    let durable = subscriber_durable(ns);
    js.get_stream(&durable.stream)
        .await
        .map_err(RoleError::broker("look up the notify stream"))?
        .create_consumer(durable.config)
        .await
        .map_err(RoleError::broker("create the subscriber consumer"))?;
    Ok(())
}

/// The durable consumer external subscribers bind to, under a fixed name, on the notify
/// stream.
pub fn subscriber_durable(ns: &str) -> Durable {
    Durable {
        stream: subjects::notify_stream(ns),
        config: pull::Config {
            durable_name: Some(subjects::SUBSCRIBER_CONSUMER.to_owned()),
            filter_subject: subjects::policy_promoted(ns),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: Duration::from_secs(30),
            max_deliver: gatehouse_projections::consumer::UNLIMITED_DELIVERIES,
            ..Default::default()
        },
    }
}
