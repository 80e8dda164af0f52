//! The outbox relay: publishes every stored event, in commit order, onto the events stream.
//!
//! Reads `event_outbox` (filled by the `events` trigger in the writing transaction) and publishes
//! each row to `<ns>.events.<aggregate>.<id>.<event_type>` on `<NS>_EVENTS` with
//! `Nats-Msg-Id = <aggregate>:<id>:<sequence>`, waits for the PubAcks, then marks the rows.
//!
//! - One active instance: the one holding a session advisory lock; others stand by and retry.
//! - Commit order: only rows of finished transactions are read (`tx_id < xmin` of the current
//!   snapshot), so a row of a transaction that commits late is never skipped.
//! - Per-aggregate order: at most one event per aggregate is in flight (rows go out in waves).
//! - No loss, no duplicates: rows are marked only after their PubAck. A crash between PubAck
//!   and mark is covered by JetStream's dedupe window and, beyond it, by reconciliation: before
//!   publishing a batch the relay records how far it got (`relay_state`), and a relay taking
//!   over first checks those rows against the last message on each row's subject (a look-up
//!   that fails, rather than finding no message, ends the session: it is never "not published").

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetError, DirectGetErrorKind};
use async_nats::jetstream::{self, context::PublishAckFuture};
use async_nats::HeaderMap;
use futures::future::BoxFuture;
use futures::StreamExt;
use gatehouse_events::metadata::*;
use gatehouse_events::record::EventRecord;
use gatehouse_events::subjects;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
use crate::{broker, RoleError};

/// The advisory-lock key whose holder is the active relay.
const RELAY_LOCK: i64 = 0x0067_6174_6572_656c; // "gaterel"
/// Rows per batch.
const BATCH: i64 = 500;
/// How often an idle relay looks anyway (NOTIFY is the fast path).
const POLL: Duration = Duration::from_millis(1000);
/// How soon the relay looks again while unpublished rows remain after a batch: they wait behind
/// an older transaction still open (the `xmin` fence), or that transaction ended since the batch
/// was read. Its end sends no NOTIFY when it wrote no event. The pause doubles up to
/// [`HELD_BACK_MAX`].
const HELD_BACK_FIRST: Duration = Duration::from_millis(2);
const HELD_BACK_MAX: Duration = Duration::from_millis(100);
/// How often a standby relay tries to become active.
const STANDBY_RETRY: Duration = Duration::from_millis(1000);
/// Published rows are kept this long for inspection, then pruned.
const KEEP_PUBLISHED: &str = "1 hour";

/// A pause point for fault-injection tests: the relay awaits it at that point.
pub type Hook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Test hooks; all unset in production.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct Hooks {
    /// After every PubAck of a batch arrived, before the rows are marked published.
    pub after_publish: Option<Hook>,
    /// How often an idle relay looks anyway, instead of [`POLL`].
    pub idle_poll: Option<Duration>,
    /// After a batch shorter than a full one was published, before the relay decides how long
    /// to pause.
    pub after_short_batch: Option<Hook>,
}

/// Runs a relay until `shutdown`: standby until it holds the lock, then active.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    run_with_hooks(settings, Hooks::default(), shutdown).await
}

#[doc(hidden)]
pub async fn run_with_hooks(
    settings: Settings,
    hooks: Hooks,
    shutdown: CancellationToken,
) -> Result<(), RoleError> {
    let client = broker::connect(&settings, "relay").await?;
    let js = broker::jetstream(&client);
    broker::ensure_events_stream(&js, &settings).await?;
    let relay = Relay {
        js,
        namespace: settings.namespace.clone(),
        hooks,
    };
    while !shutdown.is_cancelled() {
        match relay.session(&settings.database_url, &shutdown).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error.message = %e, error.cause_chain = ?e, "relay session ended; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(STANDBY_RETRY) => {}
                }
            }
        }
    }
    Ok(())
}

/// A relay failure; the session is restarted after it.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot publish {message_id}: {detail}")]
    Publish { message_id: String, detail: String },
    #[error("the database connection closed")]
    ConnectionClosed,
    #[error("cannot tell whether the event with sequence {sequence} was published: {detail}")]
    Reconcile { sequence: i64, detail: String },
}

struct Relay {
    js: jetstream::Context,
    namespace: String,
    hooks: Hooks,
}

/// A pending outbox row, ready to publish.
struct Row {
    record: EventRecord,
}

