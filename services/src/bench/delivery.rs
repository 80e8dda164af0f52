//! Scenario `delivery`: at a steady command rate (open loop: command `k` leaves at `k / rate`
//! whatever the replies do), how long from an event's commit until
//! (a) the events stream delivers it to a consumer (an ordered pull consumer in this process),
//! (b) the audit read model holds it (polled, see [`super::observe`]),
//! (c) an external subscriber holds `policy.promoted` — not measurable until promotions exist.
//!
//! The commit time is the event's `recorded_at`: Postgres `now()`, the start of the writing
//! transaction, on the same host clock; so every figure includes the rest of that transaction.
//! `stored` splits (a): commit → the stream's own store time (`published`, server clock).
//!
//! Limit, same run: raw JetStream publish → the same kind of consumer at the same rate, on the
//! scratch stream `<NS>_BENCH_RAW`, with a body as large as an event's, awaiting each PubAck.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use chrono::Utc;
use futures::future::BoxFuture;
use gatehouse_events::metadata::{HEADER_AGGREGATE_ID, HEADER_RECORDED_AT};
use gatehouse_events::policy::AGGREGATE;
use gatehouse_events::subjects;
use tokio::time::Instant;

use super::figures::{Spec, Target};
use super::machine::CpuSample;
use super::observe::{collect, Headers, ReadModelPoller, Seen, StreamWatcher};
use super::stats::Latencies;
use super::{workload, Bench};
use crate::broker;
use crate::client::Client;

/// Every figure of the scenario.
pub const SPECS: &[Spec] = &[
    Spec::plain("read_model.p99_ms", "ms", "(b) commit → audit_log row, p99")
        .target(Target::AtMost { value: 50.0 }),
    Spec::plain(
        "subscriber.p99_ms",
        "ms",
        "(c) commit → subscriber holds policy.promoted, p99",
    )
    .target(Target::AtMost { value: 100.0 }),
    Spec::plain(
        "stream.p50_ms",
        "ms",
        "(a) commit → delivered from the events stream, p50",
    )
    .versus("raw_js.p50_ms"),
    Spec::plain(
        "stream.p99_ms",
        "ms",
        "(a) commit → delivered from the events stream, p99",
    )
    .versus("raw_js.p99_ms"),
    Spec::plain("stream.max_ms", "ms", "(a) max").versus("raw_js.max_ms"),
    Spec::plain(
        "stored.p50_ms",
        "ms",
        "commit → stored in the stream (server clock), p50",
    ),
    Spec::plain(
        "stored.p99_ms",
        "ms",
        "commit → stored in the stream (server clock), p99",
    ),
    Spec::plain("read_model.p50_ms", "ms", "(b) commit → audit_log row, p50"),
    Spec::plain("read_model.max_ms", "ms", "(b) max"),
    Spec::plain("subscriber.p50_ms", "ms", "(c) p50"),
    Spec::plain(
        "raw_js.p50_ms",
        "ms",
        "limit: JetStream publish → consumer, p50",
    ),
    Spec::plain(
        "raw_js.p99_ms",
        "ms",
        "limit: JetStream publish → consumer, p99",
    ),
    Spec::plain("raw_js.max_ms", "ms", "limit: max"),
    Spec::plain("rate", "cmd/s", "commands sent per second (target: --rate)"),
    Spec::plain("raw_js.rate", "msg/s", "raw messages published per second"),
    Spec::plain("command.p50_ms", "ms", "send → reply, p50"),
    Spec::plain("command.p99_ms", "ms", "send → reply, p99"),
    Spec::plain("errors", "count", "commands or raw publishes that failed"),
    Spec::plain(
        "missing",
        "count",
        "accepted but not seen in the stream or read model",
    ),
    Spec::plain(
        "busy_cores",
        "cores",
        "machine CPU busy while commands flowed",
    ),
    Spec::plain("other_cores", "cores", "CPU busy elsewhere (noise)"),
];

const NOT_YET: &str = "not yet measurable: policy.promoted is published by promotions, \
                       which are being built (issue 3)";
