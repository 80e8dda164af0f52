//! The open-loop senders of `delivery`: command `k` leaves at `k / rate` whatever the replies
//! do. Most slots are `policy.create`; one in [`PROMOTE_EVERY`] is a `policy.promote` of a run
//! prepared beforehand. The raw limit publishes to a scratch stream at the same rate.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use chrono::Utc;
use gatehouse_events::policy::AGGREGATE;
use gatehouse_events::run::PromoteRun;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::promotions::Ready;
use super::RAW_HEADERS;
use crate::observe::ReadModelPoller;
use crate::workload;
use gatehouse::client::Client;

/// One command slot in this many is a promotion: 5 promotions/s at the default 500 commands/s,
/// 50 samples of (c) per 10 s repetition. Promotions are operator decisions, rare in real use;
/// this share is far above any real cadence, yet keeps the runs to prepare before the timed
/// phases (one per promotion) to a few hundred.
pub const PROMOTE_EVERY: u64 = 100;

/// Is slot `k` a promotion? (Mid-period, so a short run still promotes under load.)
fn promotes(k: u64) -> bool {
    k % PROMOTE_EVERY == PROMOTE_EVERY / 2
}

/// How many promotion slots an open loop at `rate` for `duration` has.
pub fn promotions(rate: f64, duration: Duration) -> usize {
    (0..)
        .map_while(|k| offset(k, rate, duration).map(|_| k))
        .filter(|&k| promotes(k))
        .count()
}

/// What an open-loop sender did.
#[derive(Debug, Default)]
pub struct Sent {
    /// Commands (or raw publishes) that succeeded, promotions included.
    pub accepted: usize,
    /// Of those, the promotions.
    pub promotions: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Sent {
    /// The accepted `policy.create` commands (or raw publishes).
    pub fn creates(&self) -> usize {
        self.accepted - self.promotions
    }

    pub fn rate(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Waits for every task; each is `(is a promotion, its send → reply time if it succeeded)`.
    async fn gather(elapsed: Duration, tasks: Vec<Slot>) -> Sent {
        let mut sent = Sent {
            elapsed,
            ..Sent::default()
        };
        for (promotion, task) in tasks {
            match task.await {
                Ok(Some(latency)) => {
                    sent.accepted += 1;
                    sent.promotions += usize::from(promotion);
                    sent.latencies.push(latency);
                }
                _ => sent.errors += 1,
            }
        }
        sent
    }
}

/// A send started for one slot: is it a promotion, and its task (send → reply time if it
/// succeeded).
type Slot = (bool, JoinHandle<Option<Duration>>);

/// Starts `start(k)` for every slot `k` at its time in an open loop at `rate` for `duration`,
/// then waits for every task.
async fn open_loop(rate: f64, duration: Duration, mut start: impl FnMut(u64) -> Slot) -> Sent {
    let began = Instant::now();
    let mut tasks = Vec::new();
    for k in 0.. {
        let Some(at) = offset(k, rate, duration) else {
            break;
        };
        tokio::time::sleep_until(began + at).await;
        tasks.push(start(k));
    }
    Sent::gather(began.elapsed(), tasks).await
}

/// When the `k`-th message of an open loop at `rate` is due after its start, if before `end`.
fn offset(k: u64, rate: f64, end: Duration) -> Option<Duration> {
    let offset = Duration::from_secs_f64(k as f64 / rate.max(1e-3));
    (offset < end).then_some(offset)
}

/// Sends `policy.create` of `<prefix><k>` at `rate` for `duration`, telling the poller first;
/// promotion slots promote the next run of `ready` instead (a create if none is left).
pub async fn commands_at_rate(
    client: &Client,
    poller: &ReadModelPoller,
    prefix: &str,
    ready: &mut Ready,
    rate: f64,
    duration: Duration,
) -> Sent {
    open_loop(rate, duration, |k| {
        let client = client.clone();
        match promotes(k).then(|| ready.next()).flatten() {
            Some(run_id) => (true, tokio::spawn(promote(client, run_id))),
            None => {
                let id = format!("{prefix}{k}");
                poller.expect(id.clone());
                (false, tokio::spawn(create(client, id)))
            }
        }
    })
    .await
}

async fn create(client: Client, policy_id: String) -> Option<Duration> {
    let sent = Instant::now();
    let command = workload::create(&policy_id).ok()?;
    let sender = workload::sender();
    let reply = client.command(AGGREGATE, "create", &sender, command);
    reply.await.ok().map(|_| sent.elapsed())
}

async fn promote(client: Client, run_id: String) -> Option<Duration> {
    let sent = Instant::now();
    let command = PromoteRun {
        run_id,
        coverage_threshold: None,
        max_errors: None,
    };
    let sender = workload::sender();
    let reply = client.command(AGGREGATE, "promote", &sender, command);
    reply.await.ok().map(|_| sent.elapsed())
}

/// Publishes `body` as `<prefix><k>` on the scratch stream at `rate` for `duration`.
pub async fn publish_at_rate(
    js: &jetstream::Context,
    ns: &str,
    prefix: &str,
    body: bytes::Bytes,
    rate: f64,
    duration: Duration,
) -> Sent {
    open_loop(rate, duration, |k| {
        let (js, body) = (js.clone(), body.clone());
        let id = format!("{prefix}{k}");
        let subject = format!("{ns}.bench.raw.{id}");
        let task = tokio::spawn(async move {
            let sent = Instant::now();
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            headers.insert(RAW_HEADERS.id, id.as_str());
            headers.insert(RAW_HEADERS.origin, Utc::now().to_rfc3339().as_str());
            let ack = js.publish_with_headers(subject, headers, body).await.ok()?;
            ack.await.ok().map(|_| sent.elapsed())
        });
        (false, task)
    })
    .await
}

/// The scratch stream's name.
pub fn scratch_stream_name(ns: &str) -> String {
    format!("{}_BENCH_RAW", ns.to_ascii_uppercase())
}

/// The scratch stream of the raw limit (deleted with the namespace's streams at the end; its
/// messages expire after an hour should that fail).
pub async fn scratch_stream(js: &jetstream::Context, ns: &str) -> anyhow::Result<String> {
    let name = scratch_stream_name(ns);
    js.create_or_update_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{ns}.bench.raw.>")],
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(3600),
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    Ok(name)
}

/// The body of a real event record, for the raw messages.
pub async fn sample_body(db: &tokio_postgres::Client) -> anyhow::Result<bytes::Bytes> {
    let row = db
        .query_one(
            "SELECT to_jsonb(e) - 'tx_id' FROM events e ORDER BY global_position DESC LIMIT 1",
            &[],
        )
        .await?;
    let record: serde_json::Value = row.get(0);
    Ok(serde_json::to_vec(&record)?.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_slot_in_a_hundred_promotes() {
        assert_eq!(promotions(500.0, Duration::from_secs(10)), 50);
    }

    #[test]
    fn a_short_loop_still_promotes_once_it_reaches_mid_period() {
        assert_eq!(promotions(200.0, Duration::from_millis(500)), 1);
        assert_eq!(promotions(200.0, Duration::from_millis(250)), 0);
    }
}
