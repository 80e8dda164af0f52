//! The grants in force, as the role check and `access.roles` read them: the `access`
//! aggregate's state folded from the event store itself, not from a read model.
//!
//! Each gateway keeps the folded state with the last sequence it applied. Before it answers a
//! user's request it reads the events stored after that sequence (an index lookup that
//! usually returns no row) and applies them, so a grant or a revocation committed by any
//! gateway holds for the very next request at every gateway: there is no projection lag to
//! wait out, and nothing to rebuild.

use std::sync::{Arc, RwLock};

use deadpool_postgres::Pool;
use gatehouse_events::access::{AccessEvent, AGGREGATE, GRANTS};
use gatehouse_events::envelope::Rejection;

use super::Access;
use crate::api::read::{self, column};
use cqrs_es::Aggregate as _;

/// The access state folded up to `sequence`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub access: Access,
    pub sequence: i64,
}

/// The grants in force at this process, brought up to date by [`Current::now`].
#[derive(Debug, Default)]
pub struct Current {
    snapshot: RwLock<Arc<Snapshot>>,
}

impl Current {
    /// The grants as stored now: the kept state plus the events stored since.
    pub async fn now(&self, pg: &Pool) -> Result<Arc<Snapshot>, Rejection> {
        let known = self.kept().sequence;
        let client = pg
            .get()
            .await
            .map_err(|e| read::unavailable(e.to_string()))?;
        // Prepared once per pooled connection: this runs before every user request.
        let statement = client
            .prepare_cached(
                "SELECT sequence, payload FROM events \
                  WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
                  ORDER BY sequence",
            )
            .await
            .map_err(read::database)?;
        let rows = client
            .query(&statement, &[&AGGREGATE, &GRANTS, &known])
            .await
            .map_err(read::database)?;
        drop(client);
        if rows.is_empty() {
            return Ok(self.kept());
        }
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let sequence: i64 = column(row, "sequence")?;
            let payload: serde_json::Value = column(row, "payload")?;
            let event: AccessEvent = serde_json::from_value(payload).map_err(|e| {
                read::internal(format!("access event {sequence} does not read: {e}"))
            })?;
            events.push((sequence, event));
        }
        let mut kept = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        // Another request may have applied some of them meanwhile.
        let mut next = Snapshot::clone(&kept);
        for (sequence, event) in events {
            if sequence > next.sequence {
                next.access.apply(event);
                next.sequence = sequence;
            }
        }
        *kept = Arc::new(next);
        Ok(kept.clone())
    }

    fn kept(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
