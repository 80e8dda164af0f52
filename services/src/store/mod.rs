//! The event store: postgres-es in pure event-store mode, with our own executor.
//!
//! cqrs-es's `execute` returns `()` and never retries; this executor returns the committed
//! envelopes, retries optimistic-concurrency conflicts a bounded number of times, and answers a
//! repeated `command_id` from the durable `command_log` (filled by the `events` trigger in the
//! writing transaction) instead of executing again.
//!
//! Loaded aggregates are kept between commands (`loaded`), so a command's cost does not grow
//! with its aggregate's history. A kept copy is checked by the stored sequence when its events
//! are appended: if another writer (another gateway) appended first, the append conflicts on the
//! `events` primary key, the copy is dropped, and the command runs again on a fresh load. A
//! command a kept copy *refuses* appends nothing, so it is decided again on a fresh load before
//! the refusal is answered.
//!
//! Layout: this file (the executor and the command log); `loaded` (kept aggregates); `failure`
//! (how a database failure is answered).

use std::collections::HashMap;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{
    Aggregate, AggregateContext, AggregateError, DomainEvent, EventEnvelope, EventStore as _,
};
use deadpool_postgres::Pool;
use gatehouse_events::envelope::{CommandAccepted, RecordedEvent};
use gatehouse_events::metadata;
use postgres_es::PostgresEventRepository;
use rand::Rng;

mod failure;
mod loaded;

use failure::has_sqlstate;
pub use failure::{failure, Cause, Failure};
use loaded::Loaded;
pub use loaded::MAX_LOADED;

/// How often a command is retried after an optimistic-concurrency conflict.
pub const MAX_ATTEMPTS: u32 = 6;

/// The SQLSTATE the `events` trigger raises when a command id was recorded by another transaction.
const COMMAND_ID_TAKEN: &str = "GH001";

/// Who sent a command and how to recognise it again: becomes every event's metadata.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub command_id: String,
    /// Who the command is recorded as: the authenticated user, or the person a delegate named.
    pub actor: String,
    /// The delegate that sent the command for `actor` (stored as `delegated_by`), if any.
    pub delegated_by: Option<String>,
    pub correlation_id: String,
    pub causation_id: String,
    /// e.g. `policy.draft`.
    pub command_type: String,
    /// `v2:` + SHA-256 of the command type and the canonical command body; stored.
    pub request_hash: String,
    /// The hash before it was versioned (over the NATS subject): matched against stored rows
    /// without the `v2:` tag only.
    pub legacy_request_hash: String,
}

impl CommandContext {
    /// Is `stored`, a hash from the command log, this request's?
    fn same_request(&self, stored: &str) -> bool {
        if stored.starts_with(crate::api::request::REQUEST_HASH_V2) {
            stored == self.request_hash
        } else {
            stored == self.legacy_request_hash
        }
    }
}

impl CommandContext {
    fn metadata(&self) -> HashMap<String, String> {
        let mut fields = HashMap::from([
            (metadata::COMMAND_ID.to_owned(), self.command_id.clone()),
            (metadata::ACTOR.to_owned(), self.actor.clone()),
            (
                metadata::CORRELATION_ID.to_owned(),
                self.correlation_id.clone(),
            ),
            (metadata::CAUSATION_ID.to_owned(), self.causation_id.clone()),
            (metadata::COMMAND_TYPE.to_owned(), self.command_type.clone()),
            (metadata::REQUEST_HASH.to_owned(), self.request_hash.clone()),
        ]);
        if let Some(delegate) = &self.delegated_by {
            fields.insert(metadata::DELEGATED_BY.to_owned(), delegate.clone());
        }
        fields
    }
}