/// How long to wait for the last sightings of a repetition.
const DRAIN: Duration = Duration::from_secs(30);
const RAW_HEADERS: Headers = Headers {
    id: "Bench-Id",
    origin: "Bench-Sent-At",
};

/// Runs the scenario (the registry's entry point).
pub fn run(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(delivery(bench))
}

async fn delivery(b: &mut Bench) -> anyhow::Result<()> {
    let ns = b.system.settings.namespace.clone();
    let js = broker::jetstream(&b.system.nats);
    broker::ensure_events_stream(&js, &b.system.settings).await?;
    let events_headers = Headers {
        id: HEADER_AGGREGATE_ID,
        origin: HEADER_RECORDED_AT,
    };
    let mut watcher = StreamWatcher::start(
        &js,
        &subjects::events_stream(&ns),
        &subjects::all_events(&ns),
        events_headers,
    )
    .await?;
    let mut poller = ReadModelPoller::start(b.system.connect_db().await?);
    let raw_stream = scratch_stream(&js, &ns).await?;
    let mut raw_watcher =
        StreamWatcher::start(&js, &raw_stream, &format!("{ns}.bench.raw.>"), RAW_HEADERS).await?;
    let client = b.system.client("bench-delivery").await?;
    let (rate, d) = (b.params.rate, b.params.duration);
    b.parameter("rate", rate);
    b.parameter(
        "read_model_poll_ms",
        super::observe::POLL.as_secs_f64() * 1e3,
    );
    if !b.params.warmup.is_zero() {
        let sent = send_at_rate(&client, &poller, "warm-", rate, b.params.warmup).await;
        collect(&mut poller.seen, "warm-", sent.accepted, DRAIN).await;
    }
    for rep in 0..b.params.reps {
        let prefix = format!("dl{rep}-");
        let cpu = CpuSample::take();
        let sent = send_at_rate(&client, &poller, &prefix, rate, d).await;
        let stream = collect(&mut watcher.seen, &prefix, sent.accepted, DRAIN).await;
        let read = collect(&mut poller.seen, &prefix, sent.accepted, DRAIN).await;
        let used = CpuSample::take().since(&cpu);
        b.push("busy_cores", used.machine)?;
        b.push("other_cores", used.others())?;
        b.system.settle(DRAIN).await?;
        let body = sample_body(&b.system.db).await?;
        let raw_prefix = format!("raw{rep}-");
        let raw = publish_at_rate(&js, &ns, &raw_prefix, body, rate, d).await;
        let raw_seen = collect(&mut raw_watcher.seen, &raw_prefix, raw.accepted, DRAIN).await;
        record(b, &sent, &stream, &read, &raw, &raw_seen)?;
        eprintln!(
            "bench: delivery rep {}/{}: {:.0} cmd/s, stream p99 {:.1} ms, read model p99 {:.1} ms, raw p99 {:.1} ms",
            rep + 1,
            b.params.reps,
            sent.rate(),
            b.figures.values("stream.p99_ms").last().unwrap_or(&f64::NAN),
            b.figures.values("read_model.p99_ms").last().unwrap_or(&f64::NAN),
            b.figures.values("raw_js.p99_ms").last().unwrap_or(&f64::NAN),
        );
    }
    b.figures.unavailable("subscriber.p99_ms", NOT_YET)?;
    b.figures.unavailable("subscriber.p50_ms", NOT_YET)?;
    watcher.stop();
    raw_watcher.stop();
    poller.stop();
    Ok(())
}

fn record(
    b: &mut Bench,
    sent: &Sent,
    stream: &[Seen],
    read: &[Seen],
    raw: &Sent,
    raw_seen: &[Seen],
) -> anyhow::Result<()> {
    let of =
        |seen: &[Seen]| Latencies::of_ms(&seen.iter().map(Seen::latency_ms).collect::<Vec<_>>());
    let stored: Vec<f64> = stream.iter().filter_map(Seen::stored_ms).collect();
    let mut figures: Vec<(&str, Option<Latencies>)> = vec![
        ("stream", of(stream)),
        ("stored", Latencies::of_ms(&stored)),
        ("read_model", of(read)),
        ("raw_js", of(raw_seen)),
        ("command", Latencies::of(&sent.latencies)),
    ];
    for (name, latencies) in figures.drain(..) {
        let Some(l) = latencies else { continue };
        for (stat, value) in [("p50_ms", l.p50), ("p99_ms", l.p99), ("max_ms", l.max)] {
            let figure = format!("{name}.{stat}");
            if b.figures.declares(&figure) {
                b.push(&figure, value)?;
            }
        }
    }
    let missing = (sent.accepted - stream.len().min(sent.accepted))
        .max(sent.accepted - read.len().min(sent.accepted))
        + (raw.accepted - raw_seen.len().min(raw.accepted));
    b.push("rate", sent.rate())?;
    b.push("raw_js.rate", raw.rate())?;
    b.push("errors", (sent.errors + raw.errors) as f64)?;
    b.push("missing", missing as f64)
}

