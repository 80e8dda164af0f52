//! Step 2 of a rebuild: applying ranges of `events`, in `global_position` order and in pages
//! (keyset: `WHERE global_position > $last ... LIMIT $batch`), to the shadow tables with the
//! model's own `copy_page` (a page in one SQL statement, nothing leaving Postgres) or, when it
//! has none, its `apply` event by event.

use deadpool_postgres::ClientWrapper;
use gatehouse_events::record::EventRecord;
use tokio_postgres::Row;

use super::settled_high_water;
use crate::error::ProjectorError;
use crate::model::{ApplyError, ReadModel, Tables};

/// Copy passes before the swap, at most: under a heavy write load the tail never gets short.
const MAX_COPY_PASSES: usize = 5;

#[derive(Debug, Default)]
pub(super) struct Tally {
    pub applied: u64,
    pub skipped: u64,
    pub pages: u64,
}

/// Applies ranges of the event store to the shadow tables.
pub(super) struct Copy<'a> {
    pub model: &'a dyn ReadModel,
    pub tables: &'a Tables,
    pub batch: usize,
    pub tally: Tally,
}

impl Copy<'_> {
    /// Step 2: copies up to a settled high-water mark, again and again while the tail behind
    /// it is at least a page long; returns the last mark.
    pub(super) async fn until_short_tail(
        &mut self,
        client: &mut ClientWrapper,
    ) -> Result<i64, ProjectorError> {
        let mut high_water = 0;
        for _ in 0..MAX_COPY_PASSES {
            let mark = settled_high_water(client).await?;
            let copied = self.range(client, high_water, mark).await?;
            high_water = mark;
            if copied < self.batch as u64 {
                break;
            }
        }
        Ok(high_water)
    }

    /// Applies the model's events in `(after, up_to]`, one transaction per page; returns how
    /// many it applied.
    async fn range(
        &mut self,
        client: &mut ClientWrapper,
        after: i64,
        up_to: i64,
    ) -> Result<u64, ProjectorError> {
        let before = self.tally.applied;
        let mut last = after;
        loop {
            let tx = client.transaction().await?;
            let read = self.page(&tx, &mut last, Some(up_to)).await?;
            tx.commit().await?;
            if read < self.batch {
                return Ok(self.tally.applied - before);
            }
        }
    }

    /// Applies every event of the model after `after`, inside `tx`; returns how many it applied.
    pub(super) async fn rest(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        after: i64,
    ) -> Result<u64, ProjectorError> {
        let before = self.tally.applied;
        let mut last = after;
        while self.page(tx, &mut last, None).await? == self.batch {}
        Ok(self.tally.applied - before)
    }

    /// Applies the next page after `last` (up to `up_to`) and moves `last`; returns its size.
    async fn page(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        last: &mut i64,
        up_to: Option<i64>,
    ) -> Result<usize, ProjectorError> {
        let copied = self
            .model
            .copy_page(tx, self.tables, *last, up_to, self.limit())
            .await;
        match copied {
            Some(Ok((count, position))) => {
                *last = position;
                self.tally.applied += count as u64;
                self.tally.pages += 1;
                return Ok(count);
            }
            Some(Err(source)) => {
                return Err(ProjectorError::Apply {
                    position: *last + 1,
                    source,
                })
            }
            None => {}
        }
        let rows = tx
            .query(
                PAGE,
                &[&*last, &up_to, &self.aggregate_types(), &self.limit()],
            )
            .await?;
        for row in &rows {
            let event = event_record(row)?;
            *last = event.position;
            self.apply(tx, &event).await?;
        }
        self.tally.pages += 1;
        Ok(rows.len())
    }

    async fn apply(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        event: &EventRecord,
    ) -> Result<(), ProjectorError> {
        match self.model.apply(tx, self.tables, event).await {
            Ok(()) => self.tally.applied += 1,
            Err(source @ ApplyError::Store(_)) => {
                return Err(ProjectorError::Apply {
                    position: event.position,
                    source,
                });
            }
            Err(e) => {
                tracing::warn!(error.message = %e, error.cause_chain = ?e, position = event.position,
                    "skipping an event the model refuses (the live projector dead-letters it)");
                self.tally.skipped += 1;
            }
        }
        Ok(())
    }

    fn aggregate_types(&self) -> Option<Vec<&'static str>> {
        self.model.interest().aggregate_types().map(<[_]>::to_vec)
    }

    fn limit(&self) -> i64 {
        i64::try_from(self.batch).unwrap_or(i64::MAX)
    }
}

const PAGE: &str = "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type,
        event_version, recorded_at, payload, metadata
    FROM events
    WHERE global_position > $1
      AND ($2::bigint IS NULL OR global_position <= $2)
      AND ($3::text[] IS NULL OR aggregate_type = ANY($3))
    ORDER BY global_position
    LIMIT $4";

fn event_record(row: &Row) -> Result<EventRecord, tokio_postgres::Error> {
    Ok(EventRecord {
        position: row.try_get("global_position")?,
        aggregate: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        recorded_at: row.try_get("recorded_at")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
    })
}
