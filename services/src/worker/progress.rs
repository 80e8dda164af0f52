//! A run's progress: the `runs` read model as workers read it, and the batch commit that
//! writes a batch's results, its `run_batches` row and the run's `run_progress` counters in one
//! transaction. A batch is counted once: its `run_batches` row is inserted first, and nothing
//! else is written if it was there already.

use deadpool_postgres::GenericClient;
use gatehouse_events::run::{EvaluationJob, RunStatus};
use tokio_postgres::types::Json;

use super::evaluate::{Candidate, Tally, Verdict};
use super::store::{self, Results};

/// A run as the `runs` read model (projected from the policy events) has it.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub run_id: String,
    pub policy_id: String,
    pub version: u32,
    pub status: RunStatus,
    pub epoch: u32,
    pub snapshot_id: String,
    pub total: u64,
    pub batch_size: u32,
    pub batches: u32,
}

/// The run, once the policies projector has projected its `RunPrepared`.
pub(crate) async fn read_run(
    db: &impl GenericClient,
    run_id: &str,
) -> Result<Option<Run>, tokio_postgres::Error> {
    let row = db
        .query_opt(
            "SELECT policy_id, version, status, epoch, snapshot_id, total_ready_snapshot,
                    batch_size, batches
               FROM runs WHERE run_id = $1",
            &[&run_id],
        )
        .await?;
    Ok(row.map(|row| Run {
        run_id: run_id.to_owned(),
        policy_id: row.get(0),
        version: row.get::<_, i32>(1) as u32,
        // An unknown status is treated as ended: nothing more is evaluated for it.
        status: RunStatus::parse(row.get(2)).unwrap_or(RunStatus::Failed),
        epoch: row.get::<_, i32>(3) as u32,
        snapshot_id: row.get(4),
        total: row.get::<_, i64>(5) as u64,
        batch_size: row.get::<_, i32>(6) as u32,
        batches: row.get::<_, i32>(7) as u32,
    }))
}

/// The batches of the run not counted yet, in order.
pub(crate) async fn missing_batches(
    db: &impl GenericClient,
    run: &Run,
) -> Result<Vec<u32>, tokio_postgres::Error> {
    let rows = db
        .query(
            "SELECT b FROM generate_series(0, $2 - 1) AS b
              WHERE NOT EXISTS (SELECT 1 FROM run_batches WHERE run_id = $1 AND batch = b)
              ORDER BY b",
            &[&run.run_id, &(run.batches as i32)],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, i32>(0) as u32).collect())
}

/// Has this batch been counted?
pub(crate) async fn batch_counted(
    db: &impl GenericClient,
    run_id: &str,
    batch: u32,
) -> Result<bool, tokio_postgres::Error> {
    let row = db
        .query_opt(
            "SELECT 1 FROM run_batches WHERE run_id = $1 AND batch = $2",
            &[&run_id, &(batch as i32)],
        )
        .await?;
    Ok(row.is_some())
}

/// Snapshot items processed so far.
pub(crate) async fn processed(
    db: &impl GenericClient,
    run_id: &str,
) -> Result<u64, tokio_postgres::Error> {
    let row = db
        .query_opt(
            "SELECT processed FROM run_progress WHERE run_id = $1",
            &[&run_id],
        )
        .await?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
}

/// What committing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Counted now; the run's `processed` after it.
    Counted { processed: u64 },
    /// Counted before (a redelivered or re-enqueued job): nothing was written.
    AlreadyCounted,
}

/// Writes a batch in one transaction: its `run_batches` row, its results, the run's counters.
pub(crate) async fn commit_batch(
    client: &mut deadpool_postgres::Object,
    job: &EvaluationJob,
    items: &[Candidate],
    verdicts: &[Verdict],
    tally: &Tally,
) -> Result<Commit, tokio_postgres::Error> {
    let c = &tally.counters;
    let tx = client.transaction().await?;
    let inserted = tx
        .execute(
            "INSERT INTO run_batches (run_id, batch, epoch, processed) VALUES ($1, $2, $3, $4)
             ON CONFLICT (run_id, batch) DO NOTHING",
            &[
                &job.run_id,
                &(job.batch as i32),
                &(job.epoch as i32),
                &(c.processed as i64),
            ],
        )
        .await?;
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(Commit::AlreadyCounted);
    }
    let results = Results {
        policy_id: &job.policy_id,
        version: job.version,
        run_id: Some(&job.run_id),
        items,
        verdicts,
    };
    store::insert_new(&tx, results).await?;
    let counts = [
        c.processed,
        c.eligible,
        c.ineligible,
        c.quarantined,
        c.pending,
        c.errors,
    ]
    .map(|n| n as i64);
    // Error samples: the run's first ten, in the order batches commit.
    let row = tx
        .query_one(
            "INSERT INTO run_progress AS p (run_id, processed, eligible, ineligible, quarantined,
                                            pending, errors, batches_done, error_samples, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, now())
             ON CONFLICT (run_id) DO UPDATE SET
                 processed = p.processed + EXCLUDED.processed,
                 eligible = p.eligible + EXCLUDED.eligible,
                 ineligible = p.ineligible + EXCLUDED.ineligible,
                 quarantined = p.quarantined + EXCLUDED.quarantined,
                 pending = p.pending + EXCLUDED.pending,
                 errors = p.errors + EXCLUDED.errors,
                 batches_done = p.batches_done + 1,
                 error_samples = (
                     SELECT coalesce(jsonb_agg(s.sample ORDER BY s.n), '[]'::jsonb)
                       FROM jsonb_array_elements(p.error_samples || EXCLUDED.error_samples)
                            WITH ORDINALITY AS s(sample, n)
                      WHERE s.n <= $9),
                 updated_at = now()
             RETURNING processed",
            &[
                &job.run_id,
                &counts[0],
                &counts[1],
                &counts[2],
                &counts[3],
                &counts[4],
                &counts[5],
                &Json(&tally.samples),
                &(gatehouse_events::run::MAX_ERROR_SAMPLES as i64),
            ],
        )
        .await?;
    let processed = row.get::<_, i64>(0) as u64;
    tx.commit().await?;
    Ok(Commit::Counted { processed })
}
