//! Writing one [`Plan`] inside the batch's transaction.
//!
//! Items the catalog does not hold yet (all of them on a first import) go by binary COPY
//! straight into `catalog_items`, the cheapest write Postgres has. Items it holds are updated
//! from arrays (`UPDATE ... FROM unnest(...)`) under the guard `stream_seq < the change's`, so
//! a redelivered or reordered change never undoes a newer one. Rejections go into
//! `catalog_rejections`. Telling the two kinds of item apart is safe because the projector is
//! the only writer of `catalog_items` and holds its checkpoint row lock for the whole
//! transaction; should anything else insert an item meanwhile, the COPY fails on the primary
//! key and the batch is retried message by message, which sees the row.

use std::collections::HashMap;

use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Transaction;

use super::decode::{Plan, Rejection, Row};
use crate::json_text::JsonText;

const EXISTING: &str =
    "SELECT item_id, stream_seq FROM catalog_items WHERE item_id = ANY($1::text[])";

/// The columns of a `catalog_items` row in a binary COPY, and their types (also for tools that
/// load a catalog or a twin of it directly).
pub const COPY_COLUMNS: &str = "item_id, status, deleted, attributes, updated_at, stream_seq";
pub const COPY_TYPES: [Type; 6] = [
    Type::TEXT,
    Type::TEXT,
    Type::BOOL,
    Type::JSONB,
    Type::TIMESTAMPTZ,
    Type::INT8,
];

/// A delete keeps the item's last status and attributes: the table's, unless the delete
/// carries those of an upsert of its batch newer than the table's last change (`content_seq`,
/// NULL for a delete carrying none). The plan holds one change per item.
const UPDATE: &str = "
    UPDATE catalog_items AS c SET
        status     = CASE WHEN u.content_seq > c.stream_seq THEN u.status ELSE c.status END,
        attributes = CASE WHEN u.content_seq > c.stream_seq THEN u.attributes ELSE c.attributes END,
        deleted    = u.deleted,
        updated_at = u.updated_at,
        stream_seq = u.stream_seq
    FROM unnest($1::text[], $2::text[], $3::bool[], $4::jsonb[], $5::timestamptz[], $6::bigint[],
                $7::bigint[])
        AS u (item_id, status, deleted, attributes, updated_at, stream_seq, content_seq)
    WHERE c.item_id = u.item_id AND c.stream_seq < u.stream_seq";

const REJECT: &str = "
    INSERT INTO catalog_rejections (stream_seq, subject, error, payload)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
    ON CONFLICT (stream_seq) DO NOTHING";

/// Writes `plan` in `tx`; returns how many items changed (older changes change nothing).
pub(crate) async fn write(tx: &Transaction<'_>, plan: &Plan) -> Result<u64, tokio_postgres::Error> {
    let mut changed = 0;
    if !plan.rows.is_empty() {
        let existing = existing(tx, &plan.rows).await?;
        let (known, new): (Vec<&Row>, Vec<&Row>) = plan
            .rows
            .iter()
            .partition(|row| existing.contains_key(&row.item_id));
        // A known item at or past the change already holds it (a redelivery).
        let newer: Vec<&Row> = known
            .into_iter()
            .filter(|row| {
                existing
                    .get(&row.item_id)
                    .is_some_and(|&seq| seq < row.stream_seq)
            })
            .collect();
        changed += copy(tx, &new).await?;
        changed += update(tx, &newer).await?;
    }
    if !plan.rejections.is_empty() {
        reject(tx, &plan.rejections).await?;
    }
    Ok(changed)
}

/// The stream sequence of every item of `rows` the catalog holds.
async fn existing(
    tx: &Transaction<'_>,
    rows: &[Row],
) -> Result<HashMap<String, i64>, tokio_postgres::Error> {
    let ids: Vec<&str> = rows.iter().map(|row| row.item_id.as_str()).collect();
    let found = tx.query(EXISTING, &[&ids]).await?;
    Ok(found.iter().map(|r| (r.get(0), r.get(1))).collect())
}

async fn copy(tx: &Transaction<'_>, rows: &[&Row]) -> Result<u64, tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let sink = tx
        .copy_in(&format!(
            "COPY catalog_items ({COPY_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    pin_mut!(writer);
    for row in rows {
        let attributes = JsonText(row.attributes.get());
        let values: [&(dyn ToSql + Sync); 6] = [
            &row.item_id,
            &row.status,
            &row.deleted,
            &attributes,
            &row.updated_at,
            &row.stream_seq,
        ];
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await
}

async fn update(tx: &Transaction<'_>, rows: &[&Row]) -> Result<u64, tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.item_id.as_str()).collect();
    let statuses: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    let deleted: Vec<bool> = rows.iter().map(|r| r.deleted).collect();
    let attributes: Vec<_> = rows.iter().map(|r| JsonText(r.attributes.get())).collect();
    let times: Vec<_> = rows.iter().map(|r| r.updated_at).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.stream_seq).collect();
    let content_seqs: Vec<Option<i64>> = rows.iter().map(|r| r.content_seq).collect();
    let params: [&(dyn ToSql + Sync); 7] = [
        &ids,
        &statuses,
        &deleted,
        &attributes,
        &times,
        &seqs,
        &content_seqs,
    ];
    tx.execute(UPDATE, &params).await
}

async fn reject(
    tx: &Transaction<'_>,
    rejections: &[Rejection],
) -> Result<(), tokio_postgres::Error> {
    let seqs: Vec<i64> = rejections.iter().map(|r| r.stream_seq).collect();
    let subjects: Vec<&str> = rejections.iter().map(|r| r.subject.as_str()).collect();
    let errors: Vec<&str> = rejections.iter().map(|r| r.error.as_str()).collect();
    let payloads: Vec<&str> = rejections.iter().map(|r| r.payload.as_str()).collect();
    for r in rejections {
        tracing::warn!(stream_seq = r.stream_seq, subject = %r.subject, error = %r.error,
            "catalog change rejected");
    }
    tx.execute(REJECT, &[&seqs, &subjects, &errors, &payloads])
        .await?;
    Ok(())
}
