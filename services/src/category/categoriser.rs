//! The categoriser: keeps `unit_categories` current.
//!
//! Two durable consumers on the consumer runtime: `<ns>_categoriser` on the catalog stream
//! (each change's unit categorised by the active rules, the last change per unit of a batch
//! winning, written guarded by the change's stream sequence; a delete removes the row) and
//! `<ns>_categoriser_rules` on `<ns>.events.category.>` (an activation recomputes every unit:
//! those in `unit_categories` from the attributes kept there, guarded by the rules version,
//! and catalog items without a row from `catalog_items`). Both write under one transaction-level
//! advisory lock and read the active rules inside it, from `events`, so a batch that raced an
//! activation is rewritten by the recompute that follows it, never left on the old version.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::Message;
use async_trait::async_trait;
use deadpool_postgres::{Pool, Transaction};
use gatehouse_events::category::{CategoryEvent, RulesState, AGGREGATE, RULES_ID};
use gatehouse_events::subjects;
use gatehouse_projections::catalog::read_change;
use gatehouse_projections::consumer::{self, ConsumerSettings, Durable, Handler, Health, Outcome};
use gatehouse_projections::dead_letter;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::rules::CompiledRules;
use crate::settings::Settings;
use crate::{broker, RoleError};

/// The advisory lock both consumers write under.
const LOCK: i64 = 0x0067_6174_6563_6174; // "gatecat"
/// Units recomputed per statement after an activation.
const PAGE: i64 = 1_000;

/// The categoriser's two durable consumers: the catalog's changes, then the rules' events.
pub fn durables(ns: &str) -> [Durable; 2] {
    [
        (
            "categoriser",
            subjects::catalog_stream(ns),
            subjects::all_catalog_items(ns),
        ),
        (
            "categoriser_rules",
            subjects::events_stream(ns),
            subjects::aggregate_events(ns, AGGREGATE),
        ),
    ]
    .map(|(suffix, stream, filter)| Durable {
        stream,
        config: pull::Config {
            durable_name: Some(subjects::projector_consumer(ns, suffix)),
            filter_subject: filter,
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            max_deliver: consumer::UNLIMITED_DELIVERIES,
            ack_wait: consumer::DEFAULT_ACK_WAIT,
            ..Default::default()
        },
    })
}

/// Runs the categoriser until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    let nats = broker::connect(&settings, "categoriser").await?;
    let js = broker::jetstream(&nats);
    broker::ensure_catalog_stream(&js, &settings).await?;
    broker::ensure_events_stream(&js, &settings).await?;
    let ns = settings.namespace.clone();
    dead_letter::ensure_stream(&js, &ns)
        .await
        .map_err(RoleError::broker("create the dead-letter stream"))?;
    let pg = crate::db::pool(&settings.database_url, settings.db_pool_size.clamp(1, 4))?;
    let shared = Arc::new(Shared {
        pg,
        compiled: Mutex::new(None),
    });
    let mut consumers = Vec::new();
    for durable in durables(&ns) {
        let mut config = ConsumerSettings::new(durable.name(), ns.clone());
        config.ack_wait = durable.config.ack_wait;
        let consumer = js
            .get_stream(&durable.stream)
            .await
            .map_err(RoleError::broker("look up a stream"))?
            .create_consumer(durable.config)
            .await
            .map_err(RoleError::broker("create the categoriser's consumer"))?;
        consumers.push((consumer, config));
    }
    let (rules_consumer, rules_config) = consumers.pop().expect("two consumers");
    let (catalog_consumer, catalog_config) = consumers.pop().expect("two consumers");
    tokio::join!(
        consumer::run(
            catalog_consumer,
            js.clone(),
            catalog_config,
            Health::default(),
            Changes(Arc::clone(&shared)),
            shutdown.clone(),
        ),
        consumer::run(
            rules_consumer,
            js,
            rules_config,
            Health::default(),
            Activations(shared),
            shutdown,
        ),
    );
    let _ = nats.drain().await;
    Ok(())
}

