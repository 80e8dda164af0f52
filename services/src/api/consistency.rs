//! Read-your-writes: a query's `wait_for` names an aggregate sequence (a command reply's
//! `sequence`), and the query is answered only once the read model it reads reflects it.
//!
//! Each aggregate's read model has a per-aggregate guard the projector moves in the same
//! transaction as the rows: `policies.last_sequence` for the `policy` aggregate (it covers
//! `policies`, `policy_versions` and `runs`, one projector), the stored sequences in
//! `audit_log` for the audit queries. The wait polls that guard, at most `timeout_ms`; still
//! behind then, it answers `not_caught_up` (retry) if the event was recorded, else
//! `bad_request` (no retry can reach an event that does not exist).

use std::time::Duration;

use deadpool_postgres::Pool;
use gatehouse_events::envelope::{Rejection, RejectionCode, WaitFor, DEFAULT_WAIT_MS};
use serde_json::json;

use super::read::{database, unavailable};
use super::request::bad_request;
use super::Operation;

/// The first pause between two looks at the guard; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// The read model a query reads, each with a per-aggregate guard its projector moves in the
/// same transaction as the rows: what `wait_for` waits on. Declared with each query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadModel {
    /// `policies`, `policy_versions`, `runs` (and the active version the public catalog reads):
    /// `policies.last_sequence`, for the `policy` aggregate.
    Policies,
    /// `audit_log`: every event up to the sequence, for any aggregate.
    Audit,
    /// `repos` (`repos.last_sequence`, for the `repo` aggregate) and `artifacts`, `decisions`,
    /// `quarantine_cases` (`artifacts.last_sequence`, for the `artifact` aggregate).
    Quarantine,
    /// `flags`, `flag_rollout_history`, `flag_globals`: `flags.last_sequence` for the `flag`
    /// aggregate, `flag_globals.last_sequence` for `global`.
    Flags,
}

/// Waits until the read model of query `op` reflects `wait`, or answers `not_caught_up`.
pub async fn wait(pg: &Pool, op: &Operation, wait: &WaitFor) -> Result<(), Rejection> {
    let guard = guard(op, &wait.aggregate)?;
    let timeout = Duration::from_millis(wait.timeout_ms.unwrap_or(DEFAULT_WAIT_MS));
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        let reached = reached(pg, &guard, wait).await?;
        if reached >= wait.sequence {
            return Ok(());
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(match recorded(pg, wait).await? {
                true => not_caught_up(wait, reached),
                false => never_recorded(wait),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// The guard that answers for `aggregate` in the read model `op` reads.
fn guard(op: &Operation, aggregate: &str) -> Result<ReadModel, Rejection> {
    match (op.reads, aggregate) {
        (Some(ReadModel::Policies), "policy") => Ok(ReadModel::Policies),
        (Some(ReadModel::Audit), _) => Ok(ReadModel::Audit),
        (Some(ReadModel::Quarantine), "repo" | "artifact") => Ok(ReadModel::Quarantine),
        (Some(ReadModel::Flags), "flag" | "global") => Ok(ReadModel::Flags),
        _ => Err(bad_request(format!(
            "`{}` does not read a model of the `{aggregate}` aggregate: nothing to wait for",
            op.name
        ))
        .with_field("wait_for.aggregate")),
    }
}

/// The sequence up to which the guard reflects the aggregate (0 before its first event).
async fn reached(pg: &Pool, guard: &ReadModel, wait: &WaitFor) -> Result<u64, Rejection> {
    let client = pg.get().await.map_err(|e| unavailable(e.to_string()))?;
    let sequence = i64::try_from(wait.sequence).unwrap_or(i64::MAX);
    let row = match guard {
        ReadModel::Policies => {
            client
                .query_opt(
                    "SELECT last_sequence FROM policies WHERE policy_id = $1",
                    &[&wait.aggregate_id],
                )
                .await
        }
        ReadModel::Quarantine if wait.aggregate == "repo" => {
            client
                .query_opt(
                    "SELECT last_sequence FROM repos WHERE repo = $1",
                    &[&wait.aggregate_id],
                )
                .await
        }
        ReadModel::Flags if wait.aggregate == "global" => {
            client
                .query_opt(
                    "SELECT last_sequence FROM flag_globals WHERE id = $1",
                    &[&wait.aggregate_id],
                )
                .await
        }
        ReadModel::Quarantine => {
            client
                .query_opt(
                    "SELECT last_sequence FROM artifacts WHERE artifact_id = $1",
                    &[&wait.aggregate_id],
                )
                .await
        }
        ReadModel::Flags => {
            client
                .query_opt(
                    "SELECT last_sequence FROM flags WHERE flag_key = $1",
                    &[&wait.aggregate_id],
                )
                .await
        }
        // The rows at or below the sequence, which are all there once it is reached.
        ReadModel::Audit => {
            client
                .query_opt(
                    "SELECT count(*) FROM audit_log \
                      WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence <= $3",
                    &[&wait.aggregate, &wait.aggregate_id, &sequence],
                )
                .await
        }
    }
    .map_err(database)?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
}

/// Whether the event `wait` names was recorded: one that was not can never be reached, so
/// waiting again is no remedy.
async fn recorded(pg: &Pool, wait: &WaitFor) -> Result<bool, Rejection> {
    let client = pg.get().await.map_err(|e| unavailable(e.to_string()))?;
    let sequence = i64::try_from(wait.sequence).unwrap_or(i64::MAX);
    let row = client
        .query_opt(
            "SELECT 1 FROM events \
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
            &[&wait.aggregate, &wait.aggregate_id, &sequence],
        )
        .await
        .map_err(database)?;
    Ok(row.is_some())
}

fn never_recorded(wait: &WaitFor) -> Rejection {
    bad_request(format!(
        "no event {} of {} `{}` was recorded: `wait_for` takes the aggregate, id and sequence of a \
         command's reply",
        wait.sequence, wait.aggregate, wait.aggregate_id
    ))
    .with_field("wait_for.sequence")
}

fn not_caught_up(wait: &WaitFor, reached: u64) -> Rejection {
    Rejection::new(
        RejectionCode::NotCaughtUp,
        format!(
            "the read model reflects {} `{}` up to sequence {reached}, not yet {}; retry",
            wait.aggregate, wait.aggregate_id, wait.sequence
        ),
    )
    .with_field("wait_for.sequence")
    .with_details(vec![json!({
        "aggregate": wait.aggregate,
        "aggregate_id": wait.aggregate_id,
        "sequence": wait.sequence,
        "reached": reached,
    })])
}
