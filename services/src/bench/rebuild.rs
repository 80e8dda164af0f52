//! Scenario `rebuild`: rebuild the audit read model from `--events` stored events (default
//! 1,000,000) with `gatehouse_projections::rebuild`, beside its limit: a binary COPY of the
//! same audit rows into a fresh, identically indexed table (`LIKE audit_log INCLUDING ALL`).
//!
//! The events are generated into `events` once, by binary COPY, with the table's user triggers
//! disabled meanwhile (the outbox trigger fires per row; this scenario measures the rebuild,
//! not the relay) — 100 drafted versions per policy, each event with a realistic rules payload.
//! No role runs: the rebuild reads Postgres only.

use std::error::Error;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use futures::future::BoxFuture;
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use super::figures::{Spec, Target};
use super::machine::CpuSample;
use super::{workload, Bench};
use crate::db;

/// Every figure of the scenario.
pub const SPECS: &[Spec] = &[
    Spec::plain(
        "rebuild.rate",
        "events/s",
        "audit rebuilt from the event store",
    )
    .versus("copy.rate")
    .target(Target::RatioAtLeast { ratio: 0.5 }),
    Spec::plain(
        "copy.rate",
        "rows/s",
        "limit: binary COPY of the same audit rows",
    ),
    Spec::plain(
        "rebuild.seconds",
        "s",
        "whole rebuild, shadow table to swap",
    ),
    Spec::plain("rebuild.swap_ms", "ms", "live table locked for the swap"),
    Spec::plain("copy.seconds", "s", "COPY and COMMIT"),
    Spec::plain(
        "rebuild.cpu_us_gatehouse",
        "µs/event",
        "CPU of this process",
    ),
    Spec::plain("rebuild.cpu_us_postgres", "µs/event", "CPU of Postgres"),
    Spec::plain("rebuild.busy_cores", "cores", "machine CPU busy"),
    Spec::plain("copy.cpu_us_gatehouse", "µs/row", "CPU of this process"),
    Spec::plain("copy.cpu_us_postgres", "µs/row", "CPU of Postgres"),
    Spec::plain("copy.busy_cores", "cores", "machine CPU busy"),
    Spec::plain(
        "load.rate",
        "events/s",
        "generating the events (binary COPY, once)",
    ),
];

/// Events per generated policy.
const PER_POLICY: u64 = 100;

/// Runs the scenario (the registry's entry point).
pub fn run(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(rebuild(bench))
}

async fn rebuild(b: &mut Bench) -> anyhow::Result<()> {
    let events = b.params.events;
    let generator = Generator::new()?;
    b.parameter("events", events);
    b.parameter("batch", b.params.batch);
    b.parameter("payload_bytes", generator.payloads[0].len());
    let started = Instant::now();
    load_events(&b.system.db, &generator, events).await?;
    b.push("load.rate", events as f64 / started.elapsed().as_secs_f64())?;
    b.system.db.batch_execute("VACUUM ANALYZE events").await?;
    let model = gatehouse_projections::read_model("audit")
        .ok_or_else(|| anyhow::anyhow!("no audit read model"))?;
    let pool = db::pool(&b.system.settings.database_url, 2)?;
    for rep in 0..b.params.reps {
        let cpu = CpuSample::take();
        let report = gatehouse_projections::rebuild(model.as_ref(), &pool, b.params.batch).await?;
        let used = CpuSample::take().since(&cpu);
        let applied = report.copied + report.caught_up;
        anyhow::ensure!(
            applied == events,
            "the rebuild applied {applied} events, not {events}"
        );
        let seconds = report.total_time.as_secs_f64();
        let [gatehouse, postgres, _] = used.per_op_us(applied);
        b.push("rebuild.rate", applied as f64 / seconds)?;
        b.push("rebuild.seconds", seconds)?;
        b.push("rebuild.swap_ms", report.swap_time.as_secs_f64() * 1e3)?;
        b.push("rebuild.cpu_us_gatehouse", gatehouse)?;
        b.push("rebuild.cpu_us_postgres", postgres)?;
        b.push("rebuild.busy_cores", used.machine)?;

        let cpu = CpuSample::take();
        let copy = copy_audit_rows(&mut b.system.db, &generator, events).await?;
        let used = CpuSample::take().since(&cpu);
        let [gatehouse, postgres, _] = used.per_op_us(events);
        b.push("copy.rate", events as f64 / copy.as_secs_f64())?;
        b.push("copy.seconds", copy.as_secs_f64())?;
        b.push("copy.cpu_us_gatehouse", gatehouse)?;
        b.push("copy.cpu_us_postgres", postgres)?;
        b.push("copy.busy_cores", used.machine)?;
        eprintln!(
            "bench: rebuild rep {}/{}: rebuild {:.0} events/s, COPY {:.0} rows/s",
            rep + 1,
            b.params.reps,
            applied as f64 / seconds,
            events as f64 / copy.as_secs_f64()
        );
    }
    Ok(())
}

