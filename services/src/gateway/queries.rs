//! Queries over the read models (`policies`, `policy_versions`, `audit_log`) and the event store.

use deadpool_postgres::Pool;
use gatehouse_events::envelope::{Rejection, RejectionCode};
use gatehouse_events::policy::{
    DiffVersions, GetPolicy, GetVersion, ListPolicies, ListVersions, PolicySummary, PolicyVersion,
    VersionSummary,
};
use serde::Serialize;
use tokio_postgres::row::RowIndex;
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use super::{catalog_queries, consistency, request, run_queries};
use crate::audit;
use crate::policy::diff::diff;

/// Default and largest page size of list queries.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1_000;

/// The read side the gateway answers queries from.
pub struct Queries {
    pg: Pool,
}

impl Queries {
    pub fn new(pg: Pool) -> Self {
        Queries { pg }
    }

    /// Answers the query `name` (e.g. `policy.versions`), once its read model reflects the
    /// request's `wait_for`, if any.
    pub async fn handle(&self, name: &str, payload: &[u8]) -> Result<serde_json::Value, Rejection> {
        let (payload, wait_for) = request::split_wait(payload)?;
        if let Some(wait_for) = &wait_for {
            consistency::wait(&self.pg, name, wait_for).await?;
        }
        let payload = payload.as_slice();
        match name {
            "policy.list" => json(self.list(request::query(payload)?).await?),
            "policy.get" => json(
                self.get(&request::query::<GetPolicy>(payload)?.policy_id)
                    .await?,
            ),
            "policy.versions" => json(self.versions(request::query(payload)?).await?),
            "policy.version" => json(self.version(request::query(payload)?).await?),
            "policy.diff" => json(self.diff(request::query(payload)?).await?),
            "audit.log" => json(audit::log(&self.pg, request::query(payload)?).await?),
            "audit.replay" => json(audit::replay(&self.pg, request::query(payload)?).await?),
            "run.get" => json(run_queries::get(&self.pg, request::query(payload)?).await?),
            "run.list" => json(run_queries::list(&self.pg, request::query(payload)?).await?),
            "run.diff" => json(run_queries::diff(&self.pg, request::query(payload)?).await?),
            "catalog.get" => json(catalog_queries::item(&self.pg, request::query(payload)?).await?),
            "catalog.stats" => json(catalog_queries::stats(&self.pg).await?),
            "catalog.public" => {
                json(catalog_queries::public(&self.pg, request::query(payload)?).await?)
            }
            other => Err(Rejection::new(
                RejectionCode::BadRequest,
                format!("unknown query `{other}`"),
            )),
        }
    }

    async fn list(&self, q: ListPolicies) -> Result<Vec<PolicySummary>, Rejection> {
        let (limit, offset) = page(q.limit, q.offset)?;
        let rows = self
            .query(
                &format!("{POLICY_SELECT} ORDER BY policy_id LIMIT $1 OFFSET $2"),
                &[&limit, &offset],
            )
            .await?;
        rows.iter().map(policy_summary).collect()
    }

    async fn get(&self, policy_id: &str) -> Result<PolicySummary, Rejection> {
        let rows = self
            .query(
                &format!("{POLICY_SELECT} WHERE policy_id = $1"),
                &[&policy_id],
            )
            .await?;
        policy_summary(rows.first().ok_or_else(|| policy_not_found(policy_id))?)
    }

    async fn versions(&self, q: ListVersions) -> Result<Vec<VersionSummary>, Rejection> {
        let policy = self.get(&q.policy_id).await?;
        let (limit, offset) = page(q.limit, q.offset)?;
        let rows = self
            .query(
                &format!("{VERSION_SELECT} WHERE policy_id = $1 ORDER BY version DESC LIMIT $2 OFFSET $3"),
                &[&q.policy_id, &limit, &offset],
            )
            .await?;
        rows.iter()
            .map(|r| version_summary(r, policy.active_version))
            .collect()
    }

    async fn version(&self, q: GetVersion) -> Result<PolicyVersion, Rejection> {
        let policy = self.get(&q.policy_id).await?;
        self.load_version(&policy, q.version).await
    }

    async fn diff(
        &self,
        q: DiffVersions,
    ) -> Result<gatehouse_events::policy::PolicyDiff, Rejection> {
        let policy = self.get(&q.policy_id).await?;
        let from = self
            .load_version(&policy, q.from)
            .await
            .map_err(|r| r.with_field("from"))?;
        let to = self
            .load_version(&policy, q.to)
            .await
            .map_err(|r| r.with_field("to"))?;
        Ok(diff(&q.policy_id, q.from, &from.rules, q.to, &to.rules))
    }