/// What an open-loop sender did.
#[derive(Debug, Default)]
struct Sent {
    accepted: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Sent {
    fn rate(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    async fn gather(mut self, tasks: Vec<tokio::task::JoinHandle<Option<Duration>>>) -> Sent {
        for task in tasks {
            match task.await {
                Ok(Some(latency)) => {
                    self.accepted += 1;
                    self.latencies.push(latency);
                }
                _ => self.errors += 1,
            }
        }
        self
    }
}

/// The time the `k`-th message of an open loop at `rate` is due, if before `end`.
fn due(start: Instant, k: u64, rate: f64, end: Duration) -> Option<Instant> {
    let offset = Duration::from_secs_f64(k as f64 / rate.max(1e-3));
    (offset < end).then(|| start + offset)
}

/// Sends `policy.create` of `<prefix><k>` at `rate` for `duration`, telling the poller first.
async fn send_at_rate(
    client: &Client,
    poller: &ReadModelPoller,
    prefix: &str,
    rate: f64,
    duration: Duration,
) -> Sent {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0.. {
        let Some(at) = due(start, k, rate, duration) else {
            break;
        };
        tokio::time::sleep_until(at).await;
        let id = format!("{prefix}{k}");
        poller.expect(id.clone());
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let command = workload::create(&id).ok()?;
            let sender = workload::sender();
            let reply = client.command(AGGREGATE, "create", &sender, command);
            reply.await.ok().map(|_| sent.elapsed())
        }));
    }
    let sent = Sent {
        elapsed: start.elapsed(),
        ..Sent::default()
    };
    sent.gather(tasks).await
}

/// Publishes `body` as `<prefix><k>` on the scratch stream at `rate` for `duration`.
async fn publish_at_rate(
    js: &jetstream::Context,
    ns: &str,
    prefix: &str,
    body: bytes::Bytes,
    rate: f64,
    duration: Duration,
) -> Sent {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0.. {
        let Some(at) = due(start, k, rate, duration) else {
            break;
        };
        tokio::time::sleep_until(at).await;
        let (js, body) = (js.clone(), body.clone());
        let id = format!("{prefix}{k}");
        let subject = format!("{ns}.bench.raw.{id}");
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            headers.insert(RAW_HEADERS.id, id.as_str());
            headers.insert(RAW_HEADERS.origin, Utc::now().to_rfc3339().as_str());
            let ack = js.publish_with_headers(subject, headers, body).await.ok()?;
            ack.await.ok().map(|_| sent.elapsed())
        }));
    }
    let sent = Sent {
        elapsed: start.elapsed(),
        ..Sent::default()
    };
    sent.gather(tasks).await
}

/// The scratch stream of the raw limit. It cannot be deleted (the `gatehouse` user may not),
/// so its messages expire after an hour.
async fn scratch_stream(js: &jetstream::Context, ns: &str) -> anyhow::Result<String> {
    let name = format!("{}_BENCH_RAW", ns.to_ascii_uppercase());
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
async fn sample_body(db: &tokio_postgres::Client) -> anyhow::Result<bytes::Bytes> {
    let row = db
        .query_one(
            "SELECT to_jsonb(e) - 'tx_id' FROM events e ORDER BY global_position DESC LIMIT 1",
            &[],
        )
        .await?;
    let record: serde_json::Value = row.get(0);
    Ok(serde_json::to_vec(&record)?.into())
}
