//! The `audit` read model: one `audit_log` row per stored event of every aggregate, keyed by
//! its global position, with the actor and the command, correlation and causation ids lifted
//! out of its metadata.
//!
//! Reads `<ns>.events.>`. Writes `audit_log`. It records every event type, known or not, so it
//! never dead-letters an event; `ON CONFLICT (position) DO NOTHING` makes a replay harmless.

use async_trait::async_trait;
use gatehouse_events::metadata;
use gatehouse_events::record::EventRecord;
use tokio_postgres::Transaction;

use crate::model::{ApplyError, Interest, ReadModel, Tables};

/// The audit trail read model.
#[derive(Debug, Default, Clone, Copy)]
pub struct AuditLog;

impl AuditLog {
    /// The model's name (checkpoint row, consumer, CLI).
    pub const NAME: &'static str = "audit";
}

#[async_trait]
impl ReadModel for AuditLog {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_log"]
    }

    fn interest(&self) -> Interest {
        Interest::All
    }

    /// One `INSERT ... SELECT FROM unnest(...)` per page: a rebuild writes pages, not rows.
    async fn apply_page(
        &self,
        tx: &Transaction<'_>,
        tables: &Tables,
        events: &[EventRecord],
    ) -> Option<Result<(), ApplyError>> {
        let sql = format!(
            "INSERT INTO {} (position, recorded_at, actor, aggregate_type, aggregate_id, sequence,
                 event_type, event_version, command_id, correlation_id, causation_id, payload,
                 metadata)
             SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[],
                 $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[],
                 $11::text[], $12::jsonb[], $13::jsonb[])
             ON CONFLICT (position) DO NOTHING",
            tables.name("audit_log")
        );
        let column = |f: fn(&EventRecord) -> &str| -> Vec<&str> { events.iter().map(f).collect() };
        let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
        let times: Vec<_> = events.iter().map(|e| e.recorded_at).collect();
        let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
        let payloads: Vec<&serde_json::Value> = events.iter().map(|e| &e.payload).collect();
        let metadata: Vec<&serde_json::Value> = events.iter().map(|e| &e.metadata).collect();
        let written = tx
            .execute(
                &sql,
                &[
                    &positions,
                    &times,
                    &column(|e| e.meta(metadata::ACTOR)),
                    &column(|e| &e.aggregate),
                    &column(|e| &e.aggregate_id),
                    &sequences,
                    &column(|e| &e.event_type),
                    &column(|e| &e.event_version),
                    &column(|e| e.meta(metadata::COMMAND_ID)),
                    &column(|e| e.meta(metadata::CORRELATION_ID)),
                    &column(|e| e.meta(metadata::CAUSATION_ID)),
                    &payloads,
                    &metadata,
                ],
            )
            .await;
        Some(written.map(drop).map_err(ApplyError::from))
    }

    async fn apply(
        &self,
        tx: &Transaction<'_>,
        tables: &Tables,
        event: &EventRecord,
    ) -> Result<(), ApplyError> {
        let sql = format!(
            "INSERT INTO {} (position, recorded_at, actor, aggregate_type, aggregate_id, sequence,
                 event_type, event_version, command_id, correlation_id, causation_id, payload,
                 metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (position) DO NOTHING",
            tables.name("audit_log")
        );
        tx.execute(
            &sql,
            &[
                &event.position,
                &event.recorded_at,
                &event.meta(metadata::ACTOR),
                &event.aggregate,
                &event.aggregate_id,
                &event.sequence,
                &event.event_type,
                &event.event_version,
                &event.meta(metadata::COMMAND_ID),
                &event.meta(metadata::CORRELATION_ID),
                &event.meta(metadata::CAUSATION_ID),
                &event.payload,
                &event.metadata,
            ],
        )
        .await?;
        Ok(())
    }
}
