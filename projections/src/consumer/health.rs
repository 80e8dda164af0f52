//! A role's health as its consumers report it: healthy, or degraded (an outage is being
//! ridden out) with the reason and since when. Cheap to clone; every clone sees the same state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One consumer's trouble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degraded {
    /// The consumer that reported it (`<ns>_workers`, `<ns>_policies`, ...).
    pub consumer: String,
    /// The last failure it retried.
    pub reason: String,
    /// When it began failing.
    pub since: Instant,
}

/// The shared health of one or more consumers.
#[derive(Debug, Clone, Default)]
pub struct Health {
    degraded: Arc<Mutex<BTreeMap<String, Degraded>>>,
}

impl Health {
    /// Marks `consumer` degraded (logged once, when it starts).
    pub fn degrade(&self, consumer: &str, reason: &str) {
        let mut degraded = self.lock();
        match degraded.get_mut(consumer) {
            Some(d) => d.reason = reason.to_owned(),
            None => {
                tracing::warn!(
                    consumer,
                    reason,
                    "consumer degraded: retrying until it recovers"
                );
                degraded.insert(
                    consumer.to_owned(),
                    Degraded {
                        consumer: consumer.to_owned(),
                        reason: reason.to_owned(),
                        since: Instant::now(),
                    },
                );
            }
        }
    }

    /// Marks `consumer` healthy again.
    pub fn recover(&self, consumer: &str) {
        if let Some(d) = self.lock().remove(consumer) {
            tracing::info!(consumer, degraded_for = ?d.since.elapsed(), "consumer recovered");
        }
    }

    /// The consumers degraded now; empty when healthy.
    pub fn degraded(&self) -> Vec<Degraded> {
        self.lock().values().cloned().collect()
    }

    /// True if no consumer is degraded.
    pub fn is_healthy(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Degraded>> {
        // A panic while holding this lock leaves a map that is still valid.
        self.degraded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_is_degraded_until_it_recovers() {
        let health = Health::default();
        health.degrade("c", "no Postgres");
        health.degrade("c", "still no Postgres");
        assert_eq!(health.clone().degraded()[0].reason, "still no Postgres");
        health.recover("c");
        assert!(health.is_healthy());
    }
}
