//! The watchdog: a run `running` whose progress (`run_progress.batches_done`) did not advance
//! for `stall_after` has its missing batches enqueued again (or, with none missing, its
//! completion retried); after `stall_limit` such windows in a row it is failed with the reason.
//!
//! Every worker process runs one; only the one holding the transaction-scoped advisory lock
//! [`LOCK`] acts in a round. Progress is judged by what the watchdog itself saw change, so a
//! database outage (when it sees nothing) only ever leads to a harmless re-enqueue afterwards:
//! a batch is counted once however often its job comes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::completion::{complete_if_done, fail_run};
use super::delivery::WorkError;
use super::progress;
use super::scheduler::enqueue;
use super::Worker;

/// The advisory lock key of the watchdog (locks are per database).
const LOCK: i64 = 0x6761_7465_7764_6f67; // "gatewdog"

/// What the watchdog remembers of a running run.
struct Watch {
    batches_done: i64,
    /// When `batches_done` last changed, or the watchdog last acted.
    since: Instant,
    /// Stalled windows in a row.
    stalls: u32,
}

/// Watches running runs until `shutdown`.
pub(crate) async fn run(worker: Arc<Worker>, shutdown: CancellationToken) {
    let period = (worker.settings.stall_after / 4).max(Duration::from_millis(250));
    let mut watches = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        if let Err(e) = round(&worker, &mut watches).await {
            tracing::debug!(error.message = %e, "the watchdog could not look at the runs");
        }
    }
}

/// One look at every running run, under the lock.
async fn round(worker: &Worker, watches: &mut HashMap<String, Watch>) -> Result<(), WorkError> {
    let mut client = worker.pg.get().await?;
    let tx = client.transaction().await?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK])
        .await?
        .get(0);
    if !locked {
        return Ok(());
    }
    let rows = tx
        .query(
            "SELECT r.run_id, coalesce(p.batches_done, 0)::bigint
               FROM runs r LEFT JOIN run_progress p USING (run_id)
              WHERE r.status = 'running'",
            &[],
        )
        .await?;
    let now = Instant::now();
    let running: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    watches.retain(|run_id, _| running.contains_key(run_id));
    let mut stalled = Vec::new();
    for (run_id, done) in running {
        let watch = watches.entry(run_id.clone()).or_insert(Watch {
            batches_done: done,
            since: now,
            stalls: 0,
        });
        if watch.batches_done != done {
            *watch = Watch {
                batches_done: done,
                since: now,
                stalls: 0,
            };
        } else if now.duration_since(watch.since) >= worker.settings.stall_after {
            watch.since = now;
            watch.stalls += 1;
            stalled.push((run_id, watch.stalls));
        }
    }
    for (run_id, stalls) in stalled {
        if let Err(e) = unstall(worker, &tx, &run_id, stalls).await {
            tracing::warn!(error.message = %e, run_id, "the watchdog could not act on a stalled run");
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Re-enqueues the stalled run's missing batches, or fails it after too many windows.
async fn unstall(
    worker: &Worker,
    db: &deadpool_postgres::Transaction<'_>,
    run_id: &str,
    stalls: u32,
) -> Result<(), WorkError> {
    let Some(run) = progress::read_run(db, run_id).await? else {
        return Ok(());
    };
    let stalled_for = worker.settings.stall_after * stalls;
    if stalls > worker.settings.stall_limit {
        let reason = format!(
            "no progress for {}s: {} re-enqueues of its missing batches did not help",
            stalled_for.as_secs(),
            stalls - 1
        );
        return fail_run(worker, run_id, run.epoch, &reason).await;
    }
    let missing = progress::missing_batches(db, &run).await?;
    tracing::warn!(run_id, epoch = run.epoch, stalls, missing = missing.len(),
        stalled_for = ?stalled_for, "run stalled: enqueueing its missing batches again");
    if missing.is_empty() {
        return complete_if_done(worker, run_id).await;
    }
    enqueue(worker, &run, missing, Some(stalls)).await?;
    Ok(())
}
