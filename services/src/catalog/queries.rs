//! Queries over the catalog (`catalog_items`) and the public catalog: the active version's
//! allowed, ready, non-deleted items whose result (`eval_results`) is of their current catalog
//! change — never an item with a `quarantined` or `rejected` quarantine case in any repo, and an
//! item evaluated `quarantine` whose case was released, as a waiver.

use gatehouse_events::catalog::{
    CatalogItem, CatalogStats, GetItem, PublicCatalogPage, PublicCatalogQuery, PublicItem,
    StatsQuery, Waiver,
};
use gatehouse_events::envelope::{Rejection, RejectionCode};

use crate::api::read::{column, database, page, query, unavailable};
use crate::api::App;

/// `catalog.get`.
pub async fn item(app: &App, q: GetItem) -> Result<CatalogItem, Rejection> {
    let pg = &app.pg;
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
pub async fn stats(app: &App, _: StatsQuery) -> Result<CatalogStats, Rejection> {
    let pg = &app.pg;
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
pub async fn public(app: &App, q: PublicCatalogQuery) -> Result<PublicCatalogPage, Rejection> {
    let pg = &app.pg;
    let (limit, _) = page(q.limit, None)?;
    let db = database;
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
    // Fail closed: a result is served only while it is of the item's current change, and never
    // while a case holds the item (quarantined, or rejected) in any repo. A released case is a
    // waiver: the item is served (even when the version quarantines it), saying so.
    let rows = tx
        .query(
            "SELECT r.item_id, r.score, c.attributes, w.repo, w.resolved_by, w.resolved_at,
                    w.resolution_reason
               FROM eval_results r JOIN catalog_items c USING (item_id)
               LEFT JOIN LATERAL (
                    SELECT q.repo, q.resolved_by, q.resolved_at, q.resolution_reason
                      FROM quarantine_cases q
                     WHERE q.item_id = r.item_id AND q.status = 'released'
                     ORDER BY q.resolved_at DESC, q.repo LIMIT 1) w ON true
              WHERE r.policy_id = $1 AND r.version = $2
                AND (r.outcome = 'allow' OR (r.outcome = 'quarantine' AND w.repo IS NOT NULL))
                AND NOT EXISTS (SELECT 1 FROM quarantine_cases h
                                 WHERE h.item_id = r.item_id AND h.status IN ('quarantined', 'rejected'))
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
            let waiver = match column::<Option<String>>(r, 3)? {
                Some(repo) => Some(Waiver {
                    repo,
                    released_by: column::<Option<String>>(r, 4)?.unwrap_or_default(),
                    released_at: column::<Option<chrono::DateTime<chrono::Utc>>>(r, 5)?
                        .unwrap_or_default(),
                    reason: column::<Option<String>>(r, 6)?.unwrap_or_default(),
                }),
                None => None,
            };
            Ok(PublicItem {
                item_id: column(r, 0)?,
                score: column(r, 1)?,
                attributes: column(r, 2)?,
                waiver,
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
        .map_err(database)?;
    Ok(column::<i64>(&row, 0)? as u64)
}
