//! The `quarantine` read model: decisions and quarantine cases, from the `repo` and `artifact`
//! aggregates' events.
//!
//! Writes `repos` (one row per repo: its binding and timeout count), `artifacts` (one row per
//! item in a repo: the guard), `decisions` (one row per `DecisionRecorded`, keyed by position)
//! and `quarantine_cases` (one row per case). Each aggregate's `last_sequence` guards its
//! changes: at or below it an event is already applied, the next one applies, one further ahead
//! is a gap (retried until the missing event arrives). Unknown event types only advance it.

use async_trait::async_trait;
use gatehouse_events::artifact::{self, ArtifactEvent};
use gatehouse_events::record::EventRecord;
use gatehouse_events::repo::{self, RepoEvent};
use serde::Deserialize;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Transaction;

use crate::model::{ApplyError, Interest, ReadModel, Tables};

/// The decisions and quarantine read model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quarantine;

impl Quarantine {
    pub const NAME: &'static str = "quarantine";
}

const REPO_EVENTS: [&str; 2] = ["RepoBound", "PolicyTimedOut"];
const ARTIFACT_EVENTS: [&str; 5] = [
    "DecisionRecorded",
    "QuarantineOpened",
    "QuarantineJoined",
    "QuarantineReleased",
    "QuarantineRejected",
];

#[async_trait]
impl ReadModel for Quarantine {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["repos", "artifacts", "decisions", "quarantine_cases"]
    }

    fn interest(&self) -> Interest {
        Interest::Aggregates(&[repo::AGGREGATE, artifact::AGGREGATE])
    }

    async fn apply(
        &self,
        tx: &Transaction<'_>,
        tables: &Tables,
        event: &EventRecord,
    ) -> Result<(), ApplyError> {
        match event.aggregate.as_str() {
            repo::AGGREGATE => apply_repo(tx, tables, event).await,
            artifact::AGGREGATE => apply_artifact(tx, tables, event).await,
            _ => Ok(()),
        }
    }
}

/// Where an event stands against its aggregate's `last_sequence` (`None`: no row yet).
fn guard(last_sequence: Option<i64>, event: &EventRecord) -> Result<bool, ApplyError> {
    let expected = last_sequence.unwrap_or(0) + 1;
    match event.sequence.cmp(&expected) {
        std::cmp::Ordering::Less => Ok(false),
        std::cmp::Ordering::Equal => Ok(true),
        std::cmp::Ordering::Greater => Err(ApplyError::gap(event, expected)),
    }
}

fn decode<'a, E: Deserialize<'a>>(
    event: &'a EventRecord,
    known: &[&str],
    type_of: impl Fn(&E) -> &'static str,
) -> Result<Option<E>, ApplyError> {
    match E::deserialize(&event.payload) {
        Ok(decoded) if type_of(&decoded) != event.event_type => Err(ApplyError::Poison(format!(
            "a {} payload stored as {}",
            type_of(&decoded),
            event.event_type
        ))),
        Ok(decoded) => Ok(Some(decoded)),
        Err(e) if known.contains(&event.event_type.as_str()) => Err(ApplyError::Poison(format!(
            "undecodable {}: {e}",
            event.event_type
        ))),
        Err(_) => Ok(None),
    }
}

async fn apply_repo(
    tx: &Transaction<'_>,
    tables: &Tables,
    event: &EventRecord,
) -> Result<(), ApplyError> {
    let repos = tables.name("repos");
    let row = tx
        .query_opt(
            &format!("SELECT last_sequence FROM {repos} WHERE repo = $1 FOR UPDATE"),
            &[&event.aggregate_id],
        )
        .await?;
    let last: Option<i64> = row.map(|r| r.get(0));
    if !guard(last, event)? {
        return Ok(());
    }
    let decoded = decode(event, &REPO_EVENTS, RepoEvent::event_type)?;
    match (decoded, last) {
        (Some(RepoEvent::RepoBound(b)), _) => {
            let budget = i32::try_from(b.budget_ms)
                .map_err(|_| ApplyError::Poison(format!("budget {} too large", b.budget_ms)))?;
            let sql = format!(
                "INSERT INTO {repos} (repo, policy_id, budget_ms, auto_release, bound_by, bound_at, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (repo) DO UPDATE SET policy_id = $2, budget_ms = $3, auto_release = $4,
                     bound_by = $5, bound_at = $6, last_sequence = $7"
            );
            let params: [&(dyn ToSql + Sync); 7] = [
                &event.aggregate_id,
                &b.policy_id,
                &budget,
                &b.auto_release,
                &b.bound_by,
                &b.bound_at,
                &event.sequence,
            ];
            tx.execute(&sql, &params).await?;
        }
        (_, None) => {
            return Err(ApplyError::Poison(format!(
                "{} before RepoBound",
                event.event_type
            )))
        }
        (Some(RepoEvent::PolicyTimedOut(_)), Some(_)) => {
            tx.execute(
                &format!("UPDATE {repos} SET timeouts = timeouts + 1, last_sequence = $2 WHERE repo = $1"),
                &[&event.aggregate_id, &event.sequence],
            )
            .await?;
        }
        (None, Some(_)) => {
            tx.execute(
                &format!("UPDATE {repos} SET last_sequence = $2 WHERE repo = $1"),
                &[&event.aggregate_id, &event.sequence],
            )
            .await?;
        }
    }
    Ok(())
}

