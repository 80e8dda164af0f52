//! The search indexer: keeps `search_items`, the publish-ready items of every repo (their
//! latest decision allows them, or their case was released, and nothing later denied or
//! quarantined them), for `catalog.search`.
//!
//! A consumer of the `artifact` events on the events stream (durable `<ns>_indexer`), one event
//! at a time, on the consumer runtime. It is downstream of everything: no decision, case or read
//! waits for it or reads what it writes, so it may fail or stop without affecting anyone. For
//! each event it folds the item's events from the event store up to the event's sequence
//! (attributes: the last quarantine decision's, else the catalog item's) and writes the item's
//! row, or removes it, with the item's guard (`search_index_items.last_sequence`) in one
//! transaction: an event at or below the guard changes nothing, so a redelivery or a replay is
//! harmless.
//!
//! Unlike Gatehouse's own consumers (which wait out an outage without limit), its retries are
//! bounded: a failed index write is NAK'd with a growing delay (`retry_delay`, doubling, at most
//! `max_retry_delay`) and, on delivery `max_deliver`, dead-lettered with the reason on
//! `<ns>.dlq.<ns>_indexer` and terminated; the indexer moves on. Every failed attempt and dead
//! letter is counted in `search_index_state` for `catalog.index_status`.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::Message;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use gatehouse_events::artifact::{self, ArtifactEvent};
use gatehouse_events::quarantine::CaseStatus;
use gatehouse_events::record::EventRecord;
use gatehouse_events::rules::Decision;
use gatehouse_events::subjects;
use gatehouse_projections::consumer::{self, ConsumerSettings, Durable, Handler, Health, Outcome};
use gatehouse_projections::dead_letter;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::decision::evaluate::{ACTION_ATTRIBUTE, REPO_ATTRIBUTE};
use crate::settings::{Settings, SettingsError};
use crate::{broker, db, RoleError};

/// The consumer's name below the namespace: `<ns>_indexer`.
pub const CONSUMER: &str = "indexer";

/// How the indexer retries.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexerSettings {
    /// `GATEHOUSE_INDEXER_MAX_DELIVER`: deliveries of one event before it is dead-lettered
    /// (default 5, at least 1).
    pub max_deliver: i64,
    /// `GATEHOUSE_INDEXER_RETRY_MS`: the NAK delay after the first failure; it doubles with each
    /// delivery (default 1000 ms).
    pub retry_delay: Duration,
    /// `GATEHOUSE_INDEXER_MAX_RETRY_MS`: the longest NAK delay (default 30000 ms).
    pub max_retry_delay: Duration,
}

impl Default for IndexerSettings {
    fn default() -> Self {
        IndexerSettings {
            max_deliver: 5,
            retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(30),
        }
    }
}

impl IndexerSettings {
    /// The settings from the environment (the defaults for what is not set).
    pub fn from_env() -> Result<Self, SettingsError> {
        let number = |k: &'static str, default: u64| -> Result<u64, SettingsError> {
            match std::env::var(k).ok().filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| SettingsError::Invalid(k, v)),
            }
        };
        let d = IndexerSettings::default();
        let max_deliver = number("GATEHOUSE_INDEXER_MAX_DELIVER", d.max_deliver as u64)?;
        if max_deliver == 0 || max_deliver > 1_000 {
            return Err(SettingsError::Invalid(
                "GATEHOUSE_INDEXER_MAX_DELIVER",
                max_deliver.to_string(),
            ));
        }
        Ok(IndexerSettings {
            max_deliver: max_deliver as i64,
            retry_delay: Duration::from_millis(number(
                "GATEHOUSE_INDEXER_RETRY_MS",
                d.retry_delay.as_millis() as u64,
            )?),
            max_retry_delay: Duration::from_millis(number(
                "GATEHOUSE_INDEXER_MAX_RETRY_MS",
                d.max_retry_delay.as_millis() as u64,
            )?),
        })
    }
}

