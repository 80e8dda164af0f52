//! What a decision reads, straight from the event store (never a lagging read model): the
//! repo's binding, the policy's active version, the item's case; and the catalog item's
//! attributes. Each is one indexed look-up of the aggregate's stream, newest event first. The
//! look-ups of every decision use statements prepared once per pooled connection.

use deadpool_postgres::ClientWrapper;
use gatehouse_events::artifact::{self, ArtifactEvent};
use gatehouse_events::quarantine::CaseStatus;
use gatehouse_events::repo::{RepoBound, RepoEvent};
use serde_json::{Map, Value};

/// The repo's last `RepoBound`.
const BINDING: &str = "SELECT payload FROM events
    WHERE aggregate_type = 'repo' AND aggregate_id = $1 AND event_type = 'RepoBound'
    ORDER BY sequence DESC LIMIT 1";
/// The policy's last `PolicyPromoted`'s version.
const ACTIVE_VERSION: &str =
    "SELECT (payload -> 'PolicyPromoted' ->> 'version')::bigint FROM events
    WHERE aggregate_type = 'policy' AND aggregate_id = $1 AND event_type = 'PolicyPromoted'
    ORDER BY sequence DESC LIMIT 1";
/// A ready, not deleted catalog item's attributes.
const CATALOG_ATTRIBUTES: &str =
    "SELECT attributes FROM catalog_items WHERE item_id = $1 AND status = 'ready' AND NOT deleted";
/// The item's last case event.
const CASE_STATE: &str = "SELECT payload FROM events
    WHERE aggregate_type = 'artifact' AND aggregate_id = $1
    AND event_type IN ('QuarantineOpened', 'QuarantineReleased', 'QuarantineRejected')
    ORDER BY sequence DESC LIMIT 1";

/// The repo's binding: its last `RepoBound`, if any.
pub async fn binding(
    client: &ClientWrapper,
    repo: &str,
) -> Result<Option<RepoBound>, tokio_postgres::Error> {
    let row = client
        .query_opt(&client.prepare_cached(BINDING).await?, &[&repo])
        .await?;
    Ok(
        row.and_then(|r| match serde_json::from_value(r.get::<_, Value>(0)) {
            Ok(RepoEvent::RepoBound(b)) => Some(b),
            _ => None,
        }),
    )
}

/// Every repo's binding (its last `RepoBound`).
pub async fn bindings(
    client: &tokio_postgres::Client,
) -> Result<Vec<RepoBound>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT DISTINCT ON (aggregate_id) payload FROM events
              WHERE aggregate_type = 'repo' AND event_type = 'RepoBound'
              ORDER BY aggregate_id, sequence DESC",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| match serde_json::from_value(r.get::<_, Value>(0)) {
            Ok(RepoEvent::RepoBound(b)) => Some(b),
            _ => None,
        })
        .collect())
}

/// The policy's active version: its last `PolicyPromoted`'s version, if any.
pub async fn active_version(
    client: &ClientWrapper,
    policy_id: &str,
) -> Result<Option<u32>, tokio_postgres::Error> {
    let row = client
        .query_opt(&client.prepare_cached(ACTIVE_VERSION).await?, &[&policy_id])
        .await?;
    Ok(row
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .and_then(|v| u32::try_from(v).ok()))
}

/// Does the policy exist (has it any event)?
pub async fn policy_exists(
    client: &tokio_postgres::Client,
    policy_id: &str,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT 1 FROM events WHERE aggregate_type = 'policy' AND aggregate_id = $1 LIMIT 1",
            &[&policy_id],
        )
        .await?;
    Ok(row.is_some())
}

/// The attributes of a ready, not deleted catalog item.
pub async fn catalog_attributes(
    client: &ClientWrapper,
    item_id: &str,
) -> Result<Option<Map<String, Value>>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &client.prepare_cached(CATALOG_ATTRIBUTES).await?,
            &[&item_id],
        )
        .await?;
    Ok(row.and_then(|r| match r.get::<_, Value>(0) {
        Value::Object(m) => Some(m),
        _ => None,
    }))
}

/// The item's case as its last case event left it: status, who resolved it and why.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseState {
    pub status: CaseStatus,
    pub resolved_by: Option<String>,
    pub reason: Option<String>,
}

/// The case of `item_id` in `repo`, if it has one.
pub async fn case_state(
    client: &ClientWrapper,
    repo: &str,
    item_id: &str,
) -> Result<Option<CaseState>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &client.prepare_cached(CASE_STATE).await?,
            &[&artifact::aggregate_id(repo, item_id)],
        )
        .await?;
    Ok(
        row.and_then(|r| match serde_json::from_value(r.get::<_, Value>(0)) {
            Ok(ArtifactEvent::QuarantineOpened(_)) => Some(CaseState {
                status: CaseStatus::Quarantined,
                resolved_by: None,
                reason: None,
            }),
            Ok(ArtifactEvent::QuarantineReleased(r)) => Some(CaseState {
                status: CaseStatus::Released,
                resolved_by: Some(r.resolved_by),
                reason: Some(r.reason),
            }),
            Ok(ArtifactEvent::QuarantineRejected(r)) => Some(CaseState {
                status: CaseStatus::Rejected,
                resolved_by: Some(r.resolved_by),
                reason: Some(r.reason),
            }),
            _ => None,
        }),
    )
}

/// An open case of a repo: the item and the attributes its last quarantine decision evaluated.
#[derive(Debug, Clone)]
pub struct OpenCase {
    pub item_id: String,
    pub attributes: Value,
}

/// The open cases of `repo`, from each artifact's last case event.
pub async fn open_cases(
    client: &tokio_postgres::Client,
    repo: &str,
) -> Result<Vec<OpenCase>, tokio_postgres::Error> {
    let prefix = format!("{repo}:");
    let rows = client
        .query(
            "SELECT DISTINCT ON (aggregate_id) aggregate_id, payload FROM events
              WHERE aggregate_type = 'artifact' AND left(aggregate_id, length($1)) = $1
                AND event_type IN ('QuarantineOpened', 'QuarantineJoined', 'QuarantineReleased', 'QuarantineRejected')
              ORDER BY aggregate_id, sequence DESC",
            &[&prefix],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let id: String = r.get(0);
            let item_id = artifact::split_id(&id)?.1.to_owned();
            match serde_json::from_value(r.get::<_, Value>(1)) {
                Ok(ArtifactEvent::QuarantineOpened(o)) => Some(OpenCase {
                    item_id,
                    attributes: o.attributes,
                }),
                Ok(ArtifactEvent::QuarantineJoined(j)) => Some(OpenCase {
                    item_id,
                    attributes: j.attributes,
                }),
                _ => None,
            }
        })
        .collect())
}
