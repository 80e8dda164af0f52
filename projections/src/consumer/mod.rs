//! The consumer runtime every Gatehouse consumer loop shares: pull from a durable consumer,
//! hand messages to a [`Handler`], keep them alive with progress acks while it works, and act
//! on what it returns:
//!
//! - [`Outcome::Ack`]: done, acked.
//! - [`Outcome::Poison`]: the message can never be handled (undecodable, against the
//!   contract): copied at once to the dead-letter stream `<NS>_DLQ` with the reason, then
//!   terminated. The consumer moves on. A batch found poison is handed over again message by
//!   message first, so one bad message never parks the good ones beside it.
//! - [`Outcome::Transient`]: an outage (Postgres, NATS, the gateway): NAK'd with a capped
//!   exponential delay, without limit — no delivery budget, an outage never dead-letters —
//!   and the role's [`Health`] reports the consumer degraded until a message succeeds.
//! - a panic (a bug): caught, logged with its message, and handed to [`Handler::on_panic`],
//!   which decides the answer (the batch workers fail the run with the panic's message).
//!
//! On shutdown the loop stops pulling, finishes the messages in hand, answers them and returns.
//!
//! Layout: this file (the loop), [`classify`] (which failures are transient), [`health`].

pub mod classify;
pub mod health;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, PullConsumer};
use async_nats::jetstream::{self, AckKind, Message};
use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use self::classify::{
    is_transient_pg, is_transient_pool, is_transient_state, is_unreachable, panic_message,
};
pub use self::health::{Degraded, Health};
use crate::dead_letter::{self, DeadLetter};

/// A durable consumer as its role declares it: the stream it reads and its configuration.
/// The role creates (or updates) the consumer from it and `gatehouse doctor` expects what it
/// says, so the two cannot drift apart.
#[derive(Debug, Clone)]
pub struct Durable {
    pub stream: String,
    pub config: pull::Config,
}

impl Durable {
    /// The consumer's durable name.
    pub fn name(&self) -> &str {
        self.config.durable_name.as_deref().unwrap_or_default()
    }

    /// Every subject it is filtered to (`filter_subject` and `filter_subjects`), sorted.
    pub fn filters(&self) -> Vec<String> {
        let mut filters = self.config.filter_subjects.clone();
        if !self.config.filter_subject.is_empty() {
            filters.push(self.config.filter_subject.clone());
        }
        filters.sort();
        filters
    }
}

/// What to do with the messages a handler was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled (or nothing to do): ack.
    Ack,
    /// Can never be handled: dead-letter with this reason, terminate, move on.
    Poison(String),
    /// Failed because something it needs is unavailable: retry later, without limit.
    Transient(String),
}

/// Handles what a consumer delivers, `batch` messages at a time.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles `messages` (at least one); one outcome answers them all.
    async fn handle(&self, messages: &[Message]) -> Outcome;

    /// `handle` panicked with `panic`: what to answer. By default the messages are parked in
    /// the dead-letter stream with the panic's message.
    async fn on_panic(&self, _messages: &[Message], panic: &str) -> Outcome {
        Outcome::Poison(format!("the handler panicked: {panic}"))
    }
}

/// How one consumer loop runs.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The durable consumer's name: the dead-letter subject's last token and the health key.
    pub name: String,
    /// Subject and stream namespace (for the dead-letter stream).
    pub namespace: String,
    /// Messages per handler call.
    pub batch: usize,
    /// Handler calls at once.
    pub concurrency: usize,
    /// How long one pull waits for a first message (also the shutdown latency).
    pub fetch_expiry: Duration,
    /// The consumer's ack wait: work in hand sends a progress ack every quarter of it.
    pub ack_wait: Duration,
    /// The first NAK delay after a transient failure; it doubles with each delivery.
    pub retry_delay: Duration,
    /// The longest NAK delay (and pause between failed pulls).
    pub max_retry_delay: Duration,
}

impl ConsumerSettings {
    /// One message at a time; a 1 s pull, 10 s ack wait, NAK delays from 500 ms up to 5 s.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            batch: 1,
            concurrency: 1,
            fetch_expiry: Duration::from_secs(1),
            ack_wait: DEFAULT_ACK_WAIT,
            retry_delay: Duration::from_millis(500),
            max_retry_delay: DEFAULT_MAX_RETRY_DELAY,
        }
    }

    /// The NAK delay for a message that failed on its `delivered`-th delivery (1-based).
    pub fn retry_delay(&self, delivered: i64) -> Duration {
        backoff(self.retry_delay, self.max_retry_delay, delivered)
    }
}