/// Why a command was not executed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Rejected(E),
    /// The command id was used before for a different request.
    #[error("command_id `{0}` was already used for a different request")]
    IdempotencyConflict(String),
    /// Conflicts persisted after every retry.
    #[error("the aggregate kept changing concurrently; retry with the same command_id")]
    Conflict,
    /// The database cannot be reached or is overloaded: worth a retry.
    #[error("the event store is unavailable")]
    Store(#[source] Cause),
    /// The database refused a value of the command (SQLSTATE class 22): a retry fails again.
    #[error("the database refused a value of the command")]
    InvalidData(#[source] Cause),
    /// Any other database error (or a stored event that does not read): a server fault, not
    /// worth a retry.
    #[error("unexpected event store error")]
    Unexpected(#[source] Cause),
}

impl<E: std::error::Error> CommandError<E> {
    /// A database failure, sorted by [`failure`].
    fn database(err: Cause) -> Self {
        match failure(err.as_ref()) {
            Failure::Unavailable => CommandError::Store(err),
            Failure::InvalidData => CommandError::InvalidData(err),
            Failure::Internal => CommandError::Unexpected(err),
        }
    }

    /// An event store failure that is not the aggregate's decision.
    fn from_store(err: AggregateError<E>) -> Self {
        match err {
            AggregateError::UserError(e) => CommandError::Rejected(e),
            AggregateError::AggregateConflict => CommandError::Conflict,
            AggregateError::DatabaseConnectionError(e) => CommandError::Store(e),
            AggregateError::DeserializationError(e) => CommandError::Unexpected(e),
            AggregateError::UnexpectedError(e) => CommandError::database(e),
        }
    }
}

/// The aggregates the gateway can execute commands on.
pub trait CommandTarget: Aggregate<Services = ()> {
    /// Command-specific facts for the reply, from the events the command recorded (JSON).
    fn reply_detail(aggregate_id: &str, events: &[serde_json::Value]) -> serde_json::Value;
}

/// The event store of one aggregate type, with the read side of the command log.
pub struct Store<A: Aggregate> {
    events: PersistedEventStore<PostgresEventRepository, A>,
    pg: Pool,
    loaded: Loaded<A>,
}

/// Where a command's starting state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Kept,
    Loaded,
}

impl<A> Store<A>
where
    A: CommandTarget + Clone,
    A::Command: Clone,
{
    pub fn new(sqlx_pool: sqlx::PgPool, pg: Pool) -> Self {
        let repo = PostgresEventRepository::new(sqlx_pool);
        Store {
            events: PersistedEventStore::new_event_store(repo),
            pg,
            loaded: Loaded::new(MAX_LOADED),
        }
    }

    /// Executes `command` on aggregate `id` once, however often it is sent with the same id.
    pub async fn execute(
        &self,
        ctx: &CommandContext,
        id: &str,
        command: A::Command,
    ) -> Result<CommandAccepted, CommandError<A::Error>> {
        // The common path costs no lookup: the trigger refuses a recorded command id (GH001),
        // and a refusal or rejection is checked against the log before it is answered.
        let mut fresh = false;
        for attempt in 0..MAX_ATTEMPTS {
            match self
                .execute_once(id, command.clone(), ctx.metadata(), fresh)
                .await
            {
                Ok((envelopes, _)) => return Ok(accepted::<A>(ctx, id, &envelopes)),
                // A kept copy may be behind: decide again on what is stored.
                Err((AggregateError::UserError(_), Source::Kept)) => {
                    self.loaded.forget(id);
                    fresh = true;
                }
                Err((AggregateError::UserError(e), Source::Loaded)) => {
                    return match self.recorded(ctx).await? {
                        Some(done) => Ok(done),
                        None => Err(CommandError::Rejected(e)),
                    }
                }
                // Also a kept copy that decided nothing (see `execute_once`).
                Err((AggregateError::AggregateConflict, source)) => {
                    self.loaded.forget(id);
                    fresh = true;
                    // A kept copy that was merely behind is no contention: retry at once.
                    if source == Source::Loaded {
                        backoff(attempt).await;
                    }
                }
                Err((AggregateError::UnexpectedError(e), _))
                    if has_sqlstate(e.as_ref(), COMMAND_ID_TAKEN) =>
                {
                    if let Some(done) = self.recorded(ctx).await? {
                        return Ok(done);
                    }
                }
                Err((e, _)) => {
                    self.loaded.forget(id);
                    return Err(CommandError::from_store(e));
                }
            }
        }
        match self.recorded(ctx).await? {
            Some(done) => Ok(done),
            None => Err(CommandError::Conflict),
        }
    }

    /// The aggregate's current state, loaded from its events.
    pub async fn state(&self, id: &str) -> Result<A, CommandError<A::Error>> {
        let mut context = self
            .events
            .load_aggregate(id)
            .await
            .map_err(CommandError::from_store)?;
        Ok(std::mem::take(context.aggregate()))
    }

    /// The stored outcome of an earlier request with this command id, if any.
    pub async fn already_done(
        &self,
        ctx: &CommandContext,
    ) -> Result<Option<CommandAccepted>, CommandError<A::Error>> {
        self.recorded(ctx).await
    }

    /// Decides `command` on the kept copy of aggregate `id` (unless `fresh` or none is kept, then
    /// on a fresh load), appends its events, and keeps the resulting state.
    async fn execute_once(
        &self,
        id: &str,
        command: A::Command,
        metadata: HashMap<String, String>,
        fresh: bool,
    ) -> Result<(Vec<EventEnvelope<A>>, Source), (AggregateError<A::Error>, Source)> {
        let (mut context, source) = match self.loaded.get(id).filter(|_| !fresh) {
            Some((aggregate, current_sequence)) => (
                EventStoreAggregateContext {
                    aggregate_id: id.to_owned(),
                    aggregate,
                    current_sequence,
                    current_snapshot: None,
                },
                Source::Kept,
            ),
            None => {
                let context = self
                    .events
                    .load_aggregate(id)
                    .await
                    .map_err(|e| (e, Source::Loaded))?;
                (context, Source::Loaded)
            }
        };
        let sink = EventSink::<A>::default();
        context
            .aggregate()
            .handle(command, &(), &sink)
            .await
            .map_err(|e| (AggregateError::UserError(e), source))?;
        let events = sink.collect().await;
        if events.is_empty() {
            // Nothing to append means nothing checks a kept copy: decide again on a fresh load.
            if source == Source::Kept {
                return Err((AggregateError::AggregateConflict, source));
            }
            self.loaded
                .keep(id, context.aggregate, context.current_sequence);
            return Ok((Vec::new(), source));
        }
        let mut state = context.aggregate.clone();
        let envelopes = self
            .events
            .commit(events, context, metadata)
            .await
            .map_err(|e| (e, source))?;
        for envelope in &envelopes {
            state.apply(envelope.payload.clone());
        }
        if let Some(last) = envelopes.last() {
            self.loaded.keep(id, state, last.sequence);
        }
        Ok((envelopes, source))
    }

    /// The stored outcome of an earlier request with this command id, if any.
    async fn recorded(
        &self,
        ctx: &CommandContext,
    ) -> Result<Option<CommandAccepted>, CommandError<A::Error>> {
        let store = |e: tokio_postgres::Error| CommandError::database(Box::new(e));
        let client = self
            .pg
            .get()
            .await
            .map_err(|e| CommandError::Store(Box::new(e)))?;
        let row = client
            .query_opt(
                "SELECT request_hash, aggregate_type, aggregate_id, first_sequence, last_sequence \
                 FROM command_log WHERE command_id = $1",
                &[&ctx.command_id],
            )
            .await
            .map_err(store)?;
        let Some(row) = row else { return Ok(None) };
        let (hash, aggregate, id): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        if !ctx.same_request(&hash) || aggregate != A::TYPE {
            return Err(CommandError::IdempotencyConflict(ctx.command_id.clone()));
        }
        let rows = client
            .query(
                "SELECT sequence, event_type, payload FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence BETWEEN $3 AND $4 ORDER BY sequence",
                &[&aggregate, &id, &row.get::<_, i64>(3), &row.get::<_, i64>(4)],
            )
            .await
            .map_err(store)?;
        let events = rows
            .iter()
            .map(|r| RecordedEvent {
                sequence: r.get::<_, i64>(0) as u64,
                event_type: r.get(1),
            })
            .collect::<Vec<_>>();
        let payloads: Vec<serde_json::Value> = rows.iter().map(|r| r.get(2)).collect();
        Ok(Some(CommandAccepted {
            command_id: ctx.command_id.clone(),
            aggregate: aggregate.clone(),
            sequence: events.last().map_or(0, |e| e.sequence),
            detail: A::reply_detail(&id, &payloads),
            aggregate_id: id,
            events,
            duplicate: true,
        }))
    }
}

fn accepted<A: CommandTarget>(
    ctx: &CommandContext,
    id: &str,
    envelopes: &[EventEnvelope<A>],
) -> CommandAccepted {
    let payloads: Vec<serde_json::Value> = envelopes
        .iter()
        .map(|e| serde_json::to_value(&e.payload).unwrap_or_default())
        .collect();
    CommandAccepted {
        command_id: ctx.command_id.clone(),
        aggregate: A::TYPE.to_owned(),
        aggregate_id: id.to_owned(),
        sequence: envelopes.last().map_or(0, |e| e.sequence as u64),
        events: envelopes
            .iter()
            .map(|e| RecordedEvent {
                sequence: e.sequence as u64,
                event_type: e.payload.event_type(),
            })
            .collect(),
        duplicate: false,
        detail: A::reply_detail(id, &payloads),
    }
}

/// Jittered exponential backoff: 5, 10, 20 ... ms, times a random factor in [0.5, 1.5).
async fn backoff(attempt: u32) {
    let base = 5u64 << attempt.min(6);
    let jitter = rand::rng().random_range(0.5..1.5);
    tokio::time::sleep(Duration::from_micros(
        (base as f64 * 1000.0 * jitter) as u64,
    ))
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_matches_a_stored_hash_by_its_version() {
        let ctx = CommandContext {
            command_id: "c".into(),
            actor: "a".into(),
            delegated_by: None,
            correlation_id: "c".into(),
            causation_id: "c".into(),
            command_type: "policy.create".into(),
            request_hash: "v2:abc".into(),
            legacy_request_hash: "def".into(),
        };
        assert!(ctx.same_request("v2:abc"));
        assert!(ctx.same_request("def"));
        assert!(!ctx.same_request("v2:def"));
        assert!(!ctx.same_request("abc"));
    }
}
