//! The `policies` read model: one `policies` row per policy (name, attribute schema, latest and
//! active version) and one `policy_versions` row per drafted version (its rules and notes).
//!
//! Reads `<ns>.events.policy.>` ([`PolicyEvent`]s). Writes `policies` and `policy_versions`.
//! `policies.last_sequence` guards every change: an event at or below it is already applied,
//! the next one applies, one further ahead is a gap (retried until the missing event arrives).
//! Event types this model does not read only advance `last_sequence`, so a newer command side
//! never stalls it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gatehouse_events::policy::{
    self, PolicyConfigured, PolicyCreated, PolicyEvent, PolicyVersionDrafted,
};
use gatehouse_events::record::EventRecord;
use serde::Deserialize;
use tokio_postgres::types::Json;
use tokio_postgres::Transaction;

use crate::model::{ApplyError, Interest, ReadModel, Tables};

/// The policy catalog read model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Policies;

impl Policies {
    /// The model's name (checkpoint row, consumer, CLI).
    pub const NAME: &'static str = "policies";
}

/// The event types this model must understand; any other one is skipped.
const DECODED: [&str; 9] = [
    "PolicyCreated",
    "PolicyConfigured",
    "PolicyVersionDrafted",
    "RunPrepared",
    "RunSucceeded",
    "RunFailed",
    "RunCancelled",
    "RunResumed",
    "PolicyPromoted",
];

#[async_trait]
impl ReadModel for Policies {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["policies", "policy_versions", "runs"]
    }

    fn interest(&self) -> Interest {
        Interest::Aggregates(&[policy::AGGREGATE])
    }

    async fn apply(
        &self,
        tx: &Transaction<'_>,
        tables: &Tables,
        event: &EventRecord,
    ) -> Result<(), ApplyError> {
        if event.aggregate != policy::AGGREGATE {
            return Ok(());
        }
        let write = Write { tx, tables, event };
        let last_sequence = write.lock_policy().await?;
        match guard(last_sequence, event.sequence) {
            Guard::AlreadyApplied => return Ok(()),
            Guard::Gap { expected } => return Err(ApplyError::gap(event, expected)),
            Guard::Apply => {}
        }
        match (decode(event)?, last_sequence) {
            (Change::Created(created), None) => write.create(&created).await,
            (Change::Ignored, None) => Ok(()),
            (_, None) => Err(ApplyError::Poison(format!(
                "{} before PolicyCreated",
                event.event_type
            ))),
            (Change::Created(_), Some(_)) => Err(ApplyError::Poison("PolicyCreated twice".into())),
            (Change::Drafted(draft), Some(_)) => write.draft(&draft).await,
            (Change::Configured(configured), Some(_)) => {
                write
                    .update(
                        "require_second_approver = $3, updated_at = $4",
                        &configured.require_second_approver,
                        &configured.configured_at,
                    )
                    .await
            }
            (
                Change::Promoted {
                    version,
                    at,
                    event: promoted,
                },
                Some(_),
            ) => {
                crate::run::apply(tx, tables, event, &promoted).await?;
                write.promote(version, at).await
            }
            (Change::Run(run_event), Some(_)) => {
                crate::run::apply(tx, tables, event, &run_event).await?;
                write.advance().await
            }
            (Change::Ignored, Some(_)) => write.advance().await,
        }
    }
}

/// What a policy event does to the read model.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    Created(PolicyCreated),
    Configured(PolicyConfigured),
    Drafted(Draft),
    Promoted {
        version: i32,
        at: DateTime<Utc>,
        event: PolicyEvent,
    },
    /// A run event: a `runs` row changes.
    Run(PolicyEvent),
    /// A type this model does not read: only `last_sequence` advances.
    Ignored,
}

/// A drafted version with its numbers checked to fit the table's columns.
#[derive(Debug, Clone, PartialEq)]
struct Draft {
    version: i32,
    restored_from: Option<i32>,
    rule_count: i32,
    event: PolicyVersionDrafted,
}

