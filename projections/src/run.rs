//! The `runs` table of the `policies` read model: one row per evaluation run, from the run
//! events in its policy's stream. Every update is guarded by the policy event's sequence.

use gatehouse_events::policy::PolicyEvent;
use gatehouse_events::record::EventRecord;
use gatehouse_events::run::RunPrepared;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Transaction;

use crate::model::{ApplyError, Tables};

/// Applies one run event (or a promotion) to the `runs` table.
pub(crate) async fn apply(
    tx: &Transaction<'_>,
    tables: &Tables,
    event: &EventRecord,
    change: &PolicyEvent,
) -> Result<(), ApplyError> {
    let runs = tables.name("runs");
    let seq = &event.sequence;
    match change {
        PolicyEvent::RunPrepared(p) => insert(tx, runs, event, p).await,
        PolicyEvent::RunSucceeded(e) => {
            let set = "status = 'success', final_counters = $3, ended_at = $4";
            update(
                tx,
                runs,
                &e.run_id,
                seq,
                set,
                &[&Json(&e.counters), &e.completed_at],
            )
            .await
        }
        PolicyEvent::RunFailed(e) => {
            let set = "status = 'failed', final_counters = $3, ended_at = $4, failure = $5";
            update(
                tx,
                runs,
                &e.run_id,
                seq,
                set,
                &[&Json(&e.counters), &e.failed_at, &e.reason],
            )
            .await
        }
        PolicyEvent::RunCancelled(e) => {
            let set = "status = 'cancelled', ended_at = $3";
            update(tx, runs, &e.run_id, seq, set, &[&e.cancelled_at]).await
        }
        PolicyEvent::RunResumed(e) => {
            let epoch = e.epoch as i32;
            let set = "status = 'running', epoch = $3, ended_at = NULL, failure = NULL";
            update(tx, runs, &e.run_id, seq, set, &[&epoch]).await
        }
        PolicyEvent::PolicyPromoted(e) => {
            let set = "promoted = true, promoted_at = $3";
            update(tx, runs, &e.run_id, seq, set, &[&e.promoted_at]).await
        }
        PolicyEvent::PolicyCreated(_)
        | PolicyEvent::PolicyVersionDrafted(_)
        | PolicyEvent::PolicyConfigured(_) => Ok(()),
    }
}

async fn insert(
    tx: &Transaction<'_>,
    runs: &str,
    event: &EventRecord,
    p: &RunPrepared,
) -> Result<(), ApplyError> {
    let sql = format!(
        "INSERT INTO {runs} (run_id, policy_id, run_number, version, status, epoch, snapshot_id,
             snapshot_cutoff, total_ready_snapshot, batch_size, batches, coverage_threshold, max_errors,
             prepared_by, prepared_at, last_sequence)
         VALUES ($1, $2, $3, $4, 'running', 1, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (run_id) DO NOTHING"
    );
    let params: [&(dyn ToSql + Sync); 14] = [
        &p.run_id,
        &event.aggregate_id,
        &(p.run_number as i32),
        &(p.version as i32),
        &p.snapshot_id,
        &p.snapshot_cutoff,
        &(p.total_ready_snapshot as i64),
        &(p.batch_size as i32),
        &(p.batches as i32),
        &p.coverage_threshold,
        &(p.max_errors as i64),
        &p.prepared_by,
        &p.prepared_at,
        &event.sequence,
    ];
    tx.execute(&sql, &params).await?;
    Ok(())
}

/// `UPDATE runs SET <set>, last_sequence = $2 WHERE run_id = $1 AND last_sequence < $2`; `set`
/// uses `$3...` for `extra`.
async fn update(
    tx: &Transaction<'_>,
    runs: &str,
    run_id: &str,
    sequence: &i64,
    set: &str,
    extra: &[&(dyn ToSql + Sync)],
) -> Result<(), ApplyError> {
    let sql = format!(
        "UPDATE {runs} SET {set}, last_sequence = $2 WHERE run_id = $1 AND last_sequence < $2"
    );
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&run_id, sequence];
    params.extend_from_slice(extra);
    tx.execute(&sql, &params).await?;
    Ok(())
}
