//! Figure (c) of `delivery`: the runs its promotions promote, prepared before any timed phase,
//! and the external subscriber that receives their `policy.promoted` notices.
//!
//! A promotion needs a succeeded, unpromoted run: one policy per promotion (`<prefix><j>`,
//! created and drafted with the bench workload's bodies), each prepared over the same
//! [`CATALOG_ITEMS`] items, written straight into `catalog_items` (evaluating them is not what
//! (c) is about; `activation` measures that), and evaluated by the in-process worker.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::Message;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use gatehouse_events::policy::AGGREGATE;
use gatehouse_events::run::{PolicyPromotedNotice, PrepareRun};
use gatehouse_events::subjects;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::env::System;
use crate::observe::Seen;
use crate::workload;
use gatehouse::broker;
use gatehouse::client::Client;
use gatehouse::settings::Settings;

/// Catalog items every prepared run evaluates.
pub const CATALOG_ITEMS: i64 = 4;
/// Policies prepared at once.
const PREPARING: usize = 16;
/// How long preparing every run may take.
const PREPARE_DEADLINE: Duration = Duration::from_secs(300);
/// How long the subscriber waits for the notifier to create its durable consumer.
const BIND_DEADLINE: Duration = Duration::from_secs(30);
/// The `subscriber` user's password; without it the bench binds with its own connection.
const SUBSCRIBER_PASSWORD: &str = "GATEHOUSE_SUBSCRIBER_PASSWORD";
/// The inbox prefix the `subscriber` user may subscribe to (nats.conf).
const SUBSCRIBER_INBOX: &str = "_INBOX_subscriber";

/// The succeeded, unpromoted runs one phase promotes, of policies `<prefix><j>`, in order.
#[derive(Debug, Default)]
pub struct Ready {
    pub prefix: String,
    runs: VecDeque<String>,
}

impl Iterator for Ready {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.runs.pop_front()
    }
}

/// Prepares `count` runs for each `(prefix, count)` phase and waits until all succeeded.
pub async fn prepare(system: &System, phases: &[(String, usize)]) -> anyhow::Result<Vec<Ready>> {
    insert_catalog(&system.db).await?;
    let client = system.client("bench-prepare").await?;
    let mut policies = Vec::new();
    for (prefix, n) in phases {
        policies.extend((0..*n).map(|j| format!("{prefix}{j}")));
    }
    let runs: Vec<String> = futures::stream::iter(policies)
        .map(|policy_id| prepare_run(&client, policy_id))
        .buffered(PREPARING)
        .try_collect()
        .await?;
    wait_until_succeeded(system, &runs).await?;
    let mut runs = runs.into_iter();
    Ok(phases
        .iter()
        .map(|(prefix, n)| Ready {
            prefix: prefix.clone(),
            runs: runs.by_ref().take(*n).collect(),
        })
        .collect())
}

/// [`CATALOG_ITEMS`] ready items fitting the bench workload's schema, updated a second ago
/// (before any Prepare's cutoff).
async fn insert_catalog(db: &tokio_postgres::Client) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO catalog_items (item_id, status, attributes, updated_at, stream_seq)
         SELECT 'bench-item-' || i, 'ready',
                jsonb_build_object('kind', 'image', 'quality', i / 10.0, 'tags', '[\"bench\"]'::jsonb,
                                   'scan', jsonb_build_object('status', 'clean', 'critical', 0)),
                now() - interval '1 second', i
           FROM generate_series(1, $1::bigint) AS i",
        &[&CATALOG_ITEMS],
    )
    .await
    .context("cannot insert the bench catalog items")?;
    Ok(())
}

/// Creates and drafts policy `policy_id`, prepares its version 1; returns the run id.
async fn prepare_run(client: &Client, policy_id: String) -> anyhow::Result<String> {
    let sender = workload::sender;
    let prepare = PrepareRun {
        policy_id: policy_id.clone(),
        version: 1,
        batch_size: None,
        coverage_threshold: None,
        max_errors: None,
    };
    let steps = async {
        let create = workload::create(&policy_id)?;
        client
            .command(AGGREGATE, "create", &sender(), create)
            .await?;
        let draft = workload::draft(&policy_id, 0)?;
        client.command(AGGREGATE, "draft", &sender(), draft).await?;
        let done = client
            .command(AGGREGATE, "prepare", &sender(), prepare)
            .await?;
        done.detail["run_id"]
            .as_str()
            .map(str::to_owned)
            .context("the prepare reply names no run")
    };
    steps
        .await
        .with_context(|| format!("cannot prepare a run of {policy_id}"))
}

