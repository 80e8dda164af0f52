//! Projector checkpoints: the `projector_checkpoints` row of each projector, written in the same
//! transaction as the read-model changes it covers.
//!
//! The stored `last_stream_seq` is a low-water mark: every message of the projector at or below
//! it is settled (applied, skipped or dead-lettered), so a redelivered message at or below it is
//! acked without being applied again. With many acks pending, messages do not come back in
//! order: a NAK'd message returns *after* later ones, and so do messages delivered to a previous
//! instance (killed before it acked) or lost on the way. While such a message may be out there,
//! [`Progress`] is *blind* and the checkpoint stays put, until the consumer's ack floor (all at
//! or below it acked or terminated) passes it. Meanwhile the models' own position and sequence
//! guards keep re-applied events harmless.

use async_nats::jetstream::consumer;
use tokio_postgres::Transaction;

/// Returns the checkpoint of `projector`, creating its row if missing, and locks the row until
/// the transaction ends, so two transactions of one projector never interleave their writes.
pub(crate) async fn lock(
    tx: &Transaction<'_>,
    projector: &str,
) -> Result<u64, tokio_postgres::Error> {
    // A no-op upsert: one round trip that creates the row if missing and locks it either way.
    let row = tx
        .query_one(
            "INSERT INTO projector_checkpoints AS c (projector) VALUES ($1)
             ON CONFLICT (projector) DO UPDATE SET projector = c.projector
             RETURNING c.last_stream_seq",
            &[&projector],
        )
        .await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// Moves the checkpoint of `projector` forward (never back) to `stream_seq`, and records the
/// highest event position applied so far.
pub(crate) async fn advance(
    tx: &Transaction<'_>,
    projector: &str,
    stream_seq: u64,
    position: i64,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "UPDATE projector_checkpoints
         SET last_stream_seq = GREATEST(last_stream_seq, $2),
             last_position = GREATEST(last_position, $3),
             updated_at = now()
         WHERE projector = $1",
        &[&projector, &to_i64(stream_seq), &position],
    )
    .await?;
    Ok(())
}

fn to_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// What this projector settled, and whether some message it cannot name may be unsettled.
#[derive(Debug)]
pub(crate) struct Progress {
    highest_settled: u64,
    /// The consumer sequence the next delivery should carry, when known.
    next_delivery: Option<u64>,
    blind: Option<Blind>,
}

/// Until when the checkpoint must not move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blind {
    /// Until the ack floor reaches this stream sequence.
    Until(u64),
    /// Until the ack floor reaches the last stream sequence delivered when next looked at.
    UntilDelivered,
}

/// What the server says about the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConsumerState {
    /// Every message at or below this stream sequence is acked or terminated.
    pub ack_floor: u64,
    /// The highest stream sequence delivered so far.
    pub delivered_stream: u64,
    /// The consumer sequence of the last delivery.
    pub delivered_consumer: u64,
    /// Messages delivered and not yet acked.
    pub ack_pending: usize,
}

impl ConsumerState {
    pub(crate) fn of(info: &consumer::Info) -> Self {
        Self {
            ack_floor: info.ack_floor.stream_sequence,
            delivered_stream: info.delivered.stream_sequence,
            delivered_consumer: info.delivered.consumer_sequence,
            ack_pending: info.num_ack_pending,
        }
    }
}

impl Progress {
    /// Starts where the consumer is; blind if messages delivered to a previous instance are
    /// still unacked.
    pub(crate) fn resume(consumer: ConsumerState) -> Self {
        let blind = (consumer.ack_pending > 0).then_some(Blind::Until(consumer.delivered_stream));
        Self {
            highest_settled: consumer.ack_floor,
            next_delivery: Some(consumer.delivered_consumer + 1),
            blind,
        }
    }

    /// Notes a delivery; a skipped consumer sequence means a delivery never reached us.
    pub(crate) fn observe(&mut self, consumer_seq: u64) {
        if self.next_delivery.is_some_and(|next| next != consumer_seq) {
            self.blind = Some(Blind::UntilDelivered);
        }
        self.next_delivery = Some(consumer_seq + 1);
    }

