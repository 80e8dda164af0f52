//! How a projector runs: batch size, consumer limits, retry delays, health, and the test hooks.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gatehouse_events::subjects;

use crate::consumer::{self, Health};

/// Settings of one projector (every read model's projector uses the same ones).
#[derive(Clone, Debug)]
pub struct ProjectorSettings {
    /// Subject, stream and consumer namespace (default `gatehouse`).
    pub namespace: String,
    /// Most messages fetched and applied in one transaction (default 500).
    pub batch_size: usize,
    /// How long one fetch waits for a first message (default 5 s). Shutdown does not wait for it.
    pub fetch_expiry: Duration,
    /// How long the server waits for an ack before redelivering (default 10 s). A batch in hand
    /// is kept alive with progress acks, so a crashed projector's batch comes back this soon.
    pub ack_wait: Duration,
    /// Messages delivered and not yet acked (default 1000; raised to `batch_size` if lower).
    pub max_ack_pending: i64,
    /// The NAK delay after a first transient failure; it doubles with each delivery (default
    /// 500 ms). There is no delivery budget: only poison is dead-lettered, never an outage.
    pub retry_delay: Duration,
    /// The longest NAK delay (default 5 s): after an outage, projection resumes within seconds.
    pub max_retry_delay: Duration,
    /// The projectors' degraded consumers (an outage being ridden out); shared by clones.
    pub health: Health,
    #[doc(hidden)]
    pub hooks: Hooks,
}

impl ProjectorSettings {
    /// The defaults, in namespace `namespace`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            batch_size: 500,
            fetch_expiry: Duration::from_secs(5),
            ack_wait: consumer::DEFAULT_ACK_WAIT,
            max_ack_pending: 1_000,
            retry_delay: Duration::from_millis(500),
            max_retry_delay: consumer::DEFAULT_MAX_RETRY_DELAY,
            health: Health::default(),
            hooks: Hooks::default(),
        }
    }

    /// The NAK delay for a message that failed on its `delivered`-th delivery (1-based).
    pub(crate) fn nak_delay(&self, delivered: i64) -> Duration {
        consumer::backoff(self.retry_delay, self.max_retry_delay, delivered)
    }
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        Self::new(subjects::DEFAULT_NAMESPACE)
    }
}

/// An async callback the projector awaits at a fixed point of its loop.
#[doc(hidden)]
pub type Hook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Test hooks: an integration test pauses the projector at a point, aborts its task there
/// (the open transaction rolls back, nothing is acked) and restarts it. Unset, they cost nothing.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct Hooks {
    /// Awaited after a batch's writes and checkpoint, before COMMIT.
    pub before_commit: Option<Hook>,
    /// Awaited after COMMIT, before the batch's messages are acked.
    pub after_commit_before_ack: Option<Hook>,
}

impl Hooks {
    pub(crate) async fn before_commit(&self) {
        if let Some(hook) = &self.before_commit {
            hook().await;
        }
    }

    pub(crate) async fn after_commit_before_ack(&self) {
        if let Some(hook) = &self.after_commit_before_ack {
            hook().await;
        }
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("before_commit", &self.before_commit.is_some())
            .field(
                "after_commit_before_ack",
                &self.after_commit_before_ack.is_some(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nak_delay_doubles_with_each_delivery() {
        let s = ProjectorSettings::default();
        assert_eq!(s.nak_delay(1), Duration::from_millis(500));
        assert_eq!(s.nak_delay(2), Duration::from_secs(1));
        assert_eq!(s.nak_delay(4), Duration::from_secs(4));
    }

    #[test]
    fn the_nak_delay_is_capped_at_a_few_seconds() {
        let s = ProjectorSettings::default();
        assert_eq!(s.nak_delay(30), Duration::from_secs(5));
        assert_eq!(s.nak_delay(i64::MAX), Duration::from_secs(5));
    }
}
