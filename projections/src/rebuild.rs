//! Rebuilding a read model from the event store: fill fresh `<table>_rebuild` shadows of the
//! model's tables from `events` (not from JetStream: the event store is the source of truth),
//! then swap them in for the live tables in one transaction.
//!
//! 1. Create the shadows (`LIKE <table> INCLUDING ALL`).
//! 2. Copy: read the high-water mark `H = max(global_position)`, wait until every transaction
//!    that could still commit an event at or below `H` has ended (positions are taken at INSERT,
//!    not at COMMIT), and apply `events` in `(last, H]` page by page (keyset, one transaction per
//!    page) with the model's own `apply`. Repeat with a new `H` while the tail is still long.
//! 3. Swap, in one transaction: lock the live tables (ACCESS EXCLUSIVE: the live projector
//!    waits), apply every event above `H` (the guards make events the pages already had
//!    harmless), rename live → `<table>_old` and shadow → live, drop the old tables, and give
//!    the new tables' indexes the old names.
//!
//! An event the model refuses as poison (or as a gap behind one) is skipped: the live
//! projector dead-letters it too, so both end up holding the same rows. The live projector
//! keeps its checkpoint: what it delivers after the swap is already in, and its guards skip it.
//! A session advisory lock lets one rebuild of a model run at a time.

use std::time::{Duration, Instant};

use deadpool_postgres::{ClientWrapper, Object, Pool};

use crate::error::ProjectorError;
use crate::model::{ReadModel, Tables};

mod copy;
mod swap;

use copy::{Copy, Tally};
use swap::swap_tables;

/// How long to wait for transactions that may still commit events below the high-water mark.
const WRITERS_DEADLINE: Duration = Duration::from_secs(60);

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// The rebuilt model's name.
    pub model: &'static str,
    /// The last high-water mark copied before the swap.
    pub high_water: i64,
    /// Events applied to the shadows before the swap.
    pub copied: u64,
    /// Events applied during the swap (above the high-water mark).
    pub caught_up: u64,
    /// Events the model refused (the live projector dead-letters them).
    pub skipped: u64,
    /// Pages read before the swap.
    pub pages: u64,
    /// From the start to the swap.
    pub copy_time: Duration,
    /// How long the live tables were locked.
    pub swap_time: Duration,
    /// From the start to the end of the swap.
    pub total_time: Duration,
}

impl std::fmt::Display for RebuildReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = (self.copied + self.caught_up) as f64 / self.total_time.as_secs_f64().max(1e-9);
        write!(
            f,
            "rebuilt {}: {} events up to position {} in {:.2?} ({rate:.0} events/s), {} caught up during a \
             {:.2?} swap, {} skipped",
            self.model, self.copied, self.high_water, self.total_time, self.caught_up, self.swap_time, self.skipped
        )
    }
}

/// Rebuilds `model` from the event store, `batch` events per page, and swaps it in.
pub async fn rebuild(
    model: &dyn ReadModel,
    pool: &Pool,
    batch: usize,
) -> Result<RebuildReport, ProjectorError> {
    let started = Instant::now();
    let mut client = exclusive_client(pool, model).await?;
    let shadows = Tables::rebuild(model);
    create_shadows(&client, model, &shadows).await?;
    let mut copy = Copy {
        model,
        tables: &shadows,
        batch: batch.max(1),
        tally: Tally::default(),
    };
    let high_water = copy.until_short_tail(&mut client).await?;
    let (copied, pages, copy_time) = (copy.tally.applied, copy.tally.pages, started.elapsed());
    let swap_started = Instant::now();
    let caught_up = catch_up_and_swap(&mut client, &mut copy, high_water).await?;
    let report = RebuildReport {
        model: model.name(),
        high_water,
        copied,
        caught_up,
        skipped: copy.tally.skipped,
        pages,
        copy_time,
        swap_time: swap_started.elapsed(),
        total_time: started.elapsed(),
    };
    tracing::info!(?report, "read model rebuilt");
    Ok(report)
}

/// A connection of its own (taken out of the pool, so its session lock dies with it) holding
/// the model's rebuild lock.
async fn exclusive_client(
    pool: &Pool,
    model: &dyn ReadModel,
) -> Result<ClientWrapper, ProjectorError> {
    let client = Object::take(pool.get().await?);
    let key = format!("gatehouse.rebuild.{}", model.name());
    let row = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
            &[&key],
        )
        .await?;
    if !row.get::<_, bool>(0) {
        return Err(ProjectorError::RebuildRunning(model.name().to_owned()));
    }
    Ok(client)
}

async fn create_shadows(
    client: &ClientWrapper,
    model: &dyn ReadModel,
    shadows: &Tables,
) -> Result<(), ProjectorError> {
    let sql: String = model
        .tables()
        .iter()
        .map(|t| {
            let shadow = shadows.name(t);
            format!(
                "DROP TABLE IF EXISTS {shadow}; CREATE TABLE {shadow} (LIKE {t} INCLUDING ALL);"
            )
        })
        .collect();
    client
        .batch_execute(&format!("BEGIN; {sql} COMMIT;"))
        .await?;
    Ok(())
}

/// `max(global_position)`, once no transaction that could still commit an event at or below
/// it is running: each such writer got its transaction id before the mark was read.
async fn settled_high_water(client: &ClientWrapper) -> Result<i64, ProjectorError> {
    let row = client
        .query_one(
            "SELECT coalesce(max(global_position), 0),
                    pg_snapshot_xmax(pg_current_snapshot())::text
             FROM events",
            &[],
        )
        .await?;
    let (mark, xmax): (i64, String) = (row.get(0), row.get(1));
    let deadline = Instant::now() + WRITERS_DEADLINE;
    loop {
        let done: bool = client
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8",
                &[&xmax],
            )
            .await?
            .get(0);
        if done {
            return Ok(mark);
        }
        if Instant::now() >= deadline {
            return Err(ProjectorError::WritersInFlight(WRITERS_DEADLINE));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Step 3: locks the live tables, applies the events above `high_water`, swaps, commits.
async fn catch_up_and_swap(
    client: &mut ClientWrapper,
    copy: &mut Copy<'_>,
    high_water: i64,
) -> Result<u64, ProjectorError> {
    let tx = client.transaction().await?;
    lock_live_tables(&tx, copy.model).await?;
    let caught_up = copy.rest(&tx, high_water).await?;
    swap_tables(&tx, copy.model, copy.tables).await?;
    tx.commit().await?;
    Ok(caught_up)
}

async fn lock_live_tables(
    tx: &deadpool_postgres::Transaction<'_>,
    model: &dyn ReadModel,
) -> Result<(), ProjectorError> {
    let tables = model.tables().join(", ");
    tx.batch_execute(&format!("LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"))
        .await?;
    Ok(())
}