async fn apply_artifact(
    tx: &Transaction<'_>,
    tables: &Tables,
    event: &EventRecord,
) -> Result<(), ApplyError> {
    let Some((repo, item_id)) = artifact::split_id(&event.aggregate_id) else {
        return Err(ApplyError::Poison(format!(
            "artifact id `{}` is not <repo>:<item>",
            event.aggregate_id
        )));
    };
    let artifacts = tables.name("artifacts");
    let cases = tables.name("quarantine_cases");
    let row = tx
        .query_opt(
            &format!("SELECT last_sequence FROM {artifacts} WHERE artifact_id = $1 FOR UPDATE"),
            &[&event.aggregate_id],
        )
        .await?;
    let last: Option<i64> = row.map(|r| r.get(0));
    if !guard(last, event)? {
        return Ok(());
    }
    let decoded = decode(event, &ARTIFACT_EVENTS, ArtifactEvent::event_type)?;
    match decoded {
        Some(ArtifactEvent::DecisionRecorded(d)) => {
            let version = i32::try_from(d.version)
                .map_err(|_| ApplyError::Poison(format!("version {} too large", d.version)))?;
            let sql = format!(
                "INSERT INTO {} (position, repo, item_id, action, decision, rule_id, reason,
                     policy_id, version, input_digest, digests, decided_by, decided_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (position) DO NOTHING",
                tables.name("decisions")
            );
            let params: [&(dyn ToSql + Sync); 13] = [
                &event.position,
                &repo,
                &item_id,
                &d.action.as_str(),
                &d.decision.as_str(),
                &d.rule_id,
                &d.reason,
                &d.policy_id,
                &version,
                &d.input_digest,
                &d.digests,
                &d.decided_by,
                &d.decided_at,
            ];
            tx.execute(&sql, &params).await?;
        }
        Some(ArtifactEvent::QuarantineOpened(o)) => {
            let version = i32::try_from(o.version)
                .map_err(|_| ApplyError::Poison(format!("version {} too large", o.version)))?;
            let sql = format!(
                "INSERT INTO {cases} (repo, item_id, status, policy_id, version, rule_id, reason,
                     attributes, opened_by, opened_at, decisions)
                 VALUES ($1, $2, 'quarantined', $3, $4, $5, $6, $7, $8, $9, 1)
                 ON CONFLICT (repo, item_id) DO NOTHING"
            );
            let params: [&(dyn ToSql + Sync); 9] = [
                &repo,
                &item_id,
                &o.policy_id,
                &version,
                &o.rule_id,
                &o.reason,
                &Json(&o.attributes),
                &o.opened_by,
                &o.opened_at,
            ];
            tx.execute(&sql, &params).await?;
        }
        Some(ArtifactEvent::QuarantineJoined(j)) => {
            tx.execute(
                &format!(
                    "UPDATE {cases} SET decisions = decisions + 1, attributes = $3
                      WHERE repo = $1 AND item_id = $2"
                ),
                &[&repo, &item_id, &Json(&j.attributes)],
            )
            .await?;
        }
        Some(ArtifactEvent::QuarantineReleased(r)) | Some(ArtifactEvent::QuarantineRejected(r)) => {
            let status = if event.event_type == "QuarantineReleased" {
                "released"
            } else {
                "rejected"
            };
            tx.execute(
                &format!(
                    "UPDATE {cases} SET status = $3, resolved_by = $4, resolved_at = $5,
                         resolution_reason = $6
                      WHERE repo = $1 AND item_id = $2"
                ),
                &[
                    &repo,
                    &item_id,
                    &status,
                    &r.resolved_by,
                    &r.resolved_at,
                    &r.reason,
                ],
            )
            .await?;
        }
        None => {}
    }
    let sql = format!(
        "INSERT INTO {artifacts} (artifact_id, repo, item_id, last_sequence) VALUES ($1, $2, $3, $4)
         ON CONFLICT (artifact_id) DO UPDATE SET last_sequence = $4"
    );
    tx.execute(
        &sql,
        &[&event.aggregate_id, &repo, &item_id, &event.sequence],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use serde_json::json;

    fn record(
        aggregate: &str,
        sequence: i64,
        event_type: &str,
        payload: serde_json::Value,
    ) -> EventRecord {
        EventRecord {
            position: 7,
            aggregate: aggregate.into(),
            aggregate_id: "npm:a-1".into(),
            sequence,
            event_type: event_type.into(),
            event_version: "1.0".into(),
            recorded_at: DateTime::from_timestamp(1_000, 0).unwrap(),
            payload,
            metadata: json!({}),
        }
    }

    #[test]
    fn the_guard_applies_the_next_event_only() {
        let r = |seq| record("artifact", seq, "X", json!({}));
        assert!(guard(None, &r(1)).unwrap());
        assert!(!guard(Some(3), &r(2)).unwrap());
        assert!(guard(Some(3), &r(4)).unwrap());
        assert!(matches!(
            guard(Some(3), &r(6)),
            Err(ApplyError::Gap { expected: 4, .. })
        ));
    }

    #[test]
    fn an_undecodable_known_event_is_poison_and_an_unknown_one_is_skipped() {
        let bad = record(
            "artifact",
            1,
            "QuarantineOpened",
            json!({"QuarantineOpened": {}}),
        );
        assert!(matches!(
            decode(&bad, &ARTIFACT_EVENTS, ArtifactEvent::event_type),
            Err(ApplyError::Poison(_))
        ));
        let unknown = record(
            "artifact",
            1,
            "ArtifactRenamed",
            json!({"ArtifactRenamed": {}}),
        );
        assert!(
            decode(&unknown, &ARTIFACT_EVENTS, ArtifactEvent::event_type)
                .unwrap()
                .is_none()
        );
    }
}
