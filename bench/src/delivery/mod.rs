//! Scenario `delivery`: at a steady command rate (open loop: command `k` leaves at `k / rate`
//! whatever the replies do), how long from an event's commit until
//! (a) the events stream delivers it to a consumer (an ordered pull consumer in this process),
//! (b) the audit read model holds it (polled, see [`super::observe`]),
//! (c) an external subscriber holds the `policy.promoted` notice of a promotion.
//!
//! The commit time is the event's `recorded_at`: Postgres `now()`, the start of the writing
//! transaction, on the same host clock; so every figure includes the rest of that transaction.
//! `stored` splits (a): commit → the stream's own store time (`published`, server clock).
//!
//! (c): one command slot in [`send::PROMOTE_EVERY`] is a `policy.promote` of a run prepared
//! before the timed phases ([`promotions`]: one policy per promotion, a run over a few items,
//! evaluated by a worker this scenario starts in-process along with the notifier). The
//! notifier turns the committed `PolicyPromoted` into a notice on `<NS>_NOTIFY`; the
//! subscriber — a connection of its own as the `subscriber` user, pulling the durable consumer
//! `subscriber` continuously and acking each notice, as an integrator would — dates its
//! arrival. (c) is arrival − the `PolicyPromoted` event's `recorded_at` (looked up afterwards);
//! `announced` splits it: commit → the notice stored in `<NS>_NOTIFY` (server clock). (a) and
//! (b) count the `policy.create` commands only.
//!
//! Limit, same run: raw JetStream publish → the same kind of consumer at the same rate, on the
//! scratch stream `<NS>_BENCH_RAW`, with a body as large as an event's, awaiting each PubAck.

mod promotions;
pub(crate) mod send;

use std::time::Duration;

use async_nats::jetstream;
use futures::future::BoxFuture;
use gatehouse_events::metadata::{HEADER_AGGREGATE_ID, HEADER_RECORDED_AT};
use gatehouse_events::subjects;

use super::figures::{Spec, Target};
use super::machine::CpuSample;
use super::observe::{collect, Headers, ReadModelPoller, Seen, StreamWatcher};
use super::stats::Latencies;
use super::Bench;
use gatehouse::broker;
use gatehouse::client::Client;
use promotions::{Ready, Subscriber};
use send::Sent;

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
    Spec::plain("subscriber.max_ms", "ms", "(c) max"),
    Spec::plain(
        "announced.p50_ms",
        "ms",
        "commit → notice stored in <NS>_NOTIFY (server clock), p50",
    ),
    Spec::plain(
        "announced.p99_ms",
        "ms",
        "commit → notice stored in <NS>_NOTIFY (server clock), p99",
    ),
    Spec::plain(
        "promotions",
        "count",
        "promotions per repetition ((c) samples)",
    ),
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
    Spec::plain(
        "rate",
        "cmd/s",
        "commands (promotions included) sent per second (target: --rate)",
    ),
    Spec::plain("raw_js.rate", "msg/s", "raw messages published per second"),
    Spec::plain("command.p50_ms", "ms", "send → reply, p50"),
    Spec::plain("command.p99_ms", "ms", "send → reply, p99"),
    Spec::plain("errors", "count", "commands or raw publishes that failed"),
    Spec::plain(
        "missing",
        "count",
        "accepted but not seen in the stream, read model or by the subscriber",
    ),
    Spec::plain(
        "busy_cores",
        "cores",
        "machine CPU busy while commands flowed",
    ),
    Spec::plain("other_cores", "cores", "CPU busy elsewhere (noise)"),
    Spec::plain(
        "steal_cores",
        "cores",
        "CPU taken by the hypervisor (noise)",
    ),
];

