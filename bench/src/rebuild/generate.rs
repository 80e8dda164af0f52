//! The events the `rebuild` scenario stores and the audit rows its limit COPYs: event `i`
//! is version `i % 100 + 1` of policy `p<i / 100>`, drafted by `bench`, with a rules payload
//! like a real draft's. Both are written by binary COPY.

use std::time::{Duration, Instant};

use futures::pin_mut;
use gatehouse_projections::json_text::JsonText;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use crate::workload;

/// Events per generated policy.
const PER_POLICY: u64 = 100;

/// Event `i` (from 0): its policy, sequence, payload (one per sequence) and metadata.
pub struct Generator {
    pub payloads: Vec<String>,
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
    pub fn new() -> anyhow::Result<Generator> {
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
pub async fn load_events(
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
                    &JsonText(e.payload),
                    &JsonText(&e.metadata),
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
pub async fn copy_audit_rows(
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
                &JsonText(e.payload),
                &JsonText(&e.metadata),
            ])
            .await?;
    }
    writer.finish().await?;
    tx.commit().await?;
    Ok(started.elapsed())
}
