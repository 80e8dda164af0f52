//! `artifact.can_read`: the item's case as its last case event in `events` left it (never a
//! lagging read model); a digest is resolved to its items through `decisions`.

use gatehouse_events::artifact::{CanRead, ReadAllowed};
use gatehouse_events::catalog::is_valid_item_id;
use gatehouse_events::decision::is_valid_digest;
use gatehouse_events::envelope::{Rejection, RejectionCode};
use gatehouse_events::quarantine::CaseStatus;
use gatehouse_events::repo::is_valid_repo;
use serde_json::json;

use crate::api::read::{column, database, unavailable};
use crate::api::request::bad_request;
use crate::api::App;
use crate::decision::lookup;

/// `artifact.can_read`.
pub async fn can_read(app: &App, q: CanRead) -> Result<ReadAllowed, Rejection> {
    if !is_valid_repo(&q.repo) {
        return Err(bad_request(format!("`{}` is not a repo name", q.repo)).with_field("repo"));
    }
    let client = app.pg.get().await.map_err(|e| unavailable(e.to_string()))?;
    let item_ids = match (&q.item_id, &q.digest) {
        (Some(item_id), None) if is_valid_item_id(item_id) => vec![item_id.clone()],
        (Some(item_id), None) => {
            return Err(bad_request(format!("`{item_id}` is not an item id")).with_field("item_id"))
        }
        (None, Some(digest)) if is_valid_digest(digest) => client
            .query(
                "SELECT DISTINCT item_id FROM decisions WHERE repo = $1 AND digests @> ARRAY[$2::text]
                  ORDER BY item_id LIMIT 1000",
                &[&q.repo, digest],
            )
            .await
            .map_err(database)?
            .iter()
            .map(|r| column(r, 0))
            .collect::<Result<_, _>>()?,
        (None, Some(digest)) => {
            return Err(bad_request(format!(
                "`{digest}` is not a digest (<algorithm>:<hex>)"
            ))
            .with_field("digest"))
        }
        _ => {
            return Err(bad_request("name exactly one of `item_id` and `digest`"))
        }
    };
    let mut waived = false;
    for item_id in &item_ids {
        let Some(case) = lookup::case_state(&client, &q.repo, item_id)
            .await
            .map_err(database)?
        else {
            continue;
        };
        if case.status.blocks_reads() {
            return Err(Rejection::new(
                RejectionCode::QuarantinedBlob,
                format!(
                    "`{item_id}` of repo `{}` is {}: reads are refused{}",
                    q.repo,
                    case.status,
                    case.resolved_by
                        .as_deref()
                        .map(|by| format!(" (rejected by `{by}`)"))
                        .unwrap_or_default()
                ),
            )
            .with_details(vec![json!({
                "repo": q.repo,
                "item_id": item_id,
                "status": case.status,
                "resolved_by": case.resolved_by,
                "reason": case.reason,
            })]));
        }
        waived = true;
    }
    Ok(ReadAllowed {
        allowed: true,
        repo: q.repo,
        item_ids,
        case: waived.then_some(CaseStatus::Released),
    })
}
