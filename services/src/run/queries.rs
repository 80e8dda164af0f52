//! Queries over runs (`runs`, `run_progress`, `run_batches`, `run_snapshot_batches`,
//! `eval_results`).

use deadpool_postgres::Pool;
use gatehouse_events::envelope::{Rejection, RejectionCode};
use gatehouse_events::run::{
    blocking_reasons, DiffItem, DiffRun, ErrorSample, GetRun, ListRuns, RunCounters, RunDiff,
    RunStatus, RunView, DIFF_TOP,
};
use tokio_postgres::Row;

use crate::api::read::{column, page, query};
use crate::api::App;

const RUN_SELECT: &str = "SELECT r.*, \
       coalesce(p.processed, 0) AS processed, coalesce(p.eligible, 0) AS eligible, \
       coalesce(p.ineligible, 0) AS ineligible, coalesce(p.quarantined, 0) AS quarantined, \
       coalesce(p.pending, 0) AS pending, coalesce(p.errors, 0) AS errors, \
       coalesce(p.batches_done, 0) AS batches_done, coalesce(p.error_samples, '[]') AS error_samples, \
       coalesce((SELECT min(b) FROM generate_series(0, r.batches - 1) b \
                  WHERE NOT EXISTS (SELECT 1 FROM run_batches rb WHERE rb.run_id = r.run_id AND rb.batch = b)), \
                r.batches) AS cursor \
  FROM runs r LEFT JOIN run_progress p ON p.run_id = r.run_id";

/// `run.get`.
pub async fn get(app: &App, q: GetRun) -> Result<RunView, Rejection> {
    let pg = &app.pg;
    let rows = query(
        pg,
        &format!("{RUN_SELECT} WHERE r.run_id = $1"),
        &[&q.run_id],
    )
    .await?;
    run_view(rows.first().ok_or_else(|| run_not_found(&q.run_id))?)
}

/// `run.list`: newest first, filtered by policy and status.
pub async fn list(app: &App, q: ListRuns) -> Result<Vec<RunView>, Rejection> {
    let pg = &app.pg;
    let (limit, offset) = page(q.limit, q.offset)?;
    let status = q.status.map(RunStatus::as_str);
    let sql = format!(
        "{RUN_SELECT} WHERE ($1::text IS NULL OR r.policy_id = $1) AND ($2::text IS NULL OR r.status = $2) \
         ORDER BY r.prepared_at DESC, r.run_id DESC LIMIT $3 OFFSET $4"
    );
    let rows = query(pg, &sql, &[&q.policy_id, &status, &limit, &offset]).await?;
    rows.iter().map(run_view).collect()
}

fn run_view(r: &Row) -> Result<RunView, Rejection> {
    let n = |c: &str| column::<i64>(r, c).map(|v| v as u64);
    let counters = RunCounters {
        total_ready_snapshot: n("total_ready_snapshot")?,
        processed: n("processed")?,
        eligible: n("eligible")?,
        ineligible: n("ineligible")?,
        quarantined: n("quarantined")?,
        pending: n("pending")?,
        errors: n("errors")?,
    };
    let status = RunStatus::parse(column(r, "status")?).unwrap_or(RunStatus::Failed);
    let (threshold, max_errors) = (column::<f64>(r, "coverage_threshold")?, n("max_errors")?);
    let reasons = blocking_reasons(status, &counters, threshold, max_errors);
    Ok(RunView {
        run_id: column(r, "run_id")?,
        policy_id: column(r, "policy_id")?,
        version: column::<i32>(r, "version")? as u32,
        status,
        epoch: column::<i32>(r, "epoch")? as u32,
        coverage: counters.coverage(),
        counters,
        coverage_threshold: threshold,
        max_errors,
        ready_to_promote: reasons.is_empty(),
        blocking_reasons: reasons,
        batches: column::<i32>(r, "batches")? as u32,
        batches_done: column::<i32>(r, "batches_done")? as u32,
        cursor: column::<i32>(r, "cursor")? as u32,
        snapshot_cutoff: column(r, "snapshot_cutoff")?,
        error_samples: serde_json::from_value::<Vec<ErrorSample>>(column(r, "error_samples")?)
            .unwrap_or_default(),
        failure: column(r, "failure")?,
        promoted: column(r, "promoted")?,
        prepared_by: column(r, "prepared_by")?,
        prepared_at: column(r, "prepared_at")?,
        ended_at: column(r, "ended_at")?,
    })
}