impl Relay {
    /// One database session: wait for the lock, then publish until shutdown or an error.
    async fn session(&self, url: &str, shutdown: &CancellationToken) -> Result<(), RelayError> {
        let (db, mut wake) = connect_listening(url).await?;
        loop {
            let locked: bool = db
                .query_one("SELECT pg_try_advisory_lock($1)", &[&RELAY_LOCK])
                .await?
                .get(0);
            if locked {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(STANDBY_RETRY) => {}
            }
        }
        tracing::info!("relay active");
        db.batch_execute("LISTEN gatehouse_outbox").await?;
        self.reconcile(&db).await?;
        let mut last_prune = tokio::time::Instant::now();
        let mut held_back_pause = HELD_BACK_FIRST;
        while !shutdown.is_cancelled() {
            let published = self.publish_batch(&db).await?;
            if published as i64 == BATCH {
                continue;
            }
            if let Some(hook) = &self.hooks.after_short_batch {
                hook().await;
            }
            if last_prune.elapsed() > Duration::from_secs(60) {
                prune(&db).await?;
                last_prune = tokio::time::Instant::now();
            }
            let pause = if unpublished_remain(&db).await? {
                let pause = held_back_pause;
                held_back_pause = (held_back_pause * 2).min(HELD_BACK_MAX);
                pause
            } else {
                held_back_pause = HELD_BACK_FIRST;
                self.hooks.idle_poll.unwrap_or(POLL)
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                woke = wake.recv() => if woke.is_none() { return Err(RelayError::ConnectionClosed) },
                _ = tokio::time::sleep(pause) => {}
            }
            while wake.try_recv().is_ok() {}
        }
        Ok(())
    }

    /// Publishes up to one batch of pending rows; returns how many were published.
    async fn publish_batch(&self, db: &Client) -> Result<usize, RelayError> {
        let rows = pending(db, i64::MAX).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let upto = rows.iter().map(|r| r.record.position).max().unwrap_or(0);
        // Recorded before publishing, so a successor knows which rows may already be out.
        db.execute(
            "UPDATE relay_state SET inflight_upto = greatest(inflight_upto, $1)",
            &[&upto],
        )
        .await?;
        let acked = self.publish_in_waves(&rows).await;
        let (positions, sequences): (Vec<i64>, Vec<i64>) = acked.iter().copied().unzip();
        if !positions.is_empty() {
            if let Some(hook) = &self.hooks.after_publish {
                hook().await;
            }
            mark_published(db, &positions, &sequences).await?;
        }
        match acked.len() == rows.len() {
            true => Ok(rows.len()),
            false => Err(RelayError::Publish {
                message_id: rows[acked.len().min(rows.len() - 1)].record.message_id(),
                detail: "publish failed; the batch is retried".into(),
            }),
        }
    }

    /// Publishes rows with at most one event per aggregate in flight; returns the
    /// `(position, stream sequence)` of every row acknowledged, stopping at the first failure.
    async fn publish_in_waves(&self, rows: &[Row]) -> Vec<(i64, i64)> {
        let mut acked = Vec::with_capacity(rows.len());
        let mut start = 0;
        while start < rows.len() {
            // A wave: consecutive rows, cut before the first aggregate already in it.
            let mut seen = HashSet::new();
            let end = rows[start..]
                .iter()
                .position(|r| !seen.insert((&r.record.aggregate, &r.record.aggregate_id)))
                .map_or(rows.len(), |i| start + i);
            let mut futures: Vec<(i64, Result<PublishAckFuture, String>)> =
                Vec::with_capacity(end - start);
            for row in &rows[start..end] {
                futures.push((row.record.position, self.send(row).await));
            }
            for (position, future) in futures {
                let result = match future {
                    Ok(f) => f.await.map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(ack) => acked.push((position, ack.sequence as i64)),
                    Err(e) => {
                        tracing::warn!(position, error.message = %e, "publish failed");
                        return acked;
                    }
                }
            }
            start = end;
        }
        acked
    }

    async fn send(&self, row: &Row) -> Result<PublishAckFuture, String> {
        let r = &row.record;
        let subject = subjects::event(
            &self.namespace,
            &r.aggregate,
            &r.aggregate_id,
            &r.event_type,
        );
        let body = serde_json::to_vec(r).map_err(|e| e.to_string())?;
        self.js
            .publish_with_headers(subject, headers(r), body.into())
            .await
            .map_err(|e| e.to_string())
    }

    /// After taking over: rows up to the predecessor's in-flight mark that are already in the
    /// stream (the last message on their subject has their sequence or a later one) are marked.
    async fn reconcile(&self, db: &Client) -> Result<(), RelayError> {
        let upto: i64 = db
            .query_one("SELECT inflight_upto FROM relay_state", &[])
            .await?
            .get(0);
        let rows = pending(db, upto).await?;
        let stream = self
            .js
            .get_stream(subjects::events_stream(&self.namespace))
            .await
            .map_err(|e| RelayError::Publish {
                message_id: String::new(),
                detail: e.to_string(),
            })?;
        let (mut positions, mut sequences) = (Vec::new(), Vec::new());
        for row in rows.iter().filter(|r| r.record.position <= upto) {
            let r = &row.record;
            let subject = subjects::event(
                &self.namespace,
                &r.aggregate,
                &r.aggregate_id,
                &r.event_type,
            );
            let last = stream.direct_get_last_for_subject(&subject).await;
            if let Some(stream_sequence) = published_copy(last, r.sequence)? {
                positions.push(r.position);
                sequences.push(stream_sequence);
            }
        }
        if !positions.is_empty() {
            tracing::info!(
                rows = positions.len(),
                "reconciled rows published before a takeover"
            );
            mark_published(db, &positions, &sequences).await?;
        }
        Ok(())
    }
}

