//! One message delivered to a projector: its JetStream metadata (stream sequence, delivery
//! count), the [`EventRecord`] decoded from its body, and how it is answered.

use async_nats::jetstream::{self, AckKind};
use gatehouse_events::record::EventRecord;

use crate::model::ApplyError;

/// A delivered message and what the runtime reads from it.
pub(crate) struct Delivery {
    pub message: jetstream::Message,
    pub stream: String,
    pub stream_seq: u64,
    /// Every delivery of the consumer has the next consumer sequence (redeliveries too).
    pub consumer_seq: u64,
    /// Deliveries so far, this one included.
    pub delivered: i64,
    /// Messages still pending for the consumer after this one (the projector's lag).
    pub pending: u64,
    record: Result<EventRecord, String>,
}

impl Delivery {
    /// Fails only for a message without JetStream metadata, which cannot be acked either.
    pub(crate) fn new(message: jetstream::Message) -> Result<Self, async_nats::Error> {
        let info = message.info()?;
        let (stream, stream_seq) = (info.stream.to_owned(), info.stream_sequence);
        let consumer_seq = info.consumer_sequence;
        let (delivered, pending) = (info.delivered, info.pending);
        let record = serde_json::from_slice(&message.payload)
            .map_err(|e| format!("undecodable event record: {e}"));
        Ok(Self {
            message,
            stream,
            stream_seq,
            consumer_seq,
            delivered,
            pending,
            record,
        })
    }

    pub(crate) fn event(&self) -> Result<&EventRecord, ApplyError> {
        self.record
            .as_ref()
            .map_err(|e| ApplyError::Poison(e.clone()))
    }

    /// Answers the message; a lost answer only means a redelivery.
    pub(crate) async fn ack(&self, kind: AckKind) {
        if let Err(e) = self.message.ack_with(kind).await {
            tracing::warn!(error.message = %e, error.cause_chain = ?e, stream_seq = self.stream_seq,
                ?kind, "could not answer a message; it will be redelivered");
        }
    }
}