struct Shared {
    pg: Pool,
    /// The last version compiled, kept while it is the active one.
    compiled: Mutex<Option<Arc<CompiledRules>>>,
}

fn db_failure(doing: &str, e: &tokio_postgres::Error) -> Outcome {
    match crate::store::failure(e) {
        crate::store::Failure::Unavailable => Outcome::Transient(format!("{doing}: {e}")),
        _ => Outcome::Poison(format!("{doing}: {e}")),
    }
}

/// `sha256:` + SHA-256 of the attributes' JSON text.
pub fn digest(attributes: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(attributes.as_bytes()))
    )
}

impl Shared {
    /// Locks the categoriser's writes and reads the active rules, inside `tx`.
    async fn lock_and_load(
        &self,
        tx: &Transaction<'_>,
    ) -> Result<Option<Arc<CompiledRules>>, Outcome> {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .await
            .map_err(|e| db_failure("lock", &e))?;
        let rows = tx
            .query(
                "SELECT payload FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
                 ORDER BY sequence",
                &[&AGGREGATE, &RULES_ID],
            )
            .await
            .map_err(|e| db_failure("read the categorisation rules", &e))?;
        let mut state = RulesState::default();
        for row in rows {
            let payload: Value = row.get(0);
            let event: CategoryEvent = serde_json::from_value(payload)
                .map_err(|e| Outcome::Poison(format!("undecodable category event: {e}")))?;
            state.apply(&event);
        }
        let Some(active) = state.active_version() else {
            return Ok(None);
        };
        let mut kept = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(compiled) = kept.as_ref().filter(|c| c.version == active.version) {
            return Ok(Some(Arc::clone(compiled)));
        }
        let compiled = CompiledRules::compile(active.version, &active.document, "document")
            .map(Arc::new)
            .map_err(|p| {
                Outcome::Poison(format!(
                    "active rules do not compile: {}: {}",
                    p.field, p.message
                ))
            })?;
        *kept = Some(Arc::clone(&compiled));
        Ok(Some(compiled))
    }
}

/// Writes one unit's category; `guard` is the SQL condition under which a row is replaced.
async fn upsert(
    tx: &Transaction<'_>,
    rules: &CompiledRules,
    unit: &str,
    attributes: &str,
    stream_seq: i64,
    guard: &str,
) -> Result<(), Outcome> {
    let json: Value = serde_json::from_str(attributes)
        .map_err(|e| Outcome::Poison(format!("attributes are not JSON: {e}")))?;
    let c = rules.categorise(&json);
    let sql = format!(
        "INSERT INTO unit_categories AS u (unit, category, priority, rules_version, rule, \
             attributes, attributes_digest, stream_seq, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8, now()) \
         ON CONFLICT (unit) DO UPDATE SET category = EXCLUDED.category, \
             priority = EXCLUDED.priority, rules_version = EXCLUDED.rules_version, \
             rule = EXCLUDED.rule, attributes = EXCLUDED.attributes, \
             attributes_digest = EXCLUDED.attributes_digest, stream_seq = EXCLUDED.stream_seq, \
             updated_at = now() \
         WHERE {guard}"
    );
    tx.execute(
        &sql,
        &[
            &unit,
            &c.category.as_str(),
            &i16::from(c.priority),
            &(c.rules_version as i32),
            &c.rule,
            &attributes,
            &digest(attributes),
            &stream_seq,
        ],
    )
    .await
    .map_err(|e| db_failure("write a unit's category", &e))?;
    Ok(())
}

/// Catalog changes.
struct Changes(Arc<Shared>);

#[async_trait]
impl Handler for Changes {
    async fn handle(&self, messages: &[Message]) -> Outcome {
        // The last valid change per unit; invalid ones are the catalog projector's to record.
        let mut last: BTreeMap<String, (i64, bool, String)> = BTreeMap::new();
        for m in messages {
            let Ok(info) = m.info() else { continue };
            let Ok(change) = read_change(&m.subject, &m.payload) else {
                continue;
            };
            let seq = info.stream_sequence as i64;
            last.insert(
                change.id.into_owned(),
                (seq, change.deleted, change.attributes.get().to_owned()),
            );
        }
        match self.write(last).await {
            Ok(()) => Outcome::Ack,
            Err(outcome) => outcome,
        }
    }
}