/// The indexer's durable consumer of every artifact event, one at a time.
pub fn durable(ns: &str, indexer: &IndexerSettings) -> Durable {
    Durable {
        stream: subjects::events_stream(ns),
        config: pull::Config {
            durable_name: Some(subjects::projector_consumer(ns, CONSUMER)),
            description: Some("Gatehouse: the search index of publish-ready items".into()),
            filter_subject: subjects::aggregate_events(ns, artifact::AGGREGATE),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            // In order: an item's events are folded one after the other.
            max_ack_pending: 1,
            // Bounded: the handler dead-letters on the last delivery; the server stops there
            // too, should that fail.
            max_deliver: indexer.max_deliver,
            ack_wait: consumer::DEFAULT_ACK_WAIT,
            ..Default::default()
        },
    }
}

/// Runs the indexer with the settings of the environment until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    let indexer = IndexerSettings::from_env().map_err(RoleError::from)?;
    run_with(settings, indexer, Health::default(), shutdown).await
}

/// Runs the indexer until `shutdown`, reporting failures it retries in `health`.
pub async fn run_with(
    settings: Settings,
    indexer: IndexerSettings,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), RoleError> {
    let pg = db::pool(&settings.database_url, 2)?;
    let nats = broker::connect(&settings, CONSUMER).await?;
    let js = broker::jetstream(&nats);
    broker::ensure_events_stream(&js, &settings).await?;
    let ns = settings.namespace.clone();
    dead_letter::ensure_stream(&js, &ns)
        .await
        .map_err(RoleError::broker("create the dead-letter stream"))?;
    let durable = durable(&ns, &indexer);
    let mut config = ConsumerSettings::new(durable.name(), ns.clone());
    config.retry_delay = indexer.retry_delay;
    config.max_retry_delay = indexer.max_retry_delay;
    config.ack_wait = durable.config.ack_wait;
    let consumer = js
        .get_stream(&durable.stream)
        .await
        .map_err(RoleError::broker("look up the events stream"))?
        .create_consumer(durable.config)
        .await
        .map_err(RoleError::broker("create the indexer's consumer"))?;
    let handler = Indexer {
        pg,
        max_deliver: indexer.max_deliver,
    };
    consumer::run(consumer, js, config, health, handler, shutdown).await;
    let _ = nats.drain().await;
    Ok(())
}

struct Indexer {
    pg: Pool,
    max_deliver: i64,
}

#[async_trait]
impl Handler for Indexer {
    async fn handle(&self, messages: &[Message]) -> Outcome {
        let Some(message) = messages.first() else {
            return Outcome::Ack;
        };
        let record: EventRecord = match serde_json::from_slice(&message.payload) {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("undecodable event record: {e}");
                self.record_dead_letter(&reason).await;
                return Outcome::Poison(reason);
            }
        };
        match self.index(&record).await {
            Ok(()) => Outcome::Ack,
            Err(e) => {
                let delivered = consumer::delivered(message);
                let reason = format!(
                    "indexing {} sequence {} failed (delivery {delivered} of {}): {}",
                    record.aggregate_id,
                    record.sequence,
                    self.max_deliver,
                    describe(e.as_ref())
                );
                tracing::warn!(reason, "an index write failed");
                self.record_failure(&record, delivered, &reason).await;
                if delivered >= self.max_deliver {
                    self.record_dead_letter(&reason).await;
                    self.record_done(record.position).await;
                    Outcome::Poison(reason)
                } else {
                    Outcome::Transient(reason)
                }
            }
        }
    }
}

/// Why an item is publish-ready, as the search index says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyBy {
    Allow,
    Released,
}

impl ReadyBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadyBy::Allow => "allow",
            ReadyBy::Released => "released",
        }
    }
}

/// An item as its events leave it, for the index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Folded {
    /// `Some` when publish-ready.
    pub ready: Option<ReadyBy>,
    pub case: Option<CaseStatus>,
    /// What its last decision evaluated, if recorded.
    pub attributes: Option<Value>,
    /// When what made it ready (or not) happened.
    pub changed_at: Option<DateTime<Utc>>,
}

