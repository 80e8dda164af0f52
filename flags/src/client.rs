//! [`FlagClient`]: every flag held in-process and evaluated with [`crate::evaluate`].
//!
//! It subscribes to the events the relay publishes (`<ns>.events.flag.>`, `<ns>.events.global.>`,
//! the subjects of the events stream) *before* it asks for `flag.snapshot` (every flag and safe
//! mode folded from the event store, each with its aggregate sequence), then applies each event
//! whose sequence is the next of its aggregate; an event at or below the held sequence is
//! skipped (already in the snapshot), one further ahead means one was missed: the snapshot is
//! read again. So a committed change reaches the client as soon as the relay publishes it (no
//! polling interval). The snapshot is also read again every [`ClientOptions::resync`] and when a
//! load fails (every second until it succeeds).
//!
//! `GATEHOUSE_EMERGENCY_STOP` is read when the client is made and needs no Gatehouse: with
//! Gatehouse unreachable from the start, the client answers off (`environment_override` for the
//! flags it names, `unknown_flag` otherwise) until a snapshot arrives.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use gatehouse_events::envelope::Reply;
use gatehouse_events::flag::{
    self, FlagEvent, FlagSnapshot, FlagState, GetSnapshot, GlobalEvent, SafeMode,
};
use gatehouse_events::record::EventRecord;
use gatehouse_events::subjects;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::env::EmergencyOverride;
use crate::eval::{evaluate_with, CompiledFlag};
use gatehouse_events::flag::Evaluation;

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The environment override (default: read from `GATEHOUSE_EMERGENCY_STOP`).
    pub environment: EmergencyOverride,
    /// How long a snapshot request may take.
    pub request_timeout: Duration,
    /// How often the snapshot is read again even when no event was missed.
    pub resync: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            environment: EmergencyOverride::from_env(),
            request_timeout: Duration::from_secs(5),
            resync: Duration::from_secs(60),
        }
    }
}

#[derive(Default)]
struct Held {
    /// By key, hashed with foldhash: every evaluation looks its flag up here (the keys are the
    /// flags' own, set by their editors, so a fast hasher needs no flooding resistance).
    flags: HashMap<String, CompiledFlag, foldhash::fast::RandomState>,
    safe_mode: SafeMode,
}

/// A local copy of every flag. Cheap to clone; the feed stops when the last clone is dropped.
#[derive(Clone)]
pub struct FlagClient {
    held: Arc<RwLock<Held>>,
    environment: EmergencyOverride,
    /// Bumped after each snapshot or applied event (tests and `wait_loaded`).
    version: watch::Receiver<u64>,
    _feed: Arc<Feed>,
}

struct Feed(Option<JoinHandle<()>>);

impl Drop for Feed {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

impl FlagClient {
    /// Starts the feed on `nats` for namespace `ns`. Never fails: an unreachable Gatehouse is
    /// retried in the background while evaluations answer from what is held.
    pub async fn start(nats: async_nats::Client, ns: &str, options: ClientOptions) -> Self {
        let held = Arc::new(RwLock::new(Held::default()));
        let (tx, rx) = watch::channel(0u64);
        let feed = tokio::spawn(run_feed(
            nats,
            ns.to_owned(),
            options.clone(),
            held.clone(),
            tx,
        ));
        FlagClient {
            held,
            environment: options.environment,
            version: rx,
            _feed: Arc::new(Feed(Some(feed))),
        }
    }

    /// A client that never reaches Gatehouse: it holds no flag and honours the environment.
    pub fn offline(environment: EmergencyOverride) -> Self {
        let (_tx, rx) = watch::channel(0u64);
        FlagClient {
            held: Arc::new(RwLock::new(Held::default())),
            environment,
            version: rx,
            _feed: Arc::new(Feed(None)),
        }
    }

    /// Evaluates `key` for `unit` in `context`, in-process.
    pub fn evaluate(
        &self,
        key: &str,
        unit: Option<&str>,
        context: &Map<String, Value>,
    ) -> Evaluation {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        evaluate_with(
            key,
            held.flags.get(key),
            &self.environment,
            held.safe_mode.on,
            unit,
            context,
        )
    }

