//! Audit queries: the audit read model (`audit_log`), and replays straight from the event
//! store (`events`), including an aggregate's state as of a time.

use cqrs_es::Aggregate;
use gatehouse_events::audit::{
    AuditEntry, AuditLogQuery, Denial, DenialsQuery, Replay, ReplayQuery, MAX_LOG_LIMIT,
};
use gatehouse_events::envelope::{Rejection, RejectionCode};
use gatehouse_events::record::EventRecord;
use tokio_postgres::types::ToSql;

use crate::access::Access;
use crate::api::read::{column, internal, query};
use crate::api::request::bad_request;
use crate::api::App;
use crate::artifact::Artifact;
use crate::category::CategoryRules;
use crate::flag::{Flag, Global};
use crate::policy::Policy;
use crate::repo::Repo;

/// Audit rows matching every given filter, oldest first.
pub async fn log(app: &App, q: AuditLogQuery) -> Result<Vec<AuditEntry>, Rejection> {
    let pg = &app.pg;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LOG_LIMIT {
        return Err(
            bad_request(format!("limit must be between 1 and {MAX_LOG_LIMIT}")).with_field("limit"),
        );
    }
    let limit = limit as i64;
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    let owned = Filters::from(&q);
    for (column, op, value) in owned.iter() {
        params.push(value);
        clauses.push(format!("{column} {op} ${}", params.len()));
    }
    params.push(&limit);
    let where_clause = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT position, recorded_at, actor, metadata ->> 'delegated_by' AS delegated_by, \
         aggregate_type, aggregate_id, sequence, event_type, command_id, \
         correlation_id, causation_id, payload FROM audit_log {where_clause} ORDER BY position LIMIT ${}",
        params.len()
    );
    let rows = query(pg, &sql, &params).await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                position: column(r, "position")?,
                recorded_at: column(r, "recorded_at")?,
                actor: column(r, "actor")?,
                delegated_by: column(r, "delegated_by")?,
                aggregate: column(r, "aggregate_type")?,
                aggregate_id: column(r, "aggregate_id")?,
                sequence: column::<i64>(r, "sequence")? as u64,
                event_type: column(r, "event_type")?,
                command_id: column(r, "command_id")?,
                correlation_id: column(r, "correlation_id")?,
                causation_id: column(r, "causation_id")?,
                payload: column(r, "payload")?,
            })
        })
        .collect()
}

