//! The catalog the `activation` scenario runs over, and its two limits, measured in the same
//! run: the CPU limit (the worker's own evaluation code over the same items, in this process,
//! on every core, nothing else) and the I/O limit (a binary COPY of as many result rows into a
//! twin of `eval_results`, indexes included).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::pin_mut;
use gatehouse_rules::CompiledPolicy;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use gatehouse_projections::catalog::{COPY_COLUMNS, COPY_TYPES};

use crate::bench::catalog;
use crate::worker::evaluate::{evaluate_all, Attributes, Candidate, ItemState, Verdict};

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

/// The CPU limit: evaluates items `0..count` with the worker's `evaluate_all` on `threads`
/// threads, chunk by chunk; only the evaluation is timed (not generating the items). Returns
/// the time taken and every verdict, in item order.
pub fn evaluate(
    policy: &Arc<CompiledPolicy>,
    count: u64,
    threads: usize,
) -> (Duration, Vec<Verdict>) {
    let mut took = Duration::ZERO;
    let mut verdicts = Vec::with_capacity(count as usize);
    let mut from = 0;
    while from < count {
        let to = (from + CHUNK).min(count);
        let items: Vec<Candidate> = (from..to).map(candidate).collect();
        let started = Instant::now();
        let chunk = evaluate_all(policy, &items, threads);
        took += started.elapsed();
        verdicts.extend(chunk);
        from = to;
    }
    (took, verdicts)
}

/// The I/O limit: one result row per verdict (item `i` for `verdicts[i]`), binary COPYed into a
/// fresh `LIKE eval_results INCLUDING ALL` table in one transaction, commit included; the
/// table is dropped afterwards. Returns the time taken.
pub async fn copy_results(
    db: &mut tokio_postgres::Client,
    verdicts: &[Verdict],
) -> anyhow::Result<Duration> {
    db.batch_execute(
        "DROP TABLE IF EXISTS bench_results;
         CREATE TABLE bench_results (LIKE eval_results INCLUDING ALL)",
    )
    .await?;
    let evaluated_at = chrono::Utc::now();
    let started = Instant::now();
    let tx = db.transaction().await?;
    let sink = tx
        .copy_in(
            "COPY bench_results (policy_id, version, item_id, outcome, rule_id, reason, score, \
             item_seq, run_id, evaluated_at) FROM STDIN BINARY",
        )
        .await?;
    let types = [
        Type::TEXT,
        Type::INT4,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::FLOAT8,
        Type::INT8,
        Type::TEXT,
        Type::TIMESTAMPTZ,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    let run_id = "bench-copy:1";
    for (i, verdict) in verdicts.iter().enumerate() {
        let item_id = catalog::item_id(i as u64);
        let seq = i as i64 + 1;
        writer
            .as_mut()
            .write(&[
                &"bench-copy",
                &1i32,
                &item_id,
                &verdict.outcome.as_str(),
                &verdict.rule_id.as_deref(),
                &&*verdict.reason,
                &verdict.score,
                &seq,
                &run_id,
                &evaluated_at,
            ])
            .await?;
    }
    writer.finish().await?;
    tx.commit().await?;
    let took = started.elapsed();
    db.batch_execute("DROP TABLE bench_results").await?;
    Ok(took)
}
