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
