//! Queries over `repos` (the `quarantine` read model).

use gatehouse_events::envelope::{Rejection, RejectionCode};
use gatehouse_events::repo::{GetRepo, ListRepos, RepoSummary};
use tokio_postgres::Row;

use crate::api::read::{column, page, query};
use crate::api::App;

const COLUMNS: &str =
    "repo, policy_id, budget_ms, auto_release, bound_by, bound_at, timeouts, last_sequence";

fn summary(r: &Row) -> Result<RepoSummary, Rejection> {
    Ok(RepoSummary {
        repo: column(r, 0)?,
        policy_id: column(r, 1)?,
        budget_ms: column::<i32>(r, 2)?.max(0) as u32,
        auto_release: column(r, 3)?,
        bound_by: column(r, 4)?,
        bound_at: column(r, 5)?,
        timeouts: column::<i64>(r, 6)?.max(0) as u64,
        sequence: column::<i64>(r, 7)?.max(0) as u64,
    })
}

/// `repo.get`.
pub async fn get(app: &App, q: GetRepo) -> Result<RepoSummary, Rejection> {
    let rows = query(
        &app.pg,
        &format!("SELECT {COLUMNS} FROM repos WHERE repo = $1"),
        &[&q.repo],
    )
    .await?;
    let row = rows.first().ok_or_else(|| {
        Rejection::new(
            RejectionCode::NotFound,
            format!("repo `{}` is bound to no policy", q.repo),
        )
        .with_field("repo")
    })?;
    summary(row)
}

/// `repo.list`.
pub async fn list(app: &App, q: ListRepos) -> Result<Vec<RepoSummary>, Rejection> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let rows = query(
        &app.pg,
        &format!(
            "SELECT {COLUMNS} FROM repos WHERE ($1::text IS NULL OR policy_id = $1)
              ORDER BY repo LIMIT $2 OFFSET $3"
        ),
        &[&q.policy_id, &limit, &offset],
    )
    .await?;
    rows.iter().map(summary).collect()
}