/// Folds an item's events, in sequence order: an allow makes it ready unless its case is open
/// or rejected; a release makes it ready; a deny, a quarantine or a rejection makes it not.
/// The attributes are the last decision's (or quarantine's) that recorded them.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a ArtifactEvent>) -> Folded {
    let mut f = Folded::default();
    for event in events {
        match event {
            ArtifactEvent::DecisionRecorded(d) => {
                let blocked = f.case.is_some_and(CaseStatus::blocks_reads);
                f.ready = (d.decision == Decision::Allow && !blocked).then_some(ReadyBy::Allow);
                f.changed_at = Some(d.decided_at);
                if let Some(a) = &d.attributes {
                    f.attributes = Some(a.clone());
                }
            }
            ArtifactEvent::QuarantineOpened(o) => {
                f.case = Some(CaseStatus::Quarantined);
                f.ready = None;
                f.attributes = Some(o.attributes.clone());
                f.changed_at = Some(o.opened_at);
            }
            ArtifactEvent::QuarantineJoined(j) => {
                f.case = Some(CaseStatus::Quarantined);
                f.ready = None;
                f.attributes = Some(j.attributes.clone());
                f.changed_at = Some(j.joined_at);
            }
            ArtifactEvent::QuarantineReleased(r) => {
                f.case = Some(CaseStatus::Released);
                f.ready = Some(ReadyBy::Released);
                f.changed_at = Some(r.resolved_at);
            }
            ArtifactEvent::QuarantineRejected(r) => {
                f.case = Some(CaseStatus::Rejected);
                f.ready = None;
                f.changed_at = Some(r.resolved_at);
            }
        }
    }
    f
}

