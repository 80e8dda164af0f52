//! `decision.list`: rows of `decisions` (the `quarantine` read model), newest first.

use gatehouse_events::decision::{Action, DecisionEntry, ListDecisions};
use gatehouse_events::envelope::Rejection;
use gatehouse_events::rules::Decision;
use tokio_postgres::Row;

use crate::api::read::{column, internal, page, query};
use crate::api::App;

pub(crate) const COLUMNS: &str = "position, repo, item_id, action, decision, rule_id, reason, \
     policy_id, version, input_digest, digests, decided_by, decided_at";

pub(crate) fn entry(r: &Row) -> Result<DecisionEntry, Rejection> {
    let action: String = column(r, 3)?;
    let decision: String = column(r, 4)?;
    Ok(DecisionEntry {
        position: column(r, 0)?,
        repo: column(r, 1)?,
        item_id: column(r, 2)?,
        action: Action::parse(&action).ok_or_else(|| internal(format!("action `{action}`")))?,
        decision: serde_json::from_value(decision.clone().into())
            .map_err(|_| internal(format!("decision `{decision}`")))
            .map(|d: Decision| d)?,
        rule_id: column(r, 5)?,
        reason: column(r, 6)?,
        policy_id: column(r, 7)?,
        version: column::<i32>(r, 8)?.max(0) as u32,
        input_digest: column(r, 9)?,
        digests: column(r, 10)?,
        decided_by: column(r, 11)?,
        decided_at: column(r, 12)?,
    })
}

/// `decision.list`.
pub async fn list(app: &App, q: ListDecisions) -> Result<Vec<DecisionEntry>, Rejection> {
    let (limit, _) = page(q.limit, None)?;
    let action = q.action.map(|a| a.as_str());
    let rows = query(
        &app.pg,
        &format!(
            "SELECT {COLUMNS} FROM decisions
              WHERE repo = $1 AND ($2::text IS NULL OR item_id = $2)
                AND ($3::text IS NULL OR action = $3)
                AND ($4::bigint IS NULL OR position < $4)
              ORDER BY position DESC LIMIT $5"
        ),
        &[&q.repo, &q.item_id, &action, &q.before_position, &limit],
    )
    .await?;
    rows.iter().map(entry).collect()
}