/// Whether the last message on a row's subject shows the row published (its sequence or a later
/// one): the message's stream sequence, or `None`. Only "no message on the subject" means not
/// published; any other failure to read ends the reconciliation (the session restarts and
/// reconciles again), since publishing such a row could duplicate it past the dedupe window.
fn published_copy(
    last: Result<StreamMessage, DirectGetError>,
    sequence: i64,
) -> Result<Option<i64>, RelayError> {
    let last = match last {
        Ok(last) => last,
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RelayError::Reconcile {
                sequence,
                detail: e.to_string(),
            })
        }
    };
    let last_seq = last
        .headers
        .get(HEADER_SEQUENCE)
        .and_then(|v| v.as_str().parse::<i64>().ok())
        .unwrap_or(0);
    Ok((last_seq >= sequence).then_some(last.sequence as i64))
}

fn headers(r: &EventRecord) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Nats-Msg-Id", r.message_id().as_str());
    h.insert(HEADER_POSITION, r.position.to_string().as_str());
    h.insert(HEADER_AGGREGATE, r.aggregate.as_str());
    h.insert(HEADER_AGGREGATE_ID, r.aggregate_id.as_str());
    h.insert(HEADER_SEQUENCE, r.sequence.to_string().as_str());
    h.insert(HEADER_EVENT_TYPE, r.event_type.as_str());
    h.insert(HEADER_EVENT_VERSION, r.event_version.as_str());
    h.insert(HEADER_RECORDED_AT, r.recorded_at.to_rfc3339().as_str());
    h
}

/// Are unpublished rows left? Called after a batch: they are held back by the `xmin` fence, or
/// were just released from it (or just committed). Asking only for rows still behind the fence
/// would miss those released between the batch's read and this one, and leave them waiting for
/// the idle poll.
async fn unpublished_remain(db: &Client) -> Result<bool, RelayError> {
    let row = db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM event_outbox WHERE published_at IS NULL)",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Unpublished rows of finished transactions, in position order, up to position `upto`.
async fn pending(db: &Client, upto: i64) -> Result<Vec<Row>, RelayError> {
    let rows = db
        .query(
            "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type, event_version, \
                    payload, metadata, recorded_at \
               FROM event_outbox \
              WHERE published_at IS NULL AND global_position <= $1 \
                AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
              ORDER BY global_position LIMIT $2",
            &[&upto, &BATCH],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Row {
            record: EventRecord {
                position: r.get(0),
                aggregate: r.get(1),
                aggregate_id: r.get(2),
                sequence: r.get(3),
                event_type: r.get(4),
                event_version: r.get(5),
                payload: r.get(6),
                metadata: r.get(7),
                recorded_at: r.get(8),
            },
        })
        .collect())
}

async fn mark_published(
    db: &Client,
    positions: &[i64],
    sequences: &[i64],
) -> Result<(), RelayError> {
    db.execute(
        "UPDATE event_outbox o SET published_at = now(), stream_sequence = u.seq \
           FROM unnest($1::bigint[], $2::bigint[]) AS u(pos, seq) \
          WHERE o.global_position = u.pos",
        &[&positions, &sequences],
    )
    .await?;
    Ok(())
}

async fn prune(db: &Client) -> Result<(), RelayError> {
    let sql = format!(
        "DELETE FROM event_outbox WHERE published_at < now() - interval '{KEEP_PUBLISHED}'"
    );
    db.execute(sql.as_str(), &[]).await?;
    Ok(())
}

/// A connection whose notifications arrive on the returned channel.
async fn connect_listening(url: &str) -> Result<(Client, mpsc::UnboundedReceiver<()>), RelayError> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error.message = %e, "relay database connection failed");
                    break;
                }
            }
        }
    });
    Ok((client, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_with_no_message_is_not_published() {
        let last = Err(DirectGetError::new(DirectGetErrorKind::NotFound));
        assert!(matches!(published_copy(last, 3), Ok(None)));
    }

    #[test]
    fn a_failed_look_up_is_an_error_not_an_unpublished_row() {
        for kind in [
            DirectGetErrorKind::TimedOut,
            DirectGetErrorKind::Request,
            DirectGetErrorKind::Other,
        ] {
            let last = Err(DirectGetError::new(kind.clone()));
            assert!(published_copy(last, 3).is_err(), "{kind}");
        }
    }
}