/// The run's snapshot items (`$4`: its snapshot id) with their result of the run's version
/// (`t`: policy `$1`, version `$2`) and of the active version (`a`: `$3`), if any.
const DIFF_FROM: &str = "FROM run_snapshot_batches b
   CROSS JOIN LATERAL unnest(b.item_ids) AS s (item_id)
   JOIN eval_results t ON t.policy_id = $1 AND t.version = $2 AND t.item_id = s.item_id
   LEFT JOIN eval_results a ON a.policy_id = $1 AND a.version = $3 AND a.item_id = s.item_id
  WHERE b.snapshot_id = $4";

/// `run.diff`: set-based comparison of the run's results with the active version's, over the
/// run's snapshot (so the categories add up to `total_ready_snapshot`).
pub async fn diff(app: &App, q: DiffRun) -> Result<RunDiff, Rejection> {
    let pg = &app.pg;
    let run = get(
        app,
        GetRun {
            run_id: q.run_id.clone(),
        },
    )
    .await?;
    if run.status != RunStatus::Success {
        let message = format!(
            "run {} is {}: only a successful run has a diff",
            run.run_id,
            run.status.as_str()
        );
        return Err(Rejection::new(RejectionCode::InvalidState, message).with_field("run_id"));
    }
    let active: Option<i32> = match query(
        pg,
        "SELECT active_version FROM policies WHERE policy_id = $1",
        &[&run.policy_id],
    )
    .await?
    .first()
    {
        Some(r) => column(r, 0)?,
        None => None,
    };
    let snapshot: String = match query(
        pg,
        "SELECT snapshot_id FROM runs WHERE run_id = $1",
        &[&run.run_id],
    )
    .await?
    .first()
    {
        Some(r) => column(r, 0)?,
        None => return Err(run_not_found(&run.run_id)),
    };
    let on = Snapshot {
        policy: &run.policy_id,
        version: run.version as i32,
        active,
        snapshot: &snapshot,
    };
    let counts = query(
        pg,
        &format!(
            "SELECT count(*) FILTER (WHERE a.outcome = 'allow' AND t.outcome IN ('deny', 'quarantine')),
                    count(*) FILTER (WHERE a.outcome IN ('deny', 'quarantine') AND t.outcome = 'allow'),
                    count(*) FILTER (WHERE a.outcome = t.outcome),
                    count(*) FILTER (WHERE a.outcome <> t.outcome AND 'allow' NOT IN (a.outcome, t.outcome)),
                    count(*) FILTER (WHERE a.item_id IS NULL)
               {DIFF_FROM}"
        ),
        &on.params(),
    )
    .await?;
    let c = |i: usize| {
        counts
            .first()
            .map_or(Ok(0), |r| column::<i64>(r, i).map(|v| v as u64))
    };
    Ok(RunDiff {
        run_id: run.run_id.clone(),
        policy_id: run.policy_id.clone(),
        version: run.version,
        active_version: active.map(|v| v as u32),
        regressions: c(0)?,
        improvements: c(1)?,
        unchanged: c(2)?,
        other_changes: c(3)?,
        newly_evaluated: c(4)?,
        top_regressions: top(
            pg,
            &on,
            "a.outcome = 'allow' AND t.outcome IN ('deny', 'quarantine')",
        )
        .await?,
        top_improvements: top(
            pg,
            &on,
            "a.outcome IN ('deny', 'quarantine') AND t.outcome = 'allow'",
        )
        .await?,
    })
}

/// What a diff compares: the parameters of [`DIFF_FROM`].
struct Snapshot<'a> {
    policy: &'a str,
    version: i32,
    active: Option<i32>,
    snapshot: &'a str,
}

impl Snapshot<'_> {
    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 4] {
        [&self.policy, &self.version, &self.active, &self.snapshot]
    }
}

async fn top(pg: &Pool, on: &Snapshot<'_>, change: &str) -> Result<Vec<DiffItem>, Rejection> {
    let sql = format!(
        "SELECT t.item_id, t.score, a.outcome AS before, t.outcome AS after, t.rule_id, t.reason
           {DIFF_FROM} AND {change}
          ORDER BY t.score DESC, t.item_id LIMIT {DIFF_TOP}"
    );
    let rows = query(pg, &sql, &on.params()).await?;
    rows.iter()
        .map(|r| {
            Ok(DiffItem {
                item_id: column(r, 0)?,
                score: column(r, 1)?,
                before: column(r, 2)?,
                after: column(r, 3)?,
                rule_id: column(r, 4)?,
                reason: column(r, 5)?,
            })
        })
        .collect()
}

fn run_not_found(run_id: &str) -> Rejection {
    Rejection::new(
        RejectionCode::NotFound,
        format!("run `{run_id}` does not exist"),
    )
    .with_field("run_id")
}