/// The figures of (c), unavailable when a repetition has no promotion slot.
const PROMOTION_FIGURES: [&str; 5] = [
    "subscriber.p99_ms",
    "subscriber.p50_ms",
    "subscriber.max_ms",
    "announced.p50_ms",
    "announced.p99_ms",
];
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
    let mut ready = set_up_promotions(b).await?.into_iter();
    let mut watch = Watch::start(b).await?;
    let client = b.system.client("bench-delivery").await?;
    let rate = b.params.rate;
    b.parameter("rate", rate);
    b.parameter(
        "read_model_poll_ms",
        super::observe::POLL.as_secs_f64() * 1e3,
    );
    b.parameter("subscriber_user", watch.subscriber.user);
    if !b.params.warmup.is_zero() {
        let warm = ready.next().unwrap_or_default();
        warm_up(b, &mut watch, &client, warm).await;
    }
    for rep in 0..b.params.reps {
        let ready = ready.next().unwrap_or_default();
        repetition(b, &mut watch, &client, rep, ready).await?;
    }
    if send::promotions(rate, b.params.duration) == 0 {
        let why = format!(
            "no promotion: one command slot in {} promotes, mid-period; raise --rate or --duration",
            send::PROMOTE_EVERY
        );
        for figure in PROMOTION_FIGURES {
            b.figures.unavailable(figure, &why)?;
        }
    }
    watch.stop();
    Ok(())
}

/// Unrecorded load at the full rate, promotions included; waits for its last sightings.
async fn warm_up(b: &Bench, w: &mut Watch, client: &Client, mut ready: Ready) {
    let (rate, duration) = (b.params.rate, b.params.warmup);
    let sent = send::commands_at_rate(client, &w.poller, "warm-", &mut ready, rate, duration).await;
    collect(&mut w.poller.seen, "warm-", sent.creates(), DRAIN).await;
    collect(
        &mut w.subscriber.seen,
        &ready.prefix,
        sent.promotions,
        DRAIN,
    )
    .await;
}

/// Starts the worker and the notifier, prepares the runs every phase promotes (warm-up first),
/// and waits until the system is idle again.
async fn set_up_promotions(b: &mut Bench) -> anyhow::Result<Vec<Ready>> {
    b.system.start_worker();
    b.system.start_notifier();
    let (rate, p) = (b.params.rate, &b.params);
    let mut phases = Vec::new();
    if !p.warmup.is_zero() {
        phases.push(("prwarm-".to_owned(), send::promotions(rate, p.warmup)));
    }
    let per_rep = send::promotions(rate, p.duration);
    phases.extend((0..p.reps).map(|rep| (format!("pr{rep}-"), per_rep)));
    let ready = promotions::prepare(&b.system, &phases).await?;
    b.system.settle(DRAIN).await?;
    b.parameter("promote_every", send::PROMOTE_EVERY);
    b.parameter("catalog_items", promotions::CATALOG_ITEMS);
    Ok(ready)
}

/// Everything that watches the system, started before the first command.
struct Watch {
    js: jetstream::Context,
    raw_stream: StreamWatcher,
    events: StreamWatcher,
    poller: ReadModelPoller,
    subscriber: Subscriber,
}

impl Watch {
    async fn start(b: &Bench) -> anyhow::Result<Watch> {
        let ns = &b.system.settings.namespace;
        let js = broker::jetstream(&b.system.nats);
        broker::ensure_events_stream(&js, &b.system.settings).await?;
        let events_headers = Headers {
            id: HEADER_AGGREGATE_ID,
            origin: HEADER_RECORDED_AT,
        };
        let events = StreamWatcher::start(
            &js,
            &subjects::events_stream(ns),
            &subjects::all_events(ns),
            events_headers,
        )
        .await?;
        let raw = send::scratch_stream(&js, ns).await?;
        let raw_filter = format!("{ns}.bench.raw.>");
        let raw_stream = StreamWatcher::start(&js, &raw, &raw_filter, RAW_HEADERS).await?;
        Ok(Watch {
            poller: ReadModelPoller::start(b.system.connect_db().await?),
            subscriber: Subscriber::bind(&b.system.settings, &b.system.nats).await?,
            js,
            raw_stream,
            events,
        })
    }

    fn stop(self) {
        self.events.stop();
        self.raw_stream.stop();
        self.poller.stop();
        self.subscriber.stop();
    }
}

