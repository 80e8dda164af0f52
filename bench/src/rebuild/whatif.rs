//! What a rebuild could do: the same replay as `gatehouse_projections::rebuild` (keyset pages
//! of `events` in `global_position` order, one transaction per page, payload and metadata
//! decoded to JSON, the actor and ids lifted out of the metadata, `ON CONFLICT (position) DO
//! NOTHING`) into a fresh copy of `audit_log`, written two other ways:
//! - [`Write::PerRowPrepared`]: one INSERT per event like the rebuild, but prepared once
//!   (the rebuild's `execute(&str)` prepares its statement again for every event);
//! - [`Write::Unnest`]: one INSERT per page from `unnest` of column arrays.
//!
//! Their rates, beside the rebuild's, show where its time goes and what batching would gain.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gatehouse_events::metadata::{ACTOR, CAUSATION_ID, COMMAND_ID, CORRELATION_ID};
use serde_json::Value;
use tokio_postgres::{Row, Statement, Transaction};

/// How the audit rows are written.
#[derive(Debug, Clone, Copy)]
pub enum Write {
    PerRowPrepared,
    Unnest,
}

const PAGE: &str = "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type,
        event_version, recorded_at, payload, metadata
    FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2";

const COLUMNS: &str = "position, recorded_at, actor, aggregate_type, aggregate_id, sequence, \
     event_type, event_version, command_id, correlation_id, causation_id, payload, metadata";

/// Replays the first `events` events into `bench_audit_whatif`; returns how long it took.
pub async fn replay(
    db: &mut tokio_postgres::Client,
    events: u64,
    batch: usize,
    write: Write,
) -> anyhow::Result<Duration> {
    db.batch_execute(
        "DROP TABLE IF EXISTS bench_audit_whatif;
         CREATE TABLE bench_audit_whatif (LIKE audit_log INCLUDING ALL)",
    )
    .await?;
    let started = Instant::now();
    let page = db.prepare(PAGE).await?;
    let insert = db.prepare(&insert_sql(write)).await?;
    let (mut last, mut done) = (0_i64, 0_u64);
    while done < events {
        let limit = i64::try_from(batch.min((events - done) as usize))?;
        let tx = db.transaction().await?;
        let rows = tx.query(&page, &[&last, &limit]).await?;
        let audit: Vec<Audit> = rows.iter().map(Audit::of).collect::<Result<_, _>>()?;
        match write {
            Write::PerRowPrepared => per_row(&tx, &insert, &audit).await?,
            Write::Unnest => unnest(&tx, &insert, &audit).await?,
        }
        tx.commit().await?;
        let Some(tail) = audit.last() else { break };
        last = tail.position;
        done += audit.len() as u64;
    }
    Ok(started.elapsed())
}

fn insert_sql(write: Write) -> String {
    match write {
        Write::PerRowPrepared => format!(
            "INSERT INTO bench_audit_whatif ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (position) DO NOTHING"
        ),
        Write::Unnest => format!(
            "INSERT INTO bench_audit_whatif ({COLUMNS}) SELECT * FROM unnest($1::int8[], \
             $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[], \
             $8::text[], $9::text[], $10::text[], $11::text[], $12::jsonb[], $13::jsonb[]) \
             ON CONFLICT (position) DO NOTHING"
        ),
    }
}

/// One audit row, decoded from an `events` row as the audit model does.
struct Audit {
    position: i64,
    recorded_at: DateTime<Utc>,
    aggregate: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
}

impl Audit {
    fn of(row: &Row) -> Result<Audit, tokio_postgres::Error> {
        Ok(Audit {
            position: row.try_get(0)?,
            aggregate: row.try_get(1)?,
            aggregate_id: row.try_get(2)?,
            sequence: row.try_get(3)?,
            event_type: row.try_get(4)?,
            event_version: row.try_get(5)?,
            recorded_at: row.try_get(6)?,
            payload: row.try_get(7)?,
            metadata: row.try_get(8)?,
        })
    }

    fn meta(&self, key: &str) -> String {
        self.metadata
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    }
}

async fn per_row(tx: &Transaction<'_>, insert: &Statement, rows: &[Audit]) -> anyhow::Result<()> {
    for a in rows {
        let (actor, command) = (a.meta(ACTOR), a.meta(COMMAND_ID));
        let (correlation, causation) = (a.meta(CORRELATION_ID), a.meta(CAUSATION_ID));
        tx.execute(
            insert,
            &[
                &a.position,
                &a.recorded_at,
                &actor,
                &a.aggregate,
                &a.aggregate_id,
                &a.sequence,
                &a.event_type,
                &a.event_version,
                &command,
                &correlation,
                &causation,
                &a.payload,
                &a.metadata,
            ],
        )
        .await?;
    }
    Ok(())
}

async fn unnest(tx: &Transaction<'_>, insert: &Statement, rows: &[Audit]) -> anyhow::Result<()> {
    let column = |f: &dyn Fn(&Audit) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let positions: Vec<i64> = rows.iter().map(|a| a.position).collect();
    let recorded: Vec<DateTime<Utc>> = rows.iter().map(|a| a.recorded_at).collect();
    let sequences: Vec<i64> = rows.iter().map(|a| a.sequence).collect();
    let payloads: Vec<&Value> = rows.iter().map(|a| &a.payload).collect();
    let metadata: Vec<&Value> = rows.iter().map(|a| &a.metadata).collect();
    tx.execute(
        insert,
        &[
            &positions,
            &recorded,
            &column(&|a| a.meta(ACTOR)),
            &column(&|a| a.aggregate.clone()),
            &column(&|a| a.aggregate_id.clone()),
            &sequences,
            &column(&|a| a.event_type.clone()),
            &column(&|a| a.event_version.clone()),
            &column(&|a| a.meta(COMMAND_ID)),
            &column(&|a| a.meta(CORRELATION_ID)),
            &column(&|a| a.meta(CAUSATION_ID)),
            &payloads,
            &metadata,
        ],
    )
    .await?;
    Ok(())
}
