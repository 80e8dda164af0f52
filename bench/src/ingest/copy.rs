//! The Postgres limit of `ingest`: a binary COPY of the same rows the catalog projector
//! writes (item id, status, not deleted, the attributes as `jsonb`, a time, a stream sequence),
//! read from the same file, into a fresh table indexed like `catalog_items`
//! (`LIKE catalog_items INCLUDING ALL`), in one transaction.
//!
//! The table is created before the transaction, as `catalog_items` was: a table created in the
//! COPY's own transaction may skip the WAL, which the projector's writes never do.

use std::time::{Duration, Instant};

use futures::pin_mut;
use gatehouse_projections::catalog::{COPY_COLUMNS, COPY_TYPES};
use gatehouse_projections::json_text::JsonText;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_postgres::binary_copy::BinaryCopyInWriter;

use super::file::ItemsFile;

const TABLE: &str = "bench_catalog_copy";

/// The fields of a line the row needs; the attributes stay JSON text, as the projector keeps
/// them.
#[derive(Deserialize)]
struct Line<'a> {
    id: &'a str,
    status: &'a str,
    #[serde(borrow)]
    attributes: &'a RawValue,
}

/// COPYs one row per line of `file` into a fresh copy of `catalog_items`, then drops it;
/// returns how long the COPY and COMMIT took and the rows copied.
pub async fn copy_items(
    db: &mut tokio_postgres::Client,
    file: &ItemsFile,
) -> anyhow::Result<(Duration, u64)> {
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {TABLE};
         CREATE TABLE {TABLE} (LIKE catalog_items INCLUDING ALL)"
    ))
    .await?;
    let copied = copy(db, file).await;
    db.batch_execute(&format!("DROP TABLE {TABLE}")).await?;
    copied
}

async fn copy(
    db: &mut tokio_postgres::Client,
    file: &ItemsFile,
) -> anyhow::Result<(Duration, u64)> {
    let mut lines = file.lines().await?;
    let updated_at = chrono::Utc::now();
    let started = Instant::now();
    let tx = db.transaction().await?;
    let sink = tx
        .copy_in(&format!("COPY {TABLE} ({COPY_COLUMNS}) FROM STDIN BINARY"))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    pin_mut!(writer);
    let mut rows = 0_i64;
    while let Some(text) = lines.next().await? {
        let line: Line<'_> = serde_json::from_slice(text)?;
        rows += 1;
        writer
            .as_mut()
            .write(&[
                &line.id,
                &line.status,
                &false,
                &JsonText(line.attributes.get()),
                &updated_at,
                &rows,
            ])
            .await?;
    }
    writer.finish().await?;
    tx.commit().await?;
    Ok((started.elapsed(), rows as u64))
}
