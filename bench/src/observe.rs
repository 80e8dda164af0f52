//! Watching events arrive: in a JetStream stream ([`StreamWatcher`], an ordered pull consumer
//! from the stream's end) and in the audit read model ([`ReadModelPoller`]). Each sighting is
//! timed on the wall clock, the clock Postgres stamps `recorded_at` with on the same host.
//!
//! The read model has no insertion time, so the poller asks for the rows of the commands it
//! was told about (`audit_log_aggregate` index) every [`POLL`]: a row is dated by the start of
//! the first poll that sees it, an overestimate by at most one poll period plus one query.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::{self, Message};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use gatehouse_events::policy::AGGREGATE;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How often the poller asks the read model.
pub const POLL: Duration = Duration::from_millis(1);

/// One event seen somewhere.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The aggregate id (or the raw message's id).
    pub id: String,
    /// When it was recorded (the event) or sent (a raw message).
    pub origin: DateTime<Utc>,
    /// When the stream stored it (server clock), for stream sightings.
    pub stored: Option<DateTime<Utc>>,
    /// When this process saw it.
    pub seen: DateTime<Utc>,
}

impl Seen {
    /// Origin → seen, in milliseconds.
    pub fn latency_ms(&self) -> f64 {
        ms(self.seen - self.origin)
    }

    /// Origin → stored, in milliseconds.
    pub fn stored_ms(&self) -> Option<f64> {
        self.stored.map(|s| ms(s - self.origin))
    }
}

fn ms(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds().map_or(f64::MAX, |us| us as f64 / 1e3)
}

/// Which headers carry a message's id and origin time (RFC 3339).
#[derive(Debug, Clone, Copy)]
pub struct Headers {
    pub id: &'static str,
    pub origin: &'static str,
}

/// Everything published on `filter` in `stream` from now on, as it is delivered.
pub struct StreamWatcher {
    task: JoinHandle<()>,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl StreamWatcher {
    pub async fn start(
        js: &jetstream::Context,
        stream: &str,
        filter: &str,
        headers: Headers,
    ) -> anyhow::Result<StreamWatcher> {
        let consumer = js
            .get_stream(stream)
            .await?
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter.to_owned(),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let (tx, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let seen_at = Utc::now();
                let Ok(message) = message else { continue };
                if let Some(s) = sighting(&message, headers, seen_at) {
                    if tx.send(s).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(StreamWatcher { task, seen })
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

fn sighting(message: &Message, names: Headers, seen: DateTime<Utc>) -> Option<Seen> {
    let headers = message.headers.as_ref()?;
    let id = headers.get(names.id)?.as_str().to_owned();
    let origin = DateTime::parse_from_rfc3339(headers.get(names.origin)?.as_str())
        .ok()?
        .with_timezone(&Utc);
    let stored = message.info().ok().and_then(|info| {
        let nanos = i64::try_from(info.published.unix_timestamp_nanos()).ok()?;
        Some(DateTime::from_timestamp_nanos(nanos))
    });
    Some(Seen {
        id,
        origin,
        stored,
        seen,
    })
}

/// Polls `audit_log` for the policies it is told to expect.
pub struct ReadModelPoller {
    task: JoinHandle<()>,
    expected: Arc<Mutex<HashSet<String>>>,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl ReadModelPoller {
    /// Starts polling on `db` (a connection of its own: the polls must not queue behind
    /// other queries).
    pub fn start(db: tokio_postgres::Client) -> ReadModelPoller {
        let expected = Arc::new(Mutex::new(HashSet::new()));
        let (tx, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(poll(db, expected.clone(), tx));
        ReadModelPoller {
            task,
            expected,
            seen,
        }
    }

    /// Watch for the events of policy `id` from now on.
    pub fn expect(&self, id: String) {
        if let Ok(mut expected) = self.expected.lock() {
            expected.insert(id);
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn poll(
    db: tokio_postgres::Client,
    expected: Arc<Mutex<HashSet<String>>>,
    tx: mpsc::UnboundedSender<Seen>,
) {
    let Ok(query) = db
        .prepare(
            "SELECT aggregate_id, recorded_at FROM audit_log \
             WHERE aggregate_type = $1 AND aggregate_id = ANY($2)",
        )
        .await
    else {
        return;
    };
    loop {
        tokio::time::sleep(POLL).await;
        let ids: Vec<String> = match expected.lock() {
            Ok(e) if !e.is_empty() => e.iter().cloned().collect(),
            _ => continue,
        };
        let started = Utc::now();
        let Ok(rows) = db.query(&query, &[&AGGREGATE, &ids]).await else {
            continue;
        };
        for row in rows {
            let id: String = row.get(0);
            if let Ok(mut e) = expected.lock() {
                e.remove(&id);
            }
            let seen = Seen {
                id,
                origin: row.get(1),
                stored: None,
                seen: started,
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    }
}

/// Receives sightings until `count` of those whose id starts with `prefix` arrived or
/// `deadline` passed.
pub async fn collect(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    prefix: &str,
    count: usize,
    deadline: Duration,
) -> Vec<Seen> {
    let until = tokio::time::Instant::now() + deadline;
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        match tokio::time::timeout_at(until, seen.recv()).await {
            Ok(Some(s)) if s.id.starts_with(prefix) => got.push(s),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    got
}
