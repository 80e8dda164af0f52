//! Queries over runs (`runs`, `run_progress`, `run_batches`, `eval_results`) and the catalog
//! (`catalog_items`, and the public catalog: the active version's allowed, ready, non-deleted
//! items whose result is of their current catalog change).

use deadpool_postgres::Pool;
use gatehouse_events::catalog::{
    CatalogItem, CatalogStats, GetItem, PublicCatalogPage, PublicCatalogQuery, PublicItem,
};
use gatehouse_events::envelope::{Rejection, RejectionCode};
use gatehouse_events::run::{
    blocking_reasons, DiffItem, DiffRun, ErrorSample, GetRun, ListRuns, RunCounters, RunDiff,
    RunStatus, RunView, DIFF_TOP,
};
use tokio_postgres::Row;

use super::queries::{column, page, unavailable};

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
pub async fn get(pg: &Pool, q: GetRun) -> Result<RunView, Rejection> {
    let rows = query(
        pg,
        &format!("{RUN_SELECT} WHERE r.run_id = $1"),
        &[&q.run_id],
    )
    .await?;
    run_view(rows.first().ok_or_else(|| run_not_found(&q.run_id))?)
}

/// `run.list`: newest first, filtered by policy and status.
pub async fn list(pg: &Pool, q: ListRuns) -> Result<Vec<RunView>, Rejection> {
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
pub async fn diff(pg: &Pool, q: DiffRun) -> Result<RunDiff, Rejection> {
    let run = get(
        pg,
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

/// `catalog.get`.
pub async fn item(pg: &Pool, q: GetItem) -> Result<CatalogItem, Rejection> {
    let rows = query(
        pg,
        "SELECT item_id, status, deleted, attributes, updated_at FROM catalog_items WHERE item_id = $1",
        &[&q.item_id],
    )
    .await?;
    let r = rows.first().ok_or_else(|| {
        Rejection::new(
            RejectionCode::NotFound,
            format!("item `{}` is not in the catalog", q.item_id),
        )
        .with_field("item_id")
    })?;
    Ok(CatalogItem {
        item_id: column(r, 0)?,
        status: column(r, 1)?,
        deleted: column(r, 2)?,
        attributes: column(r, 3)?,
        updated_at: column(r, 4)?,
    })
}

/// `catalog.stats`.
pub async fn stats(pg: &Pool) -> Result<CatalogStats, Rejection> {
    let rows = query(
        pg,
        "SELECT count(*), count(*) FILTER (WHERE status = 'ready' AND NOT deleted), count(*) FILTER (WHERE deleted) \
           FROM catalog_items",
        &[],
    )
    .await?;
    let c = |i: usize| rows.first().map_or(Ok(0), |r| column::<i64>(r, i));
    Ok(CatalogStats {
        items: c(0)?,
        ready: c(1)?,
        deleted: c(2)?,
    })
}

/// `catalog.public`: one page of what the policy's active version allows, read in one snapshot
/// so a promotion is seen entirely or not at all.
pub async fn public(pg: &Pool, q: PublicCatalogQuery) -> Result<PublicCatalogPage, Rejection> {
    let (limit, _) = page(q.limit, None)?;
    let db = |e: tokio_postgres::Error| unavailable(e.to_string());
    let mut client = pg.get().await.map_err(|e| unavailable(e.to_string()))?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db)?;
    let policy = tx
        .query_opt(
            "SELECT active_version FROM policies WHERE policy_id = $1",
            &[&q.policy_id],
        )
        .await
        .map_err(db)?
        .ok_or_else(|| {
            Rejection::new(
                RejectionCode::NotFound,
                format!("policy `{}` does not exist", q.policy_id),
            )
            .with_field("policy_id")
        })?;
    let active: Option<i32> = column(&policy, 0)?;
    let after = q.after.clone().unwrap_or_default();
    // Fail closed: a result is served only while it is of the item's current change.
    let rows = tx
        .query(
            "SELECT r.item_id, r.score, c.attributes FROM eval_results r JOIN catalog_items c USING (item_id)
              WHERE r.policy_id = $1 AND r.version = $2 AND r.outcome = 'allow'
                AND r.item_seq = c.stream_seq AND c.status = 'ready' AND NOT c.deleted
                AND r.item_id > $3 ORDER BY r.item_id LIMIT $4",
            &[&q.policy_id, &active, &after, &limit],
        )
        .await
        .map_err(db)?;
    let upto = match rows.last() {
        Some(last) if rows.len() as i64 == limit => Some(column::<String>(last, 0)?),
        _ => None,
    };
    let held_back = match active {
        Some(version) => held_back(&tx, &q.policy_id, version, &after, upto.as_deref()).await?,
        None => 0,
    };
    tx.commit().await.map_err(db)?;
    let items = rows
        .iter()
        .map(|r| {
            Ok(PublicItem {
                item_id: column(r, 0)?,
                score: column(r, 1)?,
                attributes: column(r, 2)?,
            })
        })
        .collect::<Result<_, Rejection>>()?;
    Ok(PublicCatalogPage {
        policy_id: q.policy_id,
        active_version: active.map(|v| v as u32),
        items,
        held_back,
    })
}

/// Ready items with ids in `(after, upto]` (`upto` `None`: to the end) whose current change
/// has no result of `version` yet.
async fn held_back(
    tx: &tokio_postgres::Transaction<'_>,
    policy_id: &str,
    version: i32,
    after: &str,
    upto: Option<&str>,
) -> Result<u64, Rejection> {
    let row = tx
        .query_one(
            "SELECT count(*) FROM catalog_items c
               LEFT JOIN eval_results r ON r.policy_id = $1 AND r.version = $2 AND r.item_id = c.item_id
              WHERE c.status = 'ready' AND NOT c.deleted AND c.item_id > $3
                AND ($4::text IS NULL OR c.item_id <= $4)
                AND r.item_seq IS DISTINCT FROM c.stream_seq",
            &[&policy_id, &version, &after, &upto],
        )
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    Ok(column::<i64>(&row, 0)? as u64)
}

async fn query(
    pg: &Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Row>, Rejection> {
    let client = pg.get().await.map_err(|e| unavailable(e.to_string()))?;
    client
        .query(sql, params)
        .await
        .map_err(|e| unavailable(e.to_string()))
}

fn run_not_found(run_id: &str) -> Rejection {
    Rejection::new(
        RejectionCode::NotFound,
        format!("run `{run_id}` does not exist"),
    )
    .with_field("run_id")
}
