//! The catalog reads and result writes of the workers.
//!
//! Results go through a binary COPY into a session temp table, then one
//! `INSERT ... ON CONFLICT (policy_id, version, item_id) DO UPDATE ... WHERE item_seq <=` into
//! `eval_results`: every row names its version (a run never touches another version's results)
//! and an older evaluation of an item never overwrites a newer one.
//!
//! A Prepare run's batch takes a shortcut first ([`insert_new`]): its items have no result of
//! the version yet unless the live evaluation or the sweep got there first, so its rows are
//! COPYed straight into `eval_results` under a savepoint; a unique violation rolls back to the
//! savepoint and the batch takes the guarded upsert. Both end in the same rows.

use std::collections::HashMap;
use std::error::Error;

use deadpool_postgres::GenericClient;
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Portal, Row, Transaction};

use super::evaluate::{Attributes, Candidate, ItemState, Verdict};

/// Results to write for one policy version.
pub struct Results<'a> {
    pub policy_id: &'a str,
    pub version: u32,
    /// The run whose snapshot the items belong to (`None`: live or sweep evaluation).
    pub run_id: Option<&'a str>,
    pub items: &'a [Candidate],
    pub verdicts: &'a [Verdict],
}

/// The items of snapshot batch `batch` (ordinals `[from, to)`), in ordinal order: one
/// candidate per snapshot entry (an item missing from the catalog is pending), so a batch
/// processes exactly its range. Entries outside `[from, to)` are left out, so a batch row that
/// does not hold its whole range yields fewer items.
pub(crate) async fn snapshot_items(
    db: &impl GenericClient,
    snapshot_id: &str,
    batch: u32,
    from: u64,
    to: u64,
) -> Result<Vec<Candidate>, tokio_postgres::Error> {
    let Some(row) = db
        .query_opt(
            "SELECT first_ordinal, item_ids FROM run_snapshot_batches
              WHERE snapshot_id = $1 AND batch = $2",
            &[&snapshot_id, &(batch as i32)],
        )
        .await?
    else {
        return Ok(Vec::new());
    };
    let first: i64 = row.get(0);
    let ids: Vec<String> = row.get(1);
    let at = |ordinal: u64| (ordinal as i64 - first).clamp(0, ids.len() as i64) as usize;
    let ids = &ids[at(from)..at(to).max(at(from))];
    let (Some(low), Some(high)) = (ids.first(), ids.last()) else {
        return Ok(Vec::new());
    };
    // A batch's ids are in id order (as the snapshot numbered them): one index range scan
    // reads them all, at a fraction of the cost of a probe per id. Items of the range outside
    // the snapshot come along and are left out here.
    let rows = db
        .query(
            &format!(
                "SELECT {CATALOG_COLUMNS} FROM catalog_items c
                  WHERE c.item_id BETWEEN $1 AND $2"
            ),
            &[low, high],
        )
        .await?;
    let mut by_id: HashMap<&str, &Row> = rows.iter().map(|row| (row.get(0), row)).collect();
    Ok(ids
        .iter()
        .map(|id| match by_id.remove(id.as_str()) {
            Some(row) => candidate(row),
            None => Candidate {
                item_id: id.clone(),
                item_seq: 0,
                state: ItemState::Pending("not in the catalog"),
            },
        })
        .collect())
}

/// The catalog columns [`candidate`] reads, from `catalog_items c`. Only the attributes of a
/// ready item are read: nothing else evaluates them (and turning `jsonb` into text is most of
/// the cost of reading an item).
const CATALOG_COLUMNS: &str = "c.item_id, c.status, c.deleted, \
     CASE WHEN c.status = 'ready' AND NOT c.deleted THEN c.attributes END, c.stream_seq";

/// Opens a portal over the catalog items without a current result for the version (none at
/// all, or one of an older catalog change); read it page by page with [`next_stale`]. One
/// anti-join over the whole catalog, fetched in pages, keeps memory bounded.
pub(crate) async fn open_stale(
    tx: &Transaction<'_>,
    policy_id: &str,
    version: u32,
) -> Result<Portal, tokio_postgres::Error> {
    let statement = tx
        .prepare(&format!(
            "SELECT {CATALOG_COLUMNS}
               FROM catalog_items c
               LEFT JOIN eval_results r
                 ON r.policy_id = $1 AND r.version = $2 AND r.item_id = c.item_id
              WHERE r.item_id IS NULL OR r.item_seq < c.stream_seq"
        ))
        .await?;
    tx.bind(&statement, &[&policy_id, &(version as i32)]).await
}

/// The next (at most) `page` items of [`open_stale`]'s portal; empty at the end.
pub(crate) async fn next_stale(
    tx: &Transaction<'_>,
    portal: &Portal,
    page: i32,
) -> Result<Vec<Candidate>, tokio_postgres::Error> {
    let rows = tx.query_portal(portal, page).await?;
    Ok(rows.iter().map(candidate).collect())
}