    /// Notes that the message at `stream_seq` was NAK'd and will come back later.
    pub(crate) fn await_redelivery(&mut self, stream_seq: u64) {
        self.blind = match self.blind {
            Some(Blind::Until(until)) => Some(Blind::Until(until.max(stream_seq))),
            Some(Blind::UntilDelivered) => Some(Blind::UntilDelivered),
            None => Some(Blind::Until(stream_seq)),
        };
    }

    pub(crate) fn is_blind(&self) -> bool {
        self.blind.is_some()
    }

    /// Catches up with the server's view; sight returns once the ack floor passed every message
    /// that may have been unsettled.
    pub(crate) fn look(&mut self, consumer: ConsumerState) {
        self.highest_settled = self.highest_settled.max(consumer.ack_floor);
        let until = match self.blind {
            None => return,
            Some(Blind::Until(until)) => until,
            Some(Blind::UntilDelivered) => consumer.delivered_stream,
        };
        self.blind = (consumer.ack_floor < until).then_some(Blind::Until(until));
    }

    /// The checkpoint to store together with settling `settled`: the highest stream sequence
    /// settled so far, or 0 (the stored one stays) while blind.
    pub(crate) fn checkpoint_with(&self, settled: &[u64]) -> u64 {
        if self.is_blind() {
            return 0;
        }
        settled.iter().copied().fold(self.highest_settled, u64::max)
    }

    /// Records that `settled` committed.
    pub(crate) fn settle(&mut self, settled: &[u64]) {
        self.highest_settled = settled.iter().copied().fold(self.highest_settled, u64::max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(ack_floor: u64, delivered_stream: u64, ack_pending: usize) -> ConsumerState {
        ConsumerState {
            ack_floor,
            delivered_stream,
            delivered_consumer: 10,
            ack_pending,
        }
    }

    #[test]
    fn the_checkpoint_is_the_highest_settled_sequence() {
        let mut progress = Progress::resume(consumer(3, 3, 0));
        assert_eq!(progress.checkpoint_with(&[7, 5]), 7);
        progress.settle(&[7, 5]);
        assert_eq!(progress.checkpoint_with(&[]), 7);
    }

    #[test]
    fn a_projector_resuming_with_unacked_messages_keeps_the_checkpoint_until_they_are_acked() {
        let mut progress = Progress::resume(consumer(3, 8, 2));
        assert_eq!(progress.checkpoint_with(&[9, 10]), 0);
        progress.look(consumer(7, 10, 1));
        assert_eq!(progress.checkpoint_with(&[11]), 0);
        progress.look(consumer(8, 11, 0));
        assert_eq!(progress.checkpoint_with(&[11]), 11);
    }

    #[test]
    fn a_nak_keeps_the_checkpoint_until_the_message_is_acked() {
        let mut progress = Progress::resume(consumer(0, 0, 0));
        progress.await_redelivery(3);
        progress.settle(&[1, 2, 4]);
        assert_eq!(progress.checkpoint_with(&[5]), 0);
        progress.look(consumer(2, 5, 1));
        assert!(progress.is_blind());
        progress.look(consumer(5, 5, 0));
        assert_eq!(progress.checkpoint_with(&[6]), 6);
    }

    #[test]
    fn a_skipped_consumer_sequence_blinds_until_everything_delivered_then_is_acked() {
        let mut progress = Progress::resume(consumer(0, 0, 0));
        progress.observe(11);
        progress.observe(13);
        assert_eq!(progress.checkpoint_with(&[20]), 0);
        progress.look(consumer(15, 20, 1));
        progress.look(consumer(19, 21, 1));
        assert!(
            progress.is_blind(),
            "blind until what was delivered at the first look"
        );
        progress.look(consumer(20, 21, 1));
        assert!(!progress.is_blind());
    }

    #[test]
    fn consecutive_deliveries_keep_sight() {
        let mut progress = Progress::resume(consumer(0, 0, 0));
        progress.observe(11);
        progress.observe(12);
        assert!(!progress.is_blind());
    }
}
