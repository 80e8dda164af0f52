//! When a batch fails: each of its messages in a transaction of its own, so one bad message
//! does not hold up the rest. A transient failure (an outage, a sequence gap) is NAK'd with a
//! capped delay growing with the deliveries, without limit, and the projector is reported
//! degraded; a poison message (undecodable, or refused by Postgres on its own) is copied at once
//! to the dead-letter stream, the checkpoint moves past it, and it is terminated.

use async_nats::jetstream::AckKind;

use crate::batch::{Failure, Projector, Tally};
use crate::checkpoint;
use crate::dead_letter::{self, DeadLetter};
use crate::delivery::Delivery;
use crate::error::error_chain;

/// What happened to one message.
enum Verdict {
    Applied,
    /// At or below the checkpoint: already applied.
    Skipped,
    RetryLater(String),
    DeadLetter(String),
}

impl Projector {
    /// Applies each message of a failed batch on its own, and answers each.
    pub(crate) async fn one_by_one(&mut self, batch: &[Delivery]) -> Tally {
        let mut tally = Tally::default();
        // Once the database is unreachable, the rest of the batch is NAK'd without trying.
        let mut outage: Option<String> = None;
        for delivery in batch {
            let verdict = match &outage {
                Some(reason) => Verdict::RetryLater(reason.clone()),
                None => match self.apply_one(delivery).await {
                    Ok(verdict) => verdict,
                    Err(failure) => {
                        let reason = error_chain(&failure);
                        if failure.is_outage() {
                            outage = Some(reason.clone());
                        }
                        if failure.is_transient() {
                            Verdict::RetryLater(reason)
                        } else {
                            Verdict::DeadLetter(reason)
                        }
                    }
                },
            };
            self.settle(delivery, verdict, &mut tally).await;
        }
        tally
    }

    async fn apply_one(&mut self, delivery: &Delivery) -> Result<Verdict, Failure> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if delivery.stream_seq <= checkpoint::lock(&tx, self.model.name()).await? {
            return Ok(Verdict::Skipped);
        }
        let event = delivery.event()?;
        self.apply(&tx, event).await?;
        self.commit(tx, &[delivery.stream_seq], event.position)
            .await?;
        Ok(Verdict::Applied)
    }

    async fn settle(&mut self, delivery: &Delivery, verdict: Verdict, tally: &mut Tally) {
        match verdict {
            Verdict::Applied => {
                self.settings.hooks.after_commit_before_ack().await;
                delivery.ack(AckKind::Ack).await;
                tally.applied += 1;
            }
            Verdict::Skipped => {
                delivery.ack(AckKind::Ack).await;
                tally.skipped += 1;
            }
            Verdict::RetryLater(reason) => {
                tracing::warn!(stream_seq = delivery.stream_seq, delivered = delivery.delivered,
                    %reason, "could not apply a message; retrying later");
                self.settings.health.degrade(&self.consumer_name, &reason);
                self.retry_later(delivery).await;
                tally.retried += 1;
            }
            Verdict::DeadLetter(reason) => match self.dead_letter(delivery, &reason).await {
                Ok(()) => tally.dead_lettered += 1,
                Err(e) => {
                    tracing::error!(error.message = %e, error.cause_chain = ?e,
                        stream_seq = delivery.stream_seq, "could not dead-letter a message");
                    self.retry_later(delivery).await;
                    tally.retried += 1;
                }
            },
        }
    }

    async fn retry_later(&mut self, delivery: &Delivery) {
        self.progress.await_redelivery(delivery.stream_seq);
        let delay = self.settings.nak_delay(delivery.delivered);
        delivery.ack(AckKind::Nak(Some(delay))).await;
    }

    /// Parks the message, moves the checkpoint past it, and terminates it.
    async fn dead_letter(
        &mut self,
        delivery: &Delivery,
        reason: &str,
    ) -> Result<(), async_nats::Error> {
        tracing::error!(stream_seq = delivery.stream_seq, delivered = delivery.delivered, %reason,
            "dead-lettering a message");
        let letter = DeadLetter {
            consumer: &self.consumer_name,
            stream: &delivery.stream,
            stream_seq: delivery.stream_seq,
            deliveries: delivery.delivered,
            reason,
        };
        dead_letter::publish(
            &self.js,
            &self.settings.namespace,
            &delivery.message,
            &letter,
        )
        .await?;
        if let Err(e) = self.store_checkpoint(&[delivery.stream_seq]).await {
            // Harmless: the next committed batch carries the checkpoint past it.
            tracing::warn!(error.message = %e, error.cause_chain = ?e,
                "could not move the checkpoint past a dead letter");
        }
        delivery.ack(AckKind::Term).await;
        self.progress.settle(&[delivery.stream_seq]);
        Ok(())
    }
}
