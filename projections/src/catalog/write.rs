//! Writing one [`Plan`] inside the batch's transaction: the rows go by binary COPY into a
//! session-local staging table, then into `catalog_items` with one `INSERT ... SELECT ... ON
//! CONFLICT` guarded by `stream_seq`; the rejections go into `catalog_rejections`.
//!
//! The guard (`WHERE catalog_items.stream_seq < EXCLUDED.stream_seq`) makes a write of an older
//! or the same change a no-op, so a redelivered or reordered message never undoes a newer one.

use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::Transaction;

use super::decode::{Plan, Rejection, Row};

/// The staging table: temporary (one per connection, emptied at each commit), so a pooled
/// connection creates it once.
const STAGE: &str = "
    SET LOCAL client_min_messages = warning;
    CREATE TEMP TABLE IF NOT EXISTS catalog_incoming (
        item_id    text        NOT NULL,
        status     text        NOT NULL,
        deleted    boolean     NOT NULL,
        attributes jsonb       NOT NULL,
        updated_at timestamptz NOT NULL,
        stream_seq bigint      NOT NULL
    ) ON COMMIT DELETE ROWS";

const COPY: &str = "COPY catalog_incoming (item_id, status, deleted, attributes, updated_at, \
     stream_seq) FROM STDIN (FORMAT binary)";

const COLUMNS: [Type; 6] = [
    Type::TEXT,
    Type::TEXT,
    Type::BOOL,
    Type::JSONB,
    Type::TIMESTAMPTZ,
    Type::INT8,
];

/// A delete keeps the item's last status and attributes; a delete of an item the catalog
/// never held inserts the staged `deleted` status and `{}`. Staged ids are unique (the plan
/// keeps one change per item), as ON CONFLICT requires. Id order keeps index writes local.
const MERGE: &str = "
    INSERT INTO catalog_items AS c (item_id, status, deleted, attributes, updated_at, stream_seq)
    SELECT item_id, status, deleted, attributes, updated_at, stream_seq
    FROM catalog_incoming ORDER BY item_id
    ON CONFLICT (item_id) DO UPDATE SET
        status     = CASE WHEN EXCLUDED.deleted THEN c.status ELSE EXCLUDED.status END,
        attributes = CASE WHEN EXCLUDED.deleted THEN c.attributes ELSE EXCLUDED.attributes END,
        deleted    = EXCLUDED.deleted,
        updated_at = EXCLUDED.updated_at,
        stream_seq = EXCLUDED.stream_seq
    WHERE c.stream_seq < EXCLUDED.stream_seq";

const REJECT: &str = "
    INSERT INTO catalog_rejections (stream_seq, subject, error, payload)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
    ON CONFLICT (stream_seq) DO NOTHING";

/// Writes `plan` in `tx`; returns how many items changed (older changes change nothing).
pub(crate) async fn write(tx: &Transaction<'_>, plan: &Plan) -> Result<u64, tokio_postgres::Error> {
    let mut changed = 0;
    if !plan.rows.is_empty() {
        stage(tx, &plan.rows).await?;
        changed = tx.execute(MERGE, &[]).await?;
    }
    if !plan.rejections.is_empty() {
        reject(tx, &plan.rejections).await?;
    }
    Ok(changed)
}

async fn stage(tx: &Transaction<'_>, rows: &[Row]) -> Result<(), tokio_postgres::Error> {
    tx.batch_execute(STAGE).await?;
    let sink = tx.copy_in(COPY).await?;
    let writer = BinaryCopyInWriter::new(sink, &COLUMNS);
    pin_mut!(writer);
    for row in rows {
        let attributes = Json(&row.attributes);
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
    writer.finish().await?;
    Ok(())
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
