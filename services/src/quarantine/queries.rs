//! `quarantine.list` and `quarantine.get`: rows of `quarantine_cases` and `decisions` (the
//! `quarantine` read model).

use gatehouse_events::envelope::{Rejection, RejectionCode};
use gatehouse_events::quarantine::{
    CaseDetail, CasePage, CaseStatus, CaseSummary, GetCase, ListCases,
};
use tokio_postgres::Row;

use crate::api::read::{column, internal, page, query};
use crate::api::request::bad_request;
use crate::api::App;
use crate::decision::queries::{entry, COLUMNS as DECISION_COLUMNS};

const COLUMNS: &str = "repo, item_id, status, policy_id, version, rule_id, reason, opened_by, \
     opened_at, decisions, resolved_by, resolved_at, resolution_reason";

fn summary(r: &Row) -> Result<CaseSummary, Rejection> {
    let status: String = column(r, 2)?;
    Ok(CaseSummary {
        repo: column(r, 0)?,
        item_id: column(r, 1)?,
        status: CaseStatus::parse(&status).ok_or_else(|| internal(format!("status `{status}`")))?,
        policy_id: column(r, 3)?,
        version: column::<i32>(r, 4)?.max(0) as u32,
        rule_id: column(r, 5)?,
        reason: column(r, 6)?,
        opened_by: column(r, 7)?,
        opened_at: column(r, 8)?,
        decisions: column::<i32>(r, 9)?.max(0) as u32,
        resolved_by: column(r, 10)?,
        resolved_at: column(r, 11)?,
        resolution_reason: column(r, 12)?,
    })
}

/// `quarantine.list`.
pub async fn list(app: &App, q: ListCases) -> Result<CasePage, Rejection> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(CaseStatus::parse(s).ok_or_else(|| {
            let allowed: Vec<&str> = CaseStatus::ALL.iter().map(|s| s.as_str()).collect();
            bad_request(format!("status `{s}` is not one of {}", allowed.join(", ")))
                .with_field("status")
        })?),
    };
    let status = status.map(|s| s.as_str());
    let (limit, offset) = page(q.limit, q.offset)?;
    let rows = query(
        &app.pg,
        &format!(
            "SELECT {COLUMNS}, count(*) OVER () FROM quarantine_cases
              WHERE ($1::text IS NULL OR repo = $1) AND ($2::text IS NULL OR status = $2)
              ORDER BY opened_at, repo, item_id LIMIT $3 OFFSET $4"
        ),
        &[&q.repo, &status, &limit, &offset],
    )
    .await?;
    let total = match rows.first() {
        Some(r) => column::<i64>(r, 13)?.max(0) as u64,
        None => 0,
    };
    Ok(CasePage {
        cases: rows.iter().map(summary).collect::<Result<_, _>>()?,
        total,
    })
}

/// `quarantine.get`.
pub async fn get(app: &App, q: GetCase) -> Result<CaseDetail, Rejection> {
    let rows = query(
        &app.pg,
        &format!("SELECT {COLUMNS} FROM quarantine_cases WHERE repo = $1 AND item_id = $2"),
        &[&q.repo, &q.item_id],
    )
    .await?;
    let row = rows.first().ok_or_else(|| {
        Rejection::new(
            RejectionCode::NotFound,
            format!(
                "item `{}` has no quarantine case in repo `{}`",
                q.item_id, q.repo
            ),
        )
        .with_field("item_id")
    })?;
    let case = summary(row)?;
    let history = query(
        &app.pg,
        &format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE repo = $1 AND item_id = $2
              ORDER BY position DESC LIMIT 1000"
        ),
        &[&q.repo, &q.item_id],
    )
    .await?
    .iter()
    .map(entry)
    .collect::<Result<_, _>>()?;
    Ok(CaseDetail { case, history })
}