    /// The held state of `key`.
    pub fn flag(&self, key: &str) -> Option<FlagState> {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        held.flags.get(key).map(|f| f.state().clone())
    }

    /// Is safe mode on, as held?
    pub fn safe_mode(&self) -> bool {
        self.held
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .safe_mode
            .on
    }

    /// Waits until a first snapshot is held (false after `timeout`).
    pub async fn wait_loaded(&self, timeout: Duration) -> bool {
        let mut rx = self.version.clone();
        tokio::time::timeout(timeout, rx.wait_for(|v| *v > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// What one message did.
enum Step {
    Applied,
    Skipped,
    /// An event was missed: read the snapshot again.
    Gap,
}

async fn run_feed(
    nats: async_nats::Client,
    ns: String,
    options: ClientOptions,
    held: Arc<RwLock<Held>>,
    version: watch::Sender<u64>,
) {
    let mut n: u64 = 0;
    loop {
        // Subscribe first, then load: nothing committed in between is lost.
        let subs = (
            nats.subscribe(subjects::aggregate_events(&ns, flag::AGGREGATE))
                .await,
            nats.subscribe(subjects::aggregate_events(&ns, flag::GLOBAL_AGGREGATE))
                .await,
        );
        let (Ok(flags), Ok(global)) = subs else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut messages = futures::stream::select(flags, global);
        match load(&nats, &ns, &options).await {
            Ok(snapshot) => {
                let mut h = held.write().unwrap_or_else(|e| e.into_inner());
                h.flags = snapshot
                    .flags
                    .into_iter()
                    .map(|s| (s.flag.clone(), CompiledFlag::new(s)))
                    .collect();
                h.safe_mode = snapshot.safe_mode;
                drop(h);
                n += 1;
                let _ = version.send(n);
            }
            Err(e) => {
                tracing::warn!(error = %e, "flag snapshot unavailable; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let resync = tokio::time::sleep(options.resync);
        tokio::pin!(resync);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { break };
                    match apply(&held, &message.payload) {
                        Step::Applied => { n += 1; let _ = version.send(n); }
                        Step::Skipped => {}
                        Step::Gap => break,
                    }
                }
                _ = &mut resync => break,
            }
        }
    }
}

async fn load(
    nats: &async_nats::Client,
    ns: &str,
    options: &ClientOptions,
) -> Result<FlagSnapshot, String> {
    let body = serde_json::to_vec(&GetSnapshot {}).map_err(|e| e.to_string())?;
    let subject = subjects::query(ns, flag::AGGREGATE, "snapshot");
    let reply = tokio::time::timeout(options.request_timeout, nats.request(subject, body.into()))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let reply: Reply<FlagSnapshot> =
        serde_json::from_slice(&reply.payload).map_err(|e| e.to_string())?;
    reply.into_result().map_err(|e| e.message)
}

/// Applies one published event to what is held.
fn apply(held: &RwLock<Held>, payload: &[u8]) -> Step {
    let Ok(record) = serde_json::from_slice::<EventRecord>(payload) else {
        return Step::Skipped;
    };
    let sequence = record.sequence.max(0) as u64;
    let mut h = held.write().unwrap_or_else(|e| e.into_inner());
    if record.aggregate == flag::GLOBAL_AGGREGATE {
        let Ok(event) = serde_json::from_value::<GlobalEvent>(record.payload) else {
            return Step::Skipped;
        };
        return if sequence <= h.safe_mode.sequence {
            Step::Skipped
        } else if sequence == h.safe_mode.sequence + 1 {
            h.safe_mode.apply(&event, sequence);
            Step::Applied
        } else {
            Step::Gap
        };
    }
    let Ok(event) = serde_json::from_value::<FlagEvent>(record.payload) else {
        return Step::Skipped;
    };
    let current = h.flags.get(&record.aggregate_id).map(|f| f.state().clone());
    let held_sequence = current.as_ref().map_or(0, |s| s.sequence);
    if sequence <= held_sequence {
        return Step::Skipped;
    }
    if sequence != held_sequence + 1 {
        return Step::Gap;
    }
    match FlagState::fold(current, &event, sequence) {
        Some(state) => {
            h.flags
                .insert(record.aggregate_id, CompiledFlag::new(state));
            Step::Applied
        }
        None => Step::Gap,
    }
}