/// The ack wait consumers use by default: short, because work in hand is heartbeated, so a
/// crashed process's messages are redelivered within seconds.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(10);
/// The longest NAK delay by default: after an outage, work resumes within seconds.
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// `max_deliver` of every consumer: unlimited. Only a handler's verdict parks a message.
pub const UNLIMITED_DELIVERIES: i64 = -1;

/// `base`, doubling with each delivery after the first, at most `max`.
pub fn backoff(base: Duration, max: Duration, delivered: i64) -> Duration {
    let doublings = u32::try_from(delivered.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    base.saturating_mul(2u32.saturating_pow(doublings)).min(max)
}

/// The progress-ack period for an ack wait.
pub fn heartbeat_period(ack_wait: Duration) -> Duration {
    (ack_wait / 4).max(Duration::from_millis(100))
}

/// Runs `work`, telling the server every `period` that `messages` are still being worked on.
pub async fn with_heartbeat<F: std::future::Future>(
    messages: &[Message],
    period: Duration,
    work: F,
) -> F::Output {
    tokio::pin!(work);
    let start = tokio::time::Instant::now() + period;
    let mut beat = tokio::time::interval_at(start, period);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = beat.tick() => {
                for message in messages {
                    answer(message, AckKind::Progress).await;
                }
            }
        }
    }
}

/// Answers `message`; a lost answer only means a redelivery.
pub async fn answer(message: &Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        tracing::warn!(error.message = %e, ?kind, "could not answer a message; it will be redelivered");
    }
}

/// How many times the server has delivered `message` (this time included).
pub fn delivered(message: &Message) -> i64 {
    message.info().map_or(1, |info| info.delivered)
}

/// What the handler tasks share.
struct Context<H> {
    settings: ConsumerSettings,
    js: jetstream::Context,
    health: Health,
    handler: H,
}

