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

    /// One `INSERT ... SELECT` per page, from `events` to the audit table: the metadata fields
    /// are lifted as [`EventRecord::meta`] does (a string, else empty).
    async fn copy_page(
        &self,
        tx: &Transaction<'_>,
        tables: &Tables,
        after: i64,
        up_to: Option<i64>,
        limit: i64,
    ) -> Option<Result<(usize, i64), ApplyError>> {
        let meta = |key: &str| {
            format!(
                "CASE jsonb_typeof(metadata -> '{key}') WHEN 'string' \
                 THEN metadata ->> '{key}' ELSE '' END"
            )
        };
        let sql = format!(
            "WITH page AS (
                 SELECT * FROM events
                  WHERE global_position > $1 AND ($2::bigint IS NULL OR global_position <= $2)
                  ORDER BY global_position LIMIT $3),
             written AS (
                 INSERT INTO {table} (position, recorded_at, actor, aggregate_type, aggregate_id,
                     sequence, event_type, event_version, command_id, correlation_id,
                     causation_id, payload, metadata)
                 SELECT global_position, recorded_at, {actor}, aggregate_type, aggregate_id,
                        sequence, event_type, event_version, {command}, {correlation},
                        {causation}, payload, metadata
                   FROM page ORDER BY global_position
                 ON CONFLICT (position) DO NOTHING)
             SELECT count(*), coalesce(max(global_position), $1) FROM page",
            table = tables.name("audit_log"),
            actor = meta(metadata::ACTOR),
            command = meta(metadata::COMMAND_ID),
            correlation = meta(metadata::CORRELATION_ID),
            causation = meta(metadata::CAUSATION_ID),
        );
        let copied = tx.query_one(&sql, &[&after, &up_to, &limit]).await;
        Some(
            copied
                .map(|row| (row.get::<_, i64>(0) as usize, row.get(1)))
                .map_err(ApplyError::from),
        )
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
