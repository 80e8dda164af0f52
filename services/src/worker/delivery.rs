//! What the three loops share about messages: pulling a batch, keeping long work alive with
//! progress acks, answering, and the error a piece of work ends with.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// The longest NAK delay.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Why a job or event could not be handled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkError {
    /// The run cannot go on (e.g. its policy version does not compile): fail it.
    #[error("{0}")]
    Fatal(String),
    /// Postgres, NATS or the gateway failed, or a read model lags: try again later.
    #[error("{0}")]
    Transient(String),
}

impl WorkError {
    pub fn transient(context: &str, error: impl std::fmt::Display) -> Self {
        WorkError::Transient(format!("{context}: {error}"))
    }
}

impl From<tokio_postgres::Error> for WorkError {
    fn from(e: tokio_postgres::Error) -> Self {
        WorkError::transient("postgres", e)
    }
}

impl From<deadpool_postgres::PoolError> for WorkError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        WorkError::transient("postgres pool", e)
    }
}

/// One pull of up to `max` messages, waiting at most `expiry` for the first one.
pub(crate) async fn fetch(
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

/// Runs `work`, telling the server every `period` that `messages` are still being worked on.
pub(crate) async fn with_heartbeat<F: Future>(
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

/// The heartbeat period for an ack wait.
pub(crate) fn heartbeat_period(ack_wait: Duration) -> Duration {
    (ack_wait / 4).max(Duration::from_millis(100))
}

/// The NAK delay of the `delivered`-th delivery: `base`, doubling, at most 30 s.
pub(crate) fn retry_delay(base: Duration, delivered: i64) -> Duration {
    let doublings = delivered.clamp(1, 16) as u32 - 1;
    base.saturating_mul(1 << doublings).min(MAX_DELAY)
}

/// How many times the server has delivered `message` (this time included).
pub(crate) fn delivered(message: &Message) -> i64 {
    message.info().map_or(1, |info| info.delivered)
}

/// Answers `message`; a lost answer only means a redelivery.
pub(crate) async fn answer(message: &Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        tracing::warn!(error.message = %e, ?kind, "could not answer a message; it will be redelivered");
    }
}

/// Acks `message` and waits for the server to confirm, so a finished job is not redone.
pub(crate) async fn ack_confirmed(message: &Message) {
    if let Err(e) = message.double_ack().await {
        tracing::warn!(error.message = %e, "could not ack a message; it will be redelivered");
    }
}

/// Sleeps for `pause`; true if shutdown came first.
pub(crate) async fn sleep_or_shutdown(pause: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(pause) => false,
    }
}

/// The pause after the `failures`-th failed pull in a row: 1 s, doubling, at most 30 s.
pub(crate) fn fetch_pause(failures: u32) -> Duration {
    retry_delay(Duration::from_secs(1), i64::from(failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_with_each_delivery_up_to_a_cap() {
        let base = Duration::from_millis(500);
        assert_eq!(retry_delay(base, 1), base);
        assert_eq!(retry_delay(base, 3), Duration::from_secs(2));
        assert_eq!(retry_delay(base, 40), MAX_DELAY);
    }
}