/// A catalog row ([`CATALOG_COLUMNS`]) as a candidate.
fn candidate(row: &Row) -> Candidate {
    let status: &str = row.get(1);
    let attributes: Option<RawJson> = row.get(3);
    let attributes = attributes.map_or_else(Vec::new, |json| json.0);
    Candidate {
        item_id: row.get(0),
        item_seq: row.get(4),
        state: ItemState::of(status, row.get(2), Attributes::Text(attributes)),
    }
}

/// Writes a Prepare run's batch of results in `tx`: straight in when the version has no result
/// for any of its items, else by [`upsert`]. `results.items` must be in item id order (a
/// snapshot range is), so concurrent writers take their row locks in the same order.
pub(crate) async fn insert_new(
    tx: &Transaction<'_>,
    results: Results<'_>,
) -> Result<u64, tokio_postgres::Error> {
    tx.batch_execute("SAVEPOINT direct_results").await?;
    match copy_into(tx, "eval_results", std::slice::from_ref(&results), true).await {
        Ok(written) => {
            tx.batch_execute("RELEASE SAVEPOINT direct_results").await?;
            Ok(written)
        }
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT direct_results")
                .await?;
            tracing::debug!("some items of the batch had results already: upserting");
            upsert(tx, &[results]).await
        }
        Err(e) => Err(e),
    }
}

/// Upserts `batches` of results in `tx`; returns the rows written (newer results are kept).
pub(crate) async fn upsert(
    tx: &Transaction<'_>,
    batches: &[Results<'_>],
) -> Result<u64, tokio_postgres::Error> {
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS worker_results (
             policy_id text, version integer, item_id text, outcome text, rule_id text,
             reason text, score double precision, item_seq bigint, run_id text
         ) ON COMMIT DELETE ROWS",
    )
    .await?;
    copy_into(tx, "worker_results", batches, false).await?;
    // Rows in key order, so concurrent writers lock them in the same order.
    tx.execute(
        "INSERT INTO eval_results AS r (policy_id, version, item_id, outcome, rule_id, reason,
                                        score, item_seq, run_id, evaluated_at)
         SELECT policy_id, version, item_id, outcome, rule_id, reason, score, item_seq, run_id, now()
           FROM worker_results ORDER BY policy_id, version, item_id
         ON CONFLICT (policy_id, version, item_id) DO UPDATE SET
             outcome = EXCLUDED.outcome, rule_id = EXCLUDED.rule_id, reason = EXCLUDED.reason,
             score = EXCLUDED.score, item_seq = EXCLUDED.item_seq, run_id = EXCLUDED.run_id,
             evaluated_at = EXCLUDED.evaluated_at
          WHERE r.item_seq <= EXCLUDED.item_seq",
        &[],
    )
    .await
}

/// Binary COPY of `batches` into `table`: `worker_results`, or, when `stamped`, a table shaped
/// like `eval_results` (itself, or the bench's twin of it) with `evaluated_at` the time of
/// this call.
pub async fn copy_into(
    tx: &Transaction<'_>,
    table: &str,
    batches: &[Results<'_>],
    stamped: bool,
) -> Result<u64, tokio_postgres::Error> {
    let evaluated_at = stamped.then(chrono::Utc::now);
    let sink = tx
        .copy_in(&format!(
            "COPY {table} (policy_id, version, item_id, outcome, rule_id, reason, score, item_seq,
                           run_id{}) FROM STDIN BINARY",
            if stamped { ", evaluated_at" } else { "" }
        ))
        .await?;
    let mut types = vec![
        Type::TEXT,
        Type::INT4,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::FLOAT8,
        Type::INT8,
        Type::TEXT,
    ];
    if stamped {
        types.push(Type::TIMESTAMPTZ);
    }
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for batch in batches {
        let version = batch.version as i32;
        for (item, verdict) in batch.items.iter().zip(batch.verdicts) {
            let row: [&(dyn ToSql + Sync); 10] = [
                &batch.policy_id,
                &version,
                &item.item_id,
                &verdict.outcome.as_str(),
                &verdict.rule_id.as_deref(),
                &&*verdict.reason,
                &verdict.score,
                &item.item_seq,
                &batch.run_id,
                &evaluated_at,
            ];
            let columns = if stamped { &row[..] } else { &row[..9] };
            writer.as_mut().write(columns).await?;
        }
    }
    writer.finish().await
}

/// A `json`/`jsonb` value as its JSON text, left for the evaluation threads to parse.
struct RawJson(Vec<u8>);

impl<'a> FromSql<'a> for RawJson {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let text = if *ty == Type::JSONB {
            // The binary jsonb format is a version byte (1) and the text.
            match raw.split_first() {
                Some((1, text)) => text,
                _ => return Err("unsupported jsonb format version".into()),
            }
        } else {
            raw
        };
        Ok(RawJson(text.to_vec()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }
}