/// Event `i` (from 0): its policy, sequence, payload (one per sequence) and metadata.
struct Generator {
    payloads: Vec<String>,
    epoch: chrono::DateTime<chrono::Utc>,
}

struct Event<'a> {
    aggregate_id: String,
    sequence: i64,
    payload: &'a str,
    metadata: String,
    command_id: String,
    recorded_at: chrono::DateTime<chrono::Utc>,
}

impl Generator {
    fn new() -> anyhow::Result<Generator> {
        let epoch = chrono::Utc::now() - chrono::TimeDelta::days(30);
        let payloads = (1..=PER_POLICY)
            .map(|version| {
                let draft = workload::draft("p", version)?;
                let payload = serde_json::json!({"PolicyVersionDrafted": {
                    "version": version, "rules": draft.rules, "notes": draft.notes,
                    "author": workload::ACTOR, "rules_hash": format!("{:064x}", version),
                    "drafted_at": epoch,
                }});
                Ok(serde_json::to_string(&payload)?)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Generator { payloads, epoch })
    }

    fn event(&self, i: u64) -> Event<'_> {
        let sequence = i % PER_POLICY + 1;
        let command_id = format!("rebuild-{i}");
        let metadata = format!(
            r#"{{"actor":"{actor}","command_id":"{command_id}","correlation_id":"{command_id}","causation_id":"{command_id}","command_type":"policy.draft","request_hash":"{i:064x}"}}"#,
            actor = workload::ACTOR
        );
        Event {
            aggregate_id: format!("p{:07}", i / PER_POLICY),
            sequence: sequence as i64,
            payload: &self.payloads[(sequence - 1) as usize],
            metadata,
            command_id,
            recorded_at: self.epoch + chrono::TimeDelta::milliseconds(i as i64),
        }
    }
}

/// COPYs `count` generated events into `events`, its user triggers disabled meanwhile.
async fn load_events(
    db: &tokio_postgres::Client,
    generator: &Generator,
    count: u64,
) -> anyhow::Result<()> {
    db.batch_execute("ALTER TABLE events DISABLE TRIGGER USER")
        .await?;
    let copied = async {
        let sink = db
            .copy_in(
                "COPY events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                 payload, metadata, recorded_at) FROM STDIN BINARY",
            )
            .await?;
        let types = [
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::JSONB,
            Type::JSONB,
            Type::TIMESTAMPTZ,
        ];
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        for i in 0..count {
            let e = generator.event(i);
            writer
                .as_mut()
                .write(&[
                    &"policy",
                    &e.aggregate_id,
                    &e.sequence,
                    &"PolicyVersionDrafted",
                    &"1.0",
                    &Jsonb(e.payload),
                    &Jsonb(&e.metadata),
                    &e.recorded_at,
                ])
                .await?;
        }
        writer.finish().await?;
        anyhow::Ok(())
    }
    .await;
    db.batch_execute("ALTER TABLE events ENABLE TRIGGER USER")
        .await?;
    copied
}

/// The limit: COPYs the audit rows of `count` generated events into a fresh copy of
/// `audit_log`, in one transaction; returns how long the COPY and COMMIT took.
async fn copy_audit_rows(
    db: &mut tokio_postgres::Client,
    generator: &Generator,
    count: u64,
) -> anyhow::Result<Duration> {
    db.batch_execute(
        "DROP TABLE IF EXISTS bench_audit_copy;
         CREATE TABLE bench_audit_copy (LIKE audit_log INCLUDING ALL)",
    )
    .await?;
    let started = Instant::now();
    let tx = db.transaction().await?;
    let sink = tx
        .copy_in(
            "COPY bench_audit_copy (position, recorded_at, actor, aggregate_type, aggregate_id, \
             sequence, event_type, event_version, command_id, correlation_id, causation_id, \
             payload, metadata) FROM STDIN BINARY",
        )
        .await?;
    let types = [
        Type::INT8,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::JSONB,
        Type::JSONB,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for i in 0..count {
        let e = generator.event(i);
        let position = i as i64 + 1;
        writer
            .as_mut()
            .write(&[
                &position,
                &e.recorded_at,
                &workload::ACTOR,
                &"policy",
                &e.aggregate_id,
                &e.sequence,
                &"PolicyVersionDrafted",
                &"1.0",
                &e.command_id,
                &e.command_id,
                &e.command_id,
                &Jsonb(e.payload),
                &Jsonb(&e.metadata),
            ])
            .await?;
    }
    writer.finish().await?;
    tx.commit().await?;
    Ok(started.elapsed())
}

/// JSON text sent as `jsonb` as is (binary format: version byte 1, then the text).
#[derive(Debug)]
struct Jsonb<'a>(&'a str);

impl ToSql for Jsonb<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}