/// Waits until the `runs` read model shows every run of `run_ids` succeeded.
async fn wait_until_succeeded(system: &System, run_ids: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + PREPARE_DEADLINE;
    loop {
        system.check_roles()?;
        let row = system
            .db
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'success'),
                        count(*) FILTER (WHERE status IN ('failed', 'cancelled'))
                   FROM runs WHERE run_id = ANY($1)",
                &[&run_ids],
            )
            .await?;
        let (succeeded, failed): (i64, i64) = (row.get(0), row.get(1));
        anyhow::ensure!(failed == 0, "{failed} of the prepared runs did not succeed");
        if succeeded as usize == run_ids.len() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "only {succeeded} of {} prepared runs succeeded within {PREPARE_DEADLINE:?}",
                run_ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An external subscriber: as the `subscriber` user, it pulls the durable consumer
/// `subscriber` of `<NS>_NOTIFY` continuously and acks each notice after noting it.
///
/// A sighting's `id` is the notice's policy, `seen` when the message arrived, `stored` when
/// `<NS>_NOTIFY` stored it; its `origin` is the notice's `promoted_at` until [`committed`]
/// replaces it by the event's commit time.
pub struct Subscriber {
    task: JoinHandle<()>,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    /// The NATS user it is connected as.
    pub user: &'static str,
}

impl Subscriber {
    /// Binds to the durable as the `subscriber` user (with [`SUBSCRIBER_PASSWORD`] set), else
    /// on `fallback`, the same way.
    pub async fn bind(
        settings: &Settings,
        fallback: &async_nats::Client,
    ) -> anyhow::Result<Subscriber> {
        let password = std::env::var(SUBSCRIBER_PASSWORD).ok();
        let (nats, user) = match password.filter(|p| !p.is_empty()) {
            Some(password) => (connect(settings, password).await?, "subscriber"),
            None => (fallback.clone(), "gatehouse"),
        };
        let mut messages = durable(&nats, &settings.namespace)
            .await?
            .messages()
            .await?;
        let (tx, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let seen_at = Utc::now();
                let Ok(message) = message else { continue };
                let sighting = sighting(&message, seen_at);
                // Acked even if unreadable: it would otherwise come back forever.
                let _ = message.ack().await;
                if let Some(s) = sighting {
                    if tx.send(s).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Subscriber { task, seen, user })
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// A connection as the `subscriber` user, with the inbox prefix it may use.
async fn connect(settings: &Settings, password: String) -> anyhow::Result<async_nats::Client> {
    let urls: Vec<String> = settings
        .nats_url
        .split(',')
        .map(|u| u.trim().to_owned())
        .collect();
    async_nats::ConnectOptions::with_user_and_password("subscriber".into(), password)
        .name("gatehouse-bench-subscriber")
        .custom_inbox_prefix(SUBSCRIBER_INBOX)
        .connect(urls.as_slice())
        .await
        .context("cannot connect to NATS as the subscriber user")
}

/// The durable `subscriber` (`get_stream_no_info` + `get_consumer`: all the user may do),
/// once the notifier created it.
async fn durable(nats: &async_nats::Client, ns: &str) -> anyhow::Result<PullConsumer> {
    let js = broker::jetstream(nats);
    let stream = js.get_stream_no_info(subjects::notify_stream(ns)).await?;
    let deadline = Instant::now() + BIND_DEADLINE;
    loop {
        match stream.get_consumer(subjects::SUBSCRIBER_CONSUMER).await {
            Ok(consumer) => return Ok(consumer),
            Err(e) if Instant::now() >= deadline => {
                return Err(anyhow::anyhow!(
                    "the subscriber consumer never appeared: {e}"
                ))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn sighting(message: &Message, seen: DateTime<Utc>) -> Option<Seen> {
    let notice: PolicyPromotedNotice = serde_json::from_slice(&message.payload).ok()?;
    let stored = message.info().ok().and_then(|info| {
        let nanos = i64::try_from(info.published.unix_timestamp_nanos()).ok()?;
        Some(DateTime::from_timestamp_nanos(nanos))
    });
    Some(Seen {
        id: notice.policy_id,
        origin: notice.promoted_at,
        stored,
        seen,
    })
}

/// The sightings dated by the commit of their `PolicyPromoted` event (`recorded_at`, the
/// origin of every `delivery` figure); a redelivered notice counts once.
pub async fn committed(
    db: &tokio_postgres::Client,
    notices: Vec<Seen>,
) -> anyhow::Result<Vec<Seen>> {
    let ids: Vec<&str> = notices.iter().map(|s| s.id.as_str()).collect();
    let rows = db
        .query(
            "SELECT aggregate_id, recorded_at FROM events
              WHERE aggregate_type = $1 AND aggregate_id = ANY($2)
                AND event_type = 'PolicyPromoted'",
            &[&AGGREGATE, &ids],
        )
        .await?;
    let recorded: HashMap<String, DateTime<Utc>> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut once = HashSet::new();
    Ok(notices
        .into_iter()
        .filter_map(|mut s| {
            s.origin = *recorded.get(&s.id)?;
            once.insert(s.id.clone()).then_some(s)
        })
        .collect())
}