    async fn load_version(
        &self,
        policy: &PolicySummary,
        version: u32,
    ) -> Result<PolicyVersion, Rejection> {
        let rows = self
            .query(
                &format!("{VERSION_SELECT} WHERE policy_id = $1 AND version = $2"),
                &[&policy.policy_id, &(version as i32)],
            )
            .await?;
        let row = rows.first().ok_or_else(|| {
            Rejection::new(
                RejectionCode::VersionNotFound,
                format!(
                    "policy `{}` has no version {version} (latest is {})",
                    policy.policy_id, policy.latest_version
                ),
            )
            .with_field("version")
        })?;
        let rules =
            serde_json::from_value(column(row, "rules")?).map_err(|e| internal(e.to_string()))?;
        Ok(PolicyVersion {
            policy_id: policy.policy_id.clone(),
            summary: version_summary(row, policy.active_version)?,
            rules,
        })
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, Rejection> {
        let client = self
            .pg
            .get()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        client.query(sql, params).await.map_err(database)
    }
}

const POLICY_SELECT: &str =
    "SELECT policy_id, name, description, attributes, latest_version, active_version, \
     created_by, created_at, updated_at, last_sequence FROM policies";
const VERSION_SELECT: &str =
    "SELECT version, author, notes, restored_from, rules_hash, rule_count, drafted_at, rules FROM policy_versions";

fn policy_summary(r: &Row) -> Result<PolicySummary, Rejection> {
    Ok(PolicySummary {
        policy_id: column(r, "policy_id")?,
        name: column(r, "name")?,
        description: column(r, "description")?,
        attributes: serde_json::from_value(column(r, "attributes")?).unwrap_or_default(),
        latest_version: column::<i32>(r, "latest_version")? as u32,
        active_version: column::<Option<i32>>(r, "active_version")?.map(|v| v as u32),
        created_by: column(r, "created_by")?,
        created_at: column(r, "created_at")?,
        updated_at: column(r, "updated_at")?,
        sequence: column::<i64>(r, "last_sequence")? as u64,
    })
}

fn version_summary(r: &Row, active: Option<u32>) -> Result<VersionSummary, Rejection> {
    let version = column::<i32>(r, "version")? as u32;
    Ok(VersionSummary {
        version,
        author: column(r, "author")?,
        notes: column(r, "notes")?,
        restored_from: column::<Option<i32>>(r, "restored_from")?.map(|v| v as u32),
        rules_hash: column(r, "rules_hash")?,
        rule_count: column::<i32>(r, "rule_count")? as u32,
        drafted_at: column(r, "drafted_at")?,
        active: active == Some(version),
    })
}

/// Column `idx` of `row`. A value that cannot be read (such as JSON nested deeper than
/// serde_json reads) is an `internal` rejection, never a panic.
pub fn column<'a, T: FromSql<'a>>(
    row: &'a Row,
    idx: impl RowIndex + std::fmt::Display + Copy,
) -> Result<T, Rejection> {
    row.try_get(idx)
        .map_err(|e| internal(format!("cannot read column {idx}: {e}")))
}

/// Validated `(limit, offset)` as SQL parameters.
pub fn page(limit: Option<u32>, offset: Option<u32>) -> Result<(i64, i64), Rejection> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(
            request::bad_request(format!("limit must be between 1 and {MAX_LIMIT}"))
                .with_field("limit"),
        );
    }
    Ok((limit as i64, offset.unwrap_or(0) as i64))
}

fn policy_not_found(policy_id: &str) -> Rejection {
    Rejection::new(
        RejectionCode::NotFound,
        format!("policy `{policy_id}` does not exist"),
    )
    .with_field("policy_id")
}

fn json<T: Serialize>(value: T) -> Result<serde_json::Value, Rejection> {
    serde_json::to_value(value).map_err(|e| internal(e.to_string()))
}

pub fn unavailable(detail: String) -> Rejection {
    tracing::error!(error.message = %detail, "read model unavailable");
    Rejection::new(
        RejectionCode::Unavailable,
        "the database is unavailable; retry",
    )
}

/// The answer to a failed read: `unavailable` (retry) only when retrying can help.
pub fn database(e: tokio_postgres::Error) -> Rejection {
    match crate::store::failure(&e) {
        crate::store::Failure::Unavailable => unavailable(e.to_string()),
        crate::store::Failure::InvalidData => {
            tracing::warn!(error.message = %e, "the database refused a value of a request");
            request::bad_request("the database refused a value of this request")
        }
        crate::store::Failure::Internal => {
            tracing::error!(error.message = %e, "read model query failed");
            internal("the read model query failed".into())
        }
    }
}

/// An unexpected failure: `detail` is logged, the caller gets a generic message.
pub fn internal(detail: String) -> Rejection {
    tracing::error!(error.message = %detail, "query failed");
    Rejection::new(
        RejectionCode::Internal,
        "unexpected server error (details in the server log)",
    )
}