/// Runs the loop until `shutdown`, then finishes and answers the messages in hand.
pub async fn run<H: Handler>(
    consumer: PullConsumer,
    js: jetstream::Context,
    settings: ConsumerSettings,
    health: Health,
    handler: H,
    shutdown: CancellationToken,
) {
    let slots = settings.concurrency.max(1);
    let batch = settings.batch.max(1);
    let context = Arc::new(Context {
        settings,
        js,
        health,
        handler,
    });
    let name = context.settings.name.clone();
    let mut in_hand = JoinSet::new();
    let mut failures = 0;
    while !shutdown.is_cancelled() {
        while in_hand.try_join_next().is_some() {}
        if in_hand.len() >= slots {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = in_hand.join_next() => continue,
            }
        }
        // Only as many messages as free slots take: one never waits in a busy process.
        let max = (slots - in_hand.len()) * batch;
        let fetched = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            fetched = fetch(&consumer, max, context.settings.fetch_expiry) => fetched,
        };
        match fetched {
            Ok(messages) => {
                if failures > 0 {
                    failures = 0;
                    context.health.recover(&name);
                }
                let mut messages = messages.into_iter().peekable();
                while messages.peek().is_some() {
                    let chunk: Vec<Message> = messages.by_ref().take(batch).collect();
                    in_hand.spawn(work(context.clone(), chunk));
                }
            }
            Err(e) => {
                failures += 1;
                let reason = format!("could not pull: {e}");
                context.health.degrade(&name, &reason);
                let s = &context.settings;
                let pause = backoff(Duration::from_secs(1), s.max_retry_delay, failures);
                tracing::warn!(consumer = %name, error.message = %e, ?pause, "could not pull");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    while in_hand.join_next().await.is_some() {}
    // Acks are fire-and-forget publishes: make sure the last ones reached the server.
    if let Err(e) = context.js.client().flush().await {
        tracing::warn!(error.message = %e, "could not flush the last acks");
    }
}

/// One pull of up to `max` messages, waiting at most `expiry` for the first one.
pub async fn fetch(
    consumer: &PullConsumer,
    max: usize,
    expiry: Duration,
) -> Result<Vec<Message>, async_nats::Error> {
    let mut messages = consumer
        .fetch()
        .max_messages(max)
        .expires(expiry)
        .messages()
        .await?;
    let mut batch = Vec::with_capacity(max);
    while let Some(message) = messages.next().await {
        match message {
            Ok(message) => batch.push(message),
            Err(e) if batch.is_empty() => return Err(e),
            // Keep what arrived; the rest is redelivered after the ack wait.
            Err(e) => {
                tracing::warn!(error.message = %e, "a fetch ended early");
                break;
            }
        }
    }
    Ok(batch)
}

/// Hands `messages` to the handler and answers them. A batch found poison is handed over again
/// message by message, so only the messages that are poison on their own are parked.
async fn work<H: Handler>(context: Arc<Context<H>>, messages: Vec<Message>) {
    let outcome = attempt(&context, &messages).await;
    if matches!(outcome, Outcome::Poison(_)) && messages.len() > 1 {
        tracing::warn!(consumer = %context.settings.name, messages = messages.len(),
            "a batch is poison: handling its messages one by one");
        for message in messages.chunks(1) {
            let outcome = attempt(&context, message).await;
            settle(&context, message, outcome).await;
        }
        return;
    }
    settle(&context, &messages, outcome).await;
}

/// The handler's outcome for `messages`, heartbeating them while it works; a panic is handed
/// to [`Handler::on_panic`].
async fn attempt<H: Handler>(context: &Context<H>, messages: &[Message]) -> Outcome {
    let period = heartbeat_period(context.settings.ack_wait);
    let handled = AssertUnwindSafe(with_heartbeat(
        messages,
        period,
        context.handler.handle(messages),
    ))
    .catch_unwind()
    .await;
    match handled {
        Ok(outcome) => outcome,
        Err(payload) => {
            let panic = panic_message(payload.as_ref());
            tracing::error!(consumer = %context.settings.name, panic, "a handler panicked (a bug)");
            let on_panic = context.handler.on_panic(messages, &panic);
            match AssertUnwindSafe(with_heartbeat(messages, period, on_panic))
                .catch_unwind()
                .await
            {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Poison(format!("the handler panicked: {panic}")),
            }
        }
    }
}

/// Answers `messages` as `outcome` says.
async fn settle<H>(context: &Context<H>, messages: &[Message], outcome: Outcome) {
    let name = &context.settings.name;
    match outcome {
        Outcome::Ack => {
            context.health.recover(name);
            if let [message] = messages {
                // Confirmed, so finished work is not redone after a reconnect.
                if let Err(e) = message.double_ack().await {
                    tracing::warn!(error.message = %e, "could not ack a message; it will be redelivered");
                }
            } else {
                for message in messages {
                    answer(message, AckKind::Ack).await;
                }
            }
        }
        Outcome::Transient(reason) => {
            context.health.degrade(name, &reason);
            for message in messages {
                let delay = context.settings.retry_delay(delivered(message));
                tracing::debug!(consumer = %name, reason, ?delay, "retrying a message later");
                answer(message, AckKind::Nak(Some(delay))).await;
            }
        }
        Outcome::Poison(reason) => {
            for message in messages {
                park(context, message, &reason).await;
            }
        }
    }
}

/// Dead-letters `message` with `reason` and terminates it; if the dead-letter stream cannot
/// take it, it is retried later instead (never dropped).
async fn park<H>(context: &Context<H>, message: &Message, reason: &str) {
    let s = &context.settings;
    let Ok(info) = message.info() else {
        return answer(message, AckKind::Term).await;
    };
    tracing::error!(consumer = %s.name, stream_seq = info.stream_sequence, reason,
        "dead-lettering a message");
    let letter = DeadLetter {
        consumer: &s.name,
        stream: info.stream,
        stream_seq: info.stream_sequence,
        deliveries: info.delivered,
        reason,
    };
    match dead_letter::publish(&context.js, &s.namespace, message, &letter).await {
        Ok(()) => answer(message, AckKind::Term).await,
        Err(e) => {
            context
                .health
                .degrade(&s.name, &format!("could not dead-letter: {e}"));
            let delay = s.retry_delay(info.delivered);
            answer(message, AckKind::Nak(Some(delay))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_with_each_delivery_up_to_the_cap() {
        let s = ConsumerSettings::new("c", "t");
        assert_eq!(s.retry_delay(1), Duration::from_millis(500));
        assert_eq!(s.retry_delay(3), Duration::from_secs(2));
        assert_eq!(s.retry_delay(i64::MAX), DEFAULT_MAX_RETRY_DELAY);
    }

    #[test]
    fn progress_is_sent_four_times_per_ack_wait() {
        assert_eq!(
            heartbeat_period(Duration::from_secs(10)),
            Duration::from_millis(2500)
        );
    }
}