/// The attributes the index keeps: an object without the `action` and `repo` an evaluation
/// adds.
fn item_attributes(attributes: Option<Value>) -> Value {
    let mut map = match attributes {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    map.remove(ACTION_ATTRIBUTE);
    map.remove(REPO_ATTRIBUTE);
    Value::Object(map)
}

/// The words of an item's id and repo: the id whole and split at `:`, `-`, `_` (so
/// `left-pad:1.0.0` is found by `left-pad`, `pad` or `1.0.0`).
pub fn id_words(repo: &str, item_id: &str) -> String {
    let split: String = item_id
        .chars()
        .map(|c| if matches!(c, ':' | '-' | '_') { ' ' } else { c })
        .collect();
    format!("{item_id} {split} {repo}")
}

/// An error with its causes (a Postgres error's own `Display` is only `db error`).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why an index write failed.
pub type IndexError = Box<dyn std::error::Error + Send + Sync>;

/// Brings the index entry of artifact `artifact_id` up to its event `sequence` (at global
/// `position`, recorded at `recorded_at`) in one transaction: nothing when its guard is there
/// already. Also what `gatehouse indexer --reindex` runs for every artifact.
pub async fn index_item(
    pg: &Pool,
    artifact_id: &str,
    sequence: i64,
    position: i64,
    recorded_at: DateTime<Utc>,
) -> Result<(), IndexError> {
    let Some((repo, item_id)) = artifact::split_id(artifact_id) else {
        return Err(format!("artifact id `{}` is not <repo>:<item>", artifact_id).into());
    };
    let mut client = pg.get().await?;
    let tx = client.transaction().await?;
    let last: Option<i64> = tx
        .query_opt(
            "SELECT last_sequence FROM search_index_items WHERE artifact_id = $1 FOR UPDATE",
            &[&artifact_id],
        )
        .await?
        .map(|r| r.get(0));
    if last.is_none_or(|last| last < sequence) {
        let rows = tx
            .query(
                "SELECT payload FROM events
                  WHERE aggregate_type = 'artifact' AND aggregate_id = $1 AND sequence <= $2
                  ORDER BY sequence",
                &[&artifact_id, &sequence],
            )
            .await?;
        let events: Vec<ArtifactEvent> = rows
            .iter()
            .filter_map(|r| serde_json::from_value(r.get::<_, Value>(0)).ok())
            .collect();
        let folded = fold(&events);
        match folded.ready {
            Some(ready_by) => {
                let attributes = match folded.attributes {
                    Some(a) => Some(a),
                    None => tx
                        .query_opt(
                            "SELECT attributes FROM catalog_items
                              WHERE item_id = $1 AND status = 'ready' AND NOT deleted",
                            &[&item_id],
                        )
                        .await?
                        .map(|r| r.get::<_, Value>(0)),
                };
                let attributes = item_attributes(attributes);
                let changed_at = folded.changed_at.unwrap_or(recorded_at);
                tx.execute(
                    "INSERT INTO search_items (repo, item_id, ready_by, attributes, document,
                         changed_at, indexed_at)
                     VALUES ($1, $2, $3, $4,
                         setweight(to_tsvector('simple', $5), 'A')
                           || setweight(jsonb_to_tsvector('simple', $4, '[\"string\", \"numeric\", \"boolean\"]'), 'B'),
                         $6, now())
                     ON CONFLICT (repo, item_id) DO UPDATE SET ready_by = $3, attributes = $4,
                         document = EXCLUDED.document, changed_at = $6, indexed_at = now()",
                    &[
                        &repo,
                        &item_id,
                        &ready_by.as_str(),
                        &attributes,
                        &id_words(repo, item_id),
                        &changed_at,
                    ],
                )
                .await?;
            }
            None => {
                tx.execute(
                    "DELETE FROM search_items WHERE repo = $1 AND item_id = $2",
                    &[&repo, &item_id],
                )
                .await?;
            }
        }
        tx.execute(
            "INSERT INTO search_index_items (artifact_id, last_sequence, position, indexed_at)
             VALUES ($1, $2, $3, now())
             ON CONFLICT (artifact_id) DO UPDATE SET last_sequence = $2, position = $3,
                 indexed_at = now()",
            &[&artifact_id, &sequence, &position],
        )
        .await?;
    }
    tx.execute(
        "UPDATE search_index_state SET last_position = greatest(last_position, $1),
             last_indexed_at = now(), retrying_artifact = NULL, retrying_deliveries = NULL",
        &[&position],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

impl Indexer {
    /// Brings the item of `record` up to its sequence.
    async fn index(&self, record: &EventRecord) -> Result<(), IndexError> {
        if record.aggregate != artifact::AGGREGATE {
            self.record_done(record.position).await;
            return Ok(());
        }
        index_item(
            &self.pg,
            &record.aggregate_id,
            record.sequence,
            record.position,
            record.recorded_at,
        )
        .await
    }

    /// Moves the progress past `position` (an event it will not index); best effort.
    async fn record_done(&self, position: i64) {
        self.best_effort(
            "UPDATE search_index_state SET last_position = greatest(last_position, $1),
                 last_indexed_at = now(), retrying_artifact = NULL, retrying_deliveries = NULL",
            &[&position],
        )
        .await
    }

    /// Counts a failed attempt; best effort (the database may be what failed).
    async fn record_failure(&self, record: &EventRecord, delivered: i64, reason: &str) {
        let delivered = i32::try_from(delivered).unwrap_or(i32::MAX);
        self.best_effort(
            "UPDATE search_index_state SET failed_attempts = failed_attempts + 1,
                 last_failure = $1, last_failure_at = now(), retrying_artifact = $2,
                 retrying_deliveries = $3",
            &[&reason, &record.aggregate_id, &delivered],
        )
        .await
    }

    /// Counts a dead letter; best effort.
    async fn record_dead_letter(&self, reason: &str) {
        self.best_effort(
            "UPDATE search_index_state SET dead_letters = dead_letters + 1,
                 last_dead_letter_reason = $1, last_dead_letter_at = now()",
            &[&reason],
        )
        .await
    }

    async fn best_effort(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) {
        let result = match self.pg.get().await {
            Ok(client) => client
                .execute(sql, params)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!(error.message = %e, "could not record the indexer's state");
        }
    }
}

/// What `gatehouse indexer --reindex` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reindexed {
    pub artifacts: u64,
    pub ready: u64,
}

/// Indexes every artifact again from the event store, without NATS: each item up to its last
/// event (those already there are skipped by their guard). With `from_scratch`, the index and
/// its guards are emptied first. Safe beside a running indexer (the guards serialize them).
pub async fn reindex(pg: &Pool, from_scratch: bool) -> Result<Reindexed, IndexError> {
    let client = pg.get().await?;
    if from_scratch {
        client
            .batch_execute("TRUNCATE search_items, search_index_items")
            .await?;
    }
    let rows = client
        .query(
            "SELECT DISTINCT ON (aggregate_id) aggregate_id, sequence, global_position, recorded_at
               FROM events WHERE aggregate_type = 'artifact'
              ORDER BY aggregate_id, sequence DESC",
            &[],
        )
        .await?;
    drop(client);
    for row in &rows {
        let artifact_id: String = row.get(0);
        index_item(pg, &artifact_id, row.get(1), row.get(2), row.get(3)).await?;
    }
    let ready: i64 = pg
        .get()
        .await?
        .query_one("SELECT count(*) FROM search_items", &[])
        .await?
        .get(0);
    Ok(Reindexed {
        artifacts: rows.len() as u64,
        ready: ready.max(0) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_events::artifact::{CaseResolved, DecisionRecorded, QuarantineOpened};
    use gatehouse_events::decision::Action;

    fn decided(decision: Decision) -> ArtifactEvent {
        ArtifactEvent::DecisionRecorded(DecisionRecorded {
            repo: "npm".into(),
            item_id: "a".into(),
            action: Action::Publish,
            decision,
            rule_id: None,
            reason: "r".into(),
            policy_id: "p".into(),
            version: 1,
            input_digest: "sha256:00".into(),
            digests: vec![],
            decided_by: "svc".into(),
            decided_at: Utc::now(),
            attributes: None,
        })
    }

    fn opened() -> ArtifactEvent {
        ArtifactEvent::QuarantineOpened(QuarantineOpened {
            policy_id: "p".into(),
            version: 1,
            rule_id: None,
            reason: "r".into(),
            attributes: serde_json::json!({"kind": "lib", "action": "publish", "repo": "npm"}),
            opened_by: "svc".into(),
            opened_at: Utc::now(),
        })
    }

    fn resolved() -> CaseResolved {
        CaseResolved {
            reason: "ok".into(),
            resolved_by: "alice".into(),
            resolved_at: Utc::now(),
        }
    }

    #[test]
    fn an_allow_is_ready_a_deny_or_quarantine_is_not() {
        assert_eq!(
            fold(&[decided(Decision::Allow)]).ready,
            Some(ReadyBy::Allow)
        );
        let later_deny = [decided(Decision::Allow), decided(Decision::Deny)];
        assert_eq!(fold(&later_deny).ready, None);
        let quarantined = [decided(Decision::Quarantine), opened()];
        assert_eq!(fold(&quarantined).ready, None);
    }

    #[test]
    fn a_release_is_ready_a_rejection_is_not_and_an_open_case_blocks_an_allow() {
        let released = [
            decided(Decision::Quarantine),
            opened(),
            ArtifactEvent::QuarantineReleased(resolved()),
        ];
        let f = fold(&released);
        assert_eq!(f.ready, Some(ReadyBy::Released));
        assert_eq!(f.case, Some(CaseStatus::Released));
        let rejected = [
            decided(Decision::Quarantine),
            opened(),
            ArtifactEvent::QuarantineRejected(resolved()),
        ];
        assert_eq!(fold(&rejected).ready, None);
        let open_then_allow = [
            decided(Decision::Quarantine),
            opened(),
            decided(Decision::Allow),
        ];
        assert_eq!(fold(&open_then_allow).ready, None);
        let released_then_deny = [
            decided(Decision::Quarantine),
            opened(),
            ArtifactEvent::QuarantineReleased(resolved()),
            decided(Decision::Deny),
        ];
        assert_eq!(fold(&released_then_deny).ready, None);
    }

    #[test]
    fn the_index_keeps_the_items_attributes_without_action_and_repo() {
        let f = fold(&[opened()]);
        assert_eq!(
            item_attributes(f.attributes),
            serde_json::json!({"kind": "lib"})
        );
        assert_eq!(item_attributes(None), serde_json::json!({}));
    }

    #[test]
    fn an_item_id_is_found_whole_and_by_its_parts() {
        assert_eq!(
            id_words("npm", "left-pad:1.0.0"),
            "left-pad:1.0.0 left pad 1.0.0 npm"
        );
    }
}