impl Changes {
    async fn write(&self, changes: BTreeMap<String, (i64, bool, String)>) -> Result<(), Outcome> {
        let mut db = self
            .0
            .pg
            .get()
            .await
            .map_err(|e| Outcome::Transient(format!("no database connection: {e}")))?;
        let tx = db
            .transaction()
            .await
            .map_err(|e| db_failure("begin", &e))?;
        let rules = self.0.lock_and_load(&tx).await?;
        for (unit, (seq, deleted, attributes)) in &changes {
            match (&rules, deleted) {
                (_, true) => {
                    tx.execute(
                        "DELETE FROM unit_categories WHERE unit = $1 AND stream_seq < $2",
                        &[unit, seq],
                    )
                    .await
                    .map_err(|e| db_failure("delete a unit's category", &e))?;
                }
                (Some(rules), false) => {
                    upsert(
                        &tx,
                        rules,
                        unit,
                        attributes,
                        *seq,
                        "u.stream_seq < EXCLUDED.stream_seq",
                    )
                    .await?;
                }
                // No rules in force: the activation will categorise the catalog.
                (None, false) => {}
            }
        }
        tx.commit().await.map_err(|e| db_failure("commit", &e))
    }
}

/// Rules activations.
struct Activations(Arc<Shared>);

#[async_trait]
impl Handler for Activations {
    async fn handle(&self, messages: &[Message]) -> Outcome {
        let activated = messages
            .iter()
            .any(|m| m.subject.ends_with(".CategoryRulesActivated"));
        if !activated {
            return Outcome::Ack;
        }
        match self.recompute().await {
            Ok(()) => Outcome::Ack,
            Err(outcome) => outcome,
        }
    }
}

impl Activations {
    /// Every unit by the active rules, in pages of [`PAGE`] (one transaction: an activation is rare).
    async fn recompute(&self) -> Result<(), Outcome> {
        let mut db = self
            .0
            .pg
            .get()
            .await
            .map_err(|e| Outcome::Transient(format!("no database connection: {e}")))?;
        let tx = db
            .transaction()
            .await
            .map_err(|e| db_failure("begin", &e))?;
        let Some(rules) = self.0.lock_and_load(&tx).await? else {
            return tx.commit().await.map_err(|e| db_failure("commit", &e));
        };
        let version = rules.version as i32;
        // Units categorised before: from the attributes kept with them.
        let kept = "SELECT unit, attributes::text, stream_seq FROM unit_categories \
                     WHERE unit > $1 AND rules_version <> $2 ORDER BY unit LIMIT $3";
        // Catalog items never categorised (no rules were in force when they changed).
        let fresh = "SELECT c.item_id, c.attributes::text, c.stream_seq FROM catalog_items c \
                      WHERE c.item_id > $1 AND NOT c.deleted AND $2::int IS NOT NULL \
                        AND NOT EXISTS (SELECT 1 FROM unit_categories u WHERE u.unit = c.item_id) \
                      ORDER BY c.item_id LIMIT $3";
        for sql in [kept, fresh] {
            let mut after = String::new();
            loop {
                let rows = tx
                    .query(sql, &[&after, &version, &PAGE])
                    .await
                    .map_err(|e| db_failure("read units to recompute", &e))?;
                let Some(last) = rows.last() else { break };
                after = last.get(0);
                for row in &rows {
                    let (unit, attributes, seq): (String, String, i64) =
                        (row.get(0), row.get(1), row.get(2));
                    upsert(
                        &tx,
                        &rules,
                        &unit,
                        &attributes,
                        seq,
                        "u.stream_seq < EXCLUDED.stream_seq OR \
                         (u.stream_seq = EXCLUDED.stream_seq \
                          AND u.rules_version <> EXCLUDED.rules_version)",
                    )
                    .await?;
                }
            }
        }
        tx.commit().await.map_err(|e| db_failure("commit", &e))
    }
}
