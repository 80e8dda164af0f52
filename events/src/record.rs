//! One stored event as it travels: the body of every message on the events stream, the rows
//! of `audit replay`, and what projectors apply.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A stored event with its position and metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EventRecord {
    /// The event's global position in the event store (gap-free only per committed order).
    pub position: i64,
    /// The aggregate type, e.g. `policy`.
    pub aggregate: String,
    pub aggregate_id: String,
    /// The event's sequence within its aggregate, from 1, gap-free.
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    /// The event as stored (serde's externally tagged JSON of the event enum).
    pub payload: serde_json::Value,
    /// Actor, command, correlation and causation ids (see [`crate::metadata`]).
    pub metadata: serde_json::Value,
}

impl EventRecord {
    /// A metadata value, or `""` when absent.
    pub fn meta(&self, key: &str) -> &str {
        self.metadata
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("")
    }

    /// The `Nats-Msg-Id` the relay publishes this event with: `<aggregate>:<id>:<sequence>`.
    pub fn message_id(&self) -> String {
        message_id(&self.aggregate, &self.aggregate_id, self.sequence)
    }
}

/// `<aggregate>:<id>:<sequence>`: the stream-wide deduplication key of one event.
pub fn message_id(aggregate: &str, aggregate_id: &str, sequence: i64) -> String {
    format!("{aggregate}:{aggregate_id}:{sequence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_names_aggregate_id_and_sequence() {
        assert_eq!(message_id("policy", "p1", 7), "policy:p1:7");
    }
}