/// What one repetition saw.
struct Observed {
    sent: Sent,
    stream: Vec<Seen>,
    read: Vec<Seen>,
    notices: Vec<Seen>,
    raw: Sent,
    raw_seen: Vec<Seen>,
}

async fn repetition(
    b: &mut Bench,
    w: &mut Watch,
    client: &Client,
    rep: usize,
    mut ready: Ready,
) -> anyhow::Result<()> {
    let (rate, d) = (b.params.rate, b.params.duration);
    let prefix = format!("dl{rep}-");
    let cpu = CpuSample::take();
    let sent = send::commands_at_rate(client, &w.poller, &prefix, &mut ready, rate, d).await;
    let stream = collect(&mut w.events.seen, &prefix, sent.creates(), DRAIN).await;
    let read = collect(&mut w.poller.seen, &prefix, sent.creates(), DRAIN).await;
    let notices = collect(
        &mut w.subscriber.seen,
        &ready.prefix,
        sent.promotions,
        DRAIN,
    )
    .await;
    let used = CpuSample::take().since(&cpu);
    b.figures.push_cpu("", &used, 1)?;
    let notices = promotions::committed(&b.system.db, notices).await?;
    b.system.settle(DRAIN).await?;
    let body = send::sample_body(&b.system.db).await?;
    let raw_prefix = format!("raw{rep}-");
    let ns = &b.system.settings.namespace;
    let raw = send::publish_at_rate(&w.js, ns, &raw_prefix, body, rate, d).await;
    let raw_seen = collect(&mut w.raw_stream.seen, &raw_prefix, raw.accepted, DRAIN).await;
    let observed = Observed {
        sent,
        stream,
        read,
        notices,
        raw,
        raw_seen,
    };
    record(b, &observed)?;
    let last = |figure: &str| *b.figures.values(figure).last().unwrap_or(&f64::NAN);
    eprintln!(
        "bench: delivery rep {}/{}: {:.0} cmd/s, p99: stream {:.1} ms, read model {:.1} ms, \
         subscriber {:.1} ms ({} promotions), raw {:.1} ms",
        rep + 1,
        b.params.reps,
        observed.sent.rate(),
        last("stream.p99_ms"),
        last("read_model.p99_ms"),
        last("subscriber.p99_ms"),
        observed.notices.len(),
        last("raw_js.p99_ms"),
    );
    Ok(())
}

fn record(b: &mut Bench, o: &Observed) -> anyhow::Result<()> {
    let of =
        |seen: &[Seen]| Latencies::of_ms(&seen.iter().map(Seen::latency_ms).collect::<Vec<_>>());
    let stored_of = |seen: &[Seen]| {
        Latencies::of_ms(&seen.iter().filter_map(Seen::stored_ms).collect::<Vec<_>>())
    };
    let figures: [(&str, Option<Latencies>); 7] = [
        ("stream", of(&o.stream)),
        ("stored", stored_of(&o.stream)),
        ("read_model", of(&o.read)),
        ("subscriber", of(&o.notices)),
        ("announced", stored_of(&o.notices)),
        ("raw_js", of(&o.raw_seen)),
        ("command", Latencies::of(&o.sent.latencies)),
    ];
    for (name, latencies) in figures {
        let Some(l) = latencies else { continue };
        for (stat, value) in [("p50_ms", l.p50), ("p99_ms", l.p99), ("max_ms", l.max)] {
            let figure = format!("{name}.{stat}");
            if b.figures.declares(&figure) {
                b.push(&figure, value)?;
            }
        }
    }
    let short = |want: usize, got: usize| want - got.min(want);
    let creates = o.sent.creates();
    let missing = short(creates, o.stream.len()).max(short(creates, o.read.len()))
        + short(o.sent.promotions, o.notices.len())
        + short(o.raw.accepted, o.raw_seen.len());
    b.push("promotions", o.sent.promotions as f64)?;
    b.push("rate", o.sent.rate())?;
    b.push("raw_js.rate", o.raw.rate())?;
    b.push("errors", (o.sent.errors + o.raw.errors) as f64)?;
    b.push("missing", missing as f64)
}