fn decode(event: &EventRecord) -> Result<Change, ApplyError> {
    match PolicyEvent::deserialize(&event.payload) {
        Ok(decoded) if decoded.event_type() != event.event_type => {
            Err(ApplyError::Poison(format!(
                "a {} payload stored as {}",
                decoded.event_type(),
                event.event_type
            )))
        }
        Ok(PolicyEvent::PolicyCreated(created)) => Ok(Change::Created(created)),
        Ok(PolicyEvent::PolicyConfigured(configured)) => Ok(Change::Configured(configured)),
        Ok(PolicyEvent::PolicyVersionDrafted(drafted)) => Ok(Change::Drafted(Draft {
            version: column_int(drafted.version, "version")?,
            restored_from: drafted
                .restored_from
                .map(|v| column_int(v, "restored_from"))
                .transpose()?,
            rule_count: column_int(drafted.rules.rules.len(), "rule count")?,
            event: drafted,
        })),
        Ok(PolicyEvent::PolicyPromoted(p)) => Ok(Change::Promoted {
            version: column_int(p.version, "version")?,
            at: p.promoted_at,
            event: PolicyEvent::PolicyPromoted(p),
        }),
        Ok(run_event) => Ok(Change::Run(run_event)),
        Err(e) if DECODED.contains(&event.event_type.as_str()) => Err(ApplyError::Poison(format!(
            "undecodable {}: {e}",
            event.event_type
        ))),
        Err(_) => Ok(Change::Ignored),
    }
}

fn column_int<T: TryInto<i32> + Copy + std::fmt::Display>(
    value: T,
    what: &str,
) -> Result<i32, ApplyError> {
    value
        .try_into()
        .map_err(|_| ApplyError::Poison(format!("{what} {value} does not fit the read model")))
}

/// Where an event stands against its policy's `last_sequence`.
#[derive(Debug, PartialEq, Eq)]
enum Guard {
    Apply,
    AlreadyApplied,
    Gap { expected: i64 },
}

/// `last_sequence` is `None` when the policy has no row yet.
fn guard(last_sequence: Option<i64>, sequence: i64) -> Guard {
    let expected = last_sequence.unwrap_or(0) + 1;
    match sequence.cmp(&expected) {
        std::cmp::Ordering::Less => Guard::AlreadyApplied,
        std::cmp::Ordering::Equal => Guard::Apply,
        std::cmp::Ordering::Greater => Guard::Gap { expected },
    }
}

/// The statements of one event; each repeats the sequence guard in its `WHERE`.
struct Write<'a> {
    tx: &'a Transaction<'a>,
    tables: &'a Tables,
    event: &'a EventRecord,
}

