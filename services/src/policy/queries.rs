//! Policy queries over the `policies` and `policy_versions` read models.

use gatehouse_events::envelope::{Rejection, RejectionCode};
use gatehouse_events::policy::{
    DiffVersions, GetPolicy, GetVersion, ListPolicies, ListVersions, PolicyDiff, PolicySummary,
    PolicyVersion, VersionSummary,
};
use tokio_postgres::Row;

use crate::api::read::{column, internal, page, query};
use crate::api::App;

/// `policy.list`: policies by id.
pub async fn list(app: &App, q: ListPolicies) -> Result<Vec<PolicySummary>, Rejection> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let rows = query(
        &app.pg,
        &format!("{POLICY_SELECT} ORDER BY policy_id LIMIT $1 OFFSET $2"),
        &[&limit, &offset],
    )
    .await?;
    rows.iter().map(policy_summary).collect()
}

/// `policy.get`.
pub async fn get(app: &App, q: GetPolicy) -> Result<PolicySummary, Rejection> {
    summary(app, &q.policy_id).await
}

async fn summary(app: &App, policy_id: &str) -> Result<PolicySummary, Rejection> {
    let rows = query(
        &app.pg,
        &format!("{POLICY_SELECT} WHERE policy_id = $1"),
        &[&policy_id],
    )
    .await?;
    policy_summary(rows.first().ok_or_else(|| policy_not_found(policy_id))?)
}

/// `policy.versions`: newest first.
pub async fn versions(app: &App, q: ListVersions) -> Result<Vec<VersionSummary>, Rejection> {
    let policy = summary(app, &q.policy_id).await?;
    let (limit, offset) = page(q.limit, q.offset)?;
    let rows = query(
        &app.pg,
        &format!("{VERSION_SELECT} WHERE policy_id = $1 ORDER BY version DESC LIMIT $2 OFFSET $3"),
        &[&q.policy_id, &limit, &offset],
    )
    .await?;
    rows.iter()
        .map(|r| version_summary(r, policy.active_version))
        .collect()
}

/// `policy.version`: one version with its rules.
pub async fn version(app: &App, q: GetVersion) -> Result<PolicyVersion, Rejection> {
    let policy = summary(app, &q.policy_id).await?;
    load_version(app, &policy, q.version).await
}

/// `policy.diff`: rule by rule, between two versions.
pub async fn diff(app: &App, q: DiffVersions) -> Result<PolicyDiff, Rejection> {
    let policy = summary(app, &q.policy_id).await?;
    let from = load_version(app, &policy, q.from)
        .await
        .map_err(|r| r.with_field("from"))?;
    let to = load_version(app, &policy, q.to)
        .await
        .map_err(|r| r.with_field("to"))?;
    Ok(super::diff::diff(
        &q.policy_id,
        q.from,
        &from.rules,
        q.to,
        &to.rules,
    ))
}

async fn load_version(
    app: &App,
    policy: &PolicySummary,
    version: u32,
) -> Result<PolicyVersion, Rejection> {
    let rows = query(
        &app.pg,
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

const POLICY_SELECT: &str =
    "SELECT policy_id, name, description, attributes, latest_version, active_version, \
     created_by, created_at, updated_at, require_second_approver, last_sequence FROM policies";
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
        require_second_approver: column(r, "require_second_approver")?,
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

fn policy_not_found(policy_id: &str) -> Rejection {
    Rejection::new(
        RejectionCode::NotFound,
        format!("policy `{policy_id}` does not exist"),
    )
    .with_field("policy_id")
}