/// The owned filter values of an audit query, so SQL parameters can borrow them.
struct Filters {
    text: Vec<(&'static str, String)>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    after: Option<i64>,
}

impl From<&AuditLogQuery> for Filters {
    fn from(q: &AuditLogQuery) -> Self {
        let text = [
            ("aggregate_type", &q.aggregate),
            ("aggregate_id", &q.aggregate_id),
            ("actor", &q.actor),
            ("event_type", &q.event_type),
        ]
        .into_iter()
        .filter_map(|(c, v)| v.clone().map(|v| (c, v)))
        .collect();
        Filters {
            text,
            since: q.since,
            until: q.until,
            after: q.after_position,
        }
    }
}

impl Filters {
    fn iter(&self) -> Vec<(&'static str, &'static str, &(dyn ToSql + Sync))> {
        let mut out: Vec<(&'static str, &'static str, &(dyn ToSql + Sync))> = self
            .text
            .iter()
            .map(|(c, v)| (*c, "=", v as &(dyn ToSql + Sync)))
            .collect();
        if let Some(t) = &self.since {
            out.push(("recorded_at", ">=", t));
        }
        if let Some(t) = &self.until {
            out.push(("recorded_at", "<", t));
        }
        if let Some(p) = &self.after {
            out.push(("position", ">", p));
        }
        out
    }
}

/// One aggregate's history from the event store, and its state after it.
pub async fn replay(app: &App, q: ReplayQuery) -> Result<Replay, Rejection> {
    let pg = &app.pg;
    const KNOWN: [&str; 7] = [
        Policy::TYPE,
        Access::TYPE,
        Flag::TYPE,
        Global::TYPE,
        CategoryRules::TYPE,
        Repo::TYPE,
        Artifact::TYPE,
    ];
    if !KNOWN.contains(&q.aggregate.as_str()) {
        return Err(bad_request(format!(
            "unknown aggregate `{}` (known: {})",
            q.aggregate,
            KNOWN.join(", ")
        ))
        .with_field("aggregate"));
    }
    let rows = query(pg, "SELECT global_position, sequence, event_type, event_version, recorded_at, payload, metadata \
             FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
               AND ($3::timestamptz IS NULL OR recorded_at <= $3) ORDER BY sequence",
            &[&q.aggregate, &q.aggregate_id, &q.as_of],).await?;
    if rows.is_empty() {
        let message = match q.as_of {
            Some(t) => format!("{} `{}` had no events at {t}", q.aggregate, q.aggregate_id),
            None => format!("{} `{}` does not exist", q.aggregate, q.aggregate_id),
        };
        return Err(Rejection::new(RejectionCode::NotFound, message).with_field("aggregate_id"));
    }
    let events: Vec<EventRecord> = rows
        .iter()
        .map(|r| {
            Ok(EventRecord {
                position: column(r, "global_position")?,
                aggregate: q.aggregate.clone(),
                aggregate_id: q.aggregate_id.clone(),
                sequence: column(r, "sequence")?,
                event_type: column(r, "event_type")?,
                event_version: column(r, "event_version")?,
                recorded_at: column(r, "recorded_at")?,
                payload: column(r, "payload")?,
                metadata: column(r, "metadata")?,
            })
        })
        .collect::<Result<_, Rejection>>()?;
    let state = match q.aggregate.as_str() {
        Access::TYPE => folded::<Access>(&events)?,
        Flag::TYPE => folded::<Flag>(&events)?,
        Global::TYPE => folded::<Global>(&events)?,
        CategoryRules::TYPE => folded::<CategoryRules>(&events)?,
        Repo::TYPE => folded::<Repo>(&events)?,
        Artifact::TYPE => folded::<Artifact>(&events)?,
        _ => policy_state(&events)?,
    };
    Ok(Replay {
        aggregate: q.aggregate,
        aggregate_id: q.aggregate_id,
        as_of: q.as_of,
        events,
        state,
    })
}

/// Folds events into an aggregate's state, as the command side would load it.
fn fold<A: Aggregate>(events: &[EventRecord]) -> Result<A, Rejection> {
    let mut aggregate = A::default();
    for e in events {
        let event = serde_json::from_value(e.payload.clone())
            .map_err(|err| internal(format!("event {} cannot be decoded: {err}", e.position)))?;
        aggregate.apply(event);
    }
    Ok(aggregate)
}

/// The state `events` fold into, as JSON.
fn folded<A: Aggregate>(events: &[EventRecord]) -> Result<serde_json::Value, Rejection> {
    Ok(serde_json::to_value(fold::<A>(events)?).unwrap_or_default())
}

/// A policy's state, with its latest version.
fn policy_state(events: &[EventRecord]) -> Result<serde_json::Value, Rejection> {
    let policy = fold::<Policy>(events)?;
    let mut state = serde_json::to_value(&policy).unwrap_or_default();
    state["latest_version"] = policy.latest_version().into();
    Ok(state)
}

/// Denied requests matching every given filter, oldest first.
pub async fn denials(app: &App, q: DenialsQuery) -> Result<Vec<Denial>, Rejection> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LOG_LIMIT {
        return Err(
            bad_request(format!("limit must be between 1 and {MAX_LOG_LIMIT}")).with_field("limit"),
        );
    }
    let rows = query(
        &app.pg,
        "SELECT position, denied_at, \"user\", account, delegated_by, operation, missing_role
           FROM denials
             WHERE ($1::text IS NULL OR \"user\" = $1) AND ($2::text IS NULL OR operation = $2)
               AND position > coalesce($3::bigint, 0)
             ORDER BY position LIMIT $4",
        &[&q.user, &q.operation, &q.after_position, &(limit as i64)],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Denial {
                position: column(r, "position")?,
                denied_at: column(r, "denied_at")?,
                user: column(r, "user")?,
                account: column(r, "account")?,
                operation: column(r, "operation")?,
                missing_role: column(r, "missing_role")?,
                delegated_by: column(r, "delegated_by")?,
            })
        })
        .collect()
}