impl Write<'_> {
    fn policies(&self) -> &str {
        self.tables.name("policies")
    }

    /// The policy's `last_sequence`, its row locked until the transaction ends.
    async fn lock_policy(&self) -> Result<Option<i64>, ApplyError> {
        let sql = format!(
            "SELECT last_sequence FROM {} WHERE policy_id = $1 FOR UPDATE",
            self.policies()
        );
        let row = self.tx.query_opt(&sql, &[&self.event.aggregate_id]).await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn create(&self, e: &PolicyCreated) -> Result<(), ApplyError> {
        let sql = format!(
            "INSERT INTO {} (policy_id, name, description, attributes, latest_version,
                 active_version, created_by, created_at, updated_at, last_sequence,
                 require_second_approver)
             VALUES ($1, $2, $3, $4, 0, NULL, $5, $6, $6, $7, $8)
             ON CONFLICT (policy_id) DO NOTHING",
            self.policies()
        );
        let ev = self.event;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &ev.aggregate_id,
            &e.name,
            &e.description,
            &Json(&e.attributes),
            &e.created_by,
            &e.created_at,
            &ev.sequence,
            &e.require_second_approver,
        ];
        self.tx.execute(&sql, &params).await?;
        Ok(())
    }

    async fn draft(&self, d: &Draft) -> Result<(), ApplyError> {
        let sql = format!(
            "INSERT INTO {} (policy_id, version, rules, notes, author, restored_from, rules_hash,
                 rule_count, drafted_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (policy_id, version) DO NOTHING",
            self.tables.name("policy_versions")
        );
        let e = &d.event;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
            &self.event.aggregate_id,
            &d.version,
            &Json(&e.rules),
            &e.notes,
            &e.author,
            &d.restored_from,
            &e.rules_hash,
            &d.rule_count,
            &e.drafted_at,
        ];
        self.tx.execute(&sql, &params).await?;
        self.update(
            "latest_version = $3, updated_at = $4",
            &d.version,
            &e.drafted_at,
        )
        .await
    }

    async fn promote(&self, version: i32, at: DateTime<Utc>) -> Result<(), ApplyError> {
        self.update("active_version = $3, updated_at = $4", &version, &at)
            .await
    }

    async fn advance(&self) -> Result<(), ApplyError> {
        let sql = format!(
            "UPDATE {} SET last_sequence = $2 WHERE policy_id = $1 AND last_sequence = $2::bigint - 1",
            self.policies()
        );
        self.tx
            .execute(&sql, &[&self.event.aggregate_id, &self.event.sequence])
            .await?;
        Ok(())
    }

    /// Sets `assignments` (using `$3` and `$4`) and moves `last_sequence` to this event's.
    async fn update(
        &self,
        assignments: &str,
        p3: &(dyn tokio_postgres::types::ToSql + Sync),
        p4: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> Result<(), ApplyError> {
        let sql = format!(
            "UPDATE {} SET {assignments}, last_sequence = $2
             WHERE policy_id = $1 AND last_sequence = $2::bigint - 1",
            self.policies()
        );
        self.tx
            .execute(
                &sql,
                &[&self.event.aggregate_id, &self.event.sequence, p3, p4],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use serde_json::Value;

    fn record(sequence: i64, event_type: &str, payload: Value) -> EventRecord {
        EventRecord {
            position: 10,
            aggregate: "policy".into(),
            aggregate_id: "p1".into(),
            sequence,
            event_type: event_type.into(),
            event_version: "1.0".into(),
            recorded_at: DateTime::from_timestamp(1_000, 0).unwrap(),
            payload,
            metadata: json!({}),
        }
    }

    fn created() -> Value {
        json!({"PolicyCreated": {"policy_id": "p1", "name": "P", "description": "",
            "attributes": {}, "created_by": "alice", "created_at": "1970-01-01T00:00:00Z"}})
    }

    fn drafted(version: u64) -> Value {
        json!({"PolicyVersionDrafted": {"version": version, "notes": "n", "author": "bob",
            "rules_hash": "h", "drafted_at": "1970-01-02T00:00:00Z",
            "rules": {"rules": [], "default_decision": "deny", "score": "0"}}})
    }

    #[test]
    fn the_first_event_of_a_policy_without_a_row_applies() {
        assert_eq!(guard(None, 1), Guard::Apply);
    }

    #[test]
    fn the_event_after_the_last_sequence_applies() {
        assert_eq!(guard(Some(4), 5), Guard::Apply);
    }

    #[test]
    fn an_event_at_or_below_the_last_sequence_is_already_applied() {
        assert_eq!(guard(Some(4), 4), Guard::AlreadyApplied);
        assert_eq!(guard(Some(4), 2), Guard::AlreadyApplied);
    }

    #[test]
    fn an_event_beyond_the_next_sequence_is_a_gap() {
        assert_eq!(guard(Some(4), 6), Guard::Gap { expected: 5 });
        assert_eq!(guard(None, 2), Guard::Gap { expected: 1 });
    }

    #[test]
    fn a_created_payload_decodes_into_the_contract_type() {
        let change = decode(&record(1, "PolicyCreated", created())).unwrap();
        assert!(matches!(change, Change::Created(c) if c.name == "P" && c.created_by == "alice"));
    }

    #[test]
    fn a_drafted_payload_decodes_with_its_rule_count() {
        let change = decode(&record(2, "PolicyVersionDrafted", drafted(3))).unwrap();
        assert!(matches!(change, Change::Drafted(d) if d.version == 3 && d.rule_count == 0));
    }

    #[test]
    fn an_undecodable_payload_of_a_known_type_is_poison() {
        let err = decode(&record(1, "PolicyCreated", json!({"PolicyCreated": {}}))).unwrap_err();
        assert!(matches!(err, ApplyError::Poison(_)));
    }

    #[test]
    fn a_payload_stored_under_another_type_is_poison() {
        let err = decode(&record(1, "PolicyVersionDrafted", created())).unwrap_err();
        assert!(matches!(err, ApplyError::Poison(_)));
    }

    #[test]
    fn a_version_beyond_the_column_range_is_poison() {
        let err = decode(&record(2, "PolicyVersionDrafted", drafted(1 << 31))).unwrap_err();
        assert!(matches!(err, ApplyError::Poison(_)));
    }

    #[test]
    fn an_unknown_event_type_is_ignored() {
        let change = decode(&record(3, "PolicyRenamed", json!({"PolicyRenamed": {}}))).unwrap();
        assert_eq!(change, Change::Ignored);
    }

    #[test]
    fn a_promotion_without_a_version_is_poison() {
        let err = decode(&record(4, "PolicyPromoted", json!({"PolicyPromoted": {}}))).unwrap_err();
        assert!(matches!(err, ApplyError::Poison(_)));
    }
}
