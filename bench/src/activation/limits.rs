//! The catalog the `activation` scenario runs over, and its two limits, measured in the same
//! run: the CPU limit (the worker's own evaluation code over the same items, in this process,
//! on every core, nothing else) and the I/O limit (a binary COPY of as many result rows into a
//! twin of `eval_results`, indexes included).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::pin_mut;
use gatehouse_rules::CompiledPolicy;
use tokio_postgres::binary_copy::BinaryCopyInWriter;

use gatehouse_projections::catalog::{COPY_COLUMNS, COPY_TYPES};

use crate::catalog;
use gatehouse::worker::evaluate::{evaluate_all, Attributes, Candidate, ItemState, Verdict};
use gatehouse::worker::store::{self, Results};

/// Items generated, evaluated or written at a time.
const CHUNK: u64 = 5_000;

/// COPYs items `0..count` into `catalog_items` as the catalog projector would have written
/// them (stream sequence `i + 1`, changed a minute ago, so before any run's cutoff).
pub async fn load_catalog(db: &mut tokio_postgres::Client, count: u64) -> anyhow::Result<()> {
    let updated_at = chrono::Utc::now() - chrono::TimeDelta::minutes(1);
    let tx = db.transaction().await?;
    let sink = tx
        .copy_in(&format!(
            "COPY catalog_items ({COPY_COLUMNS}) FROM STDIN BINARY"
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    pin_mut!(writer);
    for i in 0..count {
        let item = catalog::item(i);
        let attributes = serde_json::Value::Object(item.attributes);
        let seq = i as i64 + 1;
        writer
            .as_mut()
            .write(&[
                &item.id,
                &item.status,
                &false,
                &attributes,
                &updated_at,
                &seq,
            ])
            .await?;
    }
    writer.finish().await?;
    tx.commit().await?;
    Ok(())
}

/// Item `i` as a worker reads it from Postgres: attributes as JSON text, or pending.
fn candidate(i: u64) -> Candidate {
    let item = catalog::item(i);
    let state = if item.status == gatehouse_events::catalog::READY {
        let text = serde_json::to_vec(&item.attributes).expect("attributes serialize");
        ItemState::Ready(Attributes::Text(text))
    } else {
        ItemState::Pending("not ready")
    };
    Candidate {
        item_id: item.id,
        item_seq: i as i64 + 1,
        state,
    }
}

/// Evaluated items and their verdicts, a chunk at a time (attributes dropped once evaluated).
pub type Evaluated = Vec<(Vec<Candidate>, Vec<Verdict>)>;

/// The CPU limit: evaluates items `0..count` with the worker's `evaluate_all` on `threads`
/// threads, chunk by chunk; only the evaluation is timed (not generating the items). Returns
/// the time taken and every chunk with its verdicts, in item order.
pub fn evaluate(policy: &Arc<CompiledPolicy>, count: u64, threads: usize) -> (Duration, Evaluated) {
    let mut took = Duration::ZERO;
    let mut evaluated = Vec::new();
    let mut from = 0;
    while from < count {
        let to = (from + CHUNK).min(count);
        let mut items: Vec<Candidate> = (from..to).map(candidate).collect();
        let started = Instant::now();
        let verdicts = evaluate_all(policy, &items, threads);
        took += started.elapsed();
        for item in &mut items {
            item.state = ItemState::Pending("evaluated");
        }
        evaluated.push((items, verdicts));
        from = to;
    }
    (took, evaluated)
}

/// The I/O limit: the result rows of `evaluated`, written by the workers' own binary COPY
/// ([`store::copy_into`]) into a fresh `LIKE eval_results INCLUDING ALL` table in one
/// transaction, commit included; the table is dropped afterwards. Returns the time taken.
pub async fn copy_results(
    db: &mut tokio_postgres::Client,
    evaluated: &Evaluated,
) -> anyhow::Result<Duration> {
    db.batch_execute(
        "DROP TABLE IF EXISTS bench_results;
         CREATE TABLE bench_results (LIKE eval_results INCLUDING ALL)",
    )
    .await?;
    let batches: Vec<Results<'_>> = evaluated
        .iter()
        .map(|(items, verdicts)| Results {
            policy_id: "bench-copy",
            version: 1,
            run_id: Some("bench-copy:1"),
            items,
            verdicts,
        })
        .collect();
    let started = Instant::now();
    let tx = db.transaction().await?;
    store::copy_into(&tx, "bench_results", &batches, true).await?;
    tx.commit().await?;
    let took = started.elapsed();
    db.batch_execute("DROP TABLE bench_results").await?;
    Ok(took)
}
