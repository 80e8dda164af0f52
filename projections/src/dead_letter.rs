//! Dead letters: the stream `<NS>_DLQ` (subjects `<ns>.dlq.>`), where a projector parks a
//! message it cannot apply, on `<ns>.dlq.<consumer>`, before terminating it on its consumer.
//!
//! A dead letter is the original body with the original headers (minus the `Nats-*` ones, which
//! would steer the publish), plus the reason and where the original lives. Its `Nats-Msg-Id`
//! is `<consumer>:<stream_seq>`, so parking the same message twice (a crash between the publish
//! and the Term) stores it once.

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use gatehouse_events::{metadata, subjects};

use crate::error::ProjectorError;

/// Header: the stream the dead letter was read from.
pub const HEADER_DLQ_STREAM: &str = "Gatehouse-Dead-Letter-Stream";
/// Header: its sequence in that stream.
pub const HEADER_DLQ_SEQUENCE: &str = "Gatehouse-Dead-Letter-Sequence";
/// Header: the subject it was published on.
pub const HEADER_DLQ_SUBJECT: &str = "Gatehouse-Dead-Letter-Subject";
/// Header: how many times it was delivered to the consumer.
pub const HEADER_DLQ_DELIVERIES: &str = "Gatehouse-Dead-Letter-Deliveries";

/// Longest reason kept in a header.
const MAX_REASON_LEN: usize = 1_000;

/// Creates the dead-letter stream of namespace `ns`, or brings its config up to date.
pub async fn ensure_stream(js: &jetstream::Context, ns: &str) -> Result<(), ProjectorError> {
    let name = subjects::dead_letter_stream(ns);
    js.create_or_update_stream(stream_config(ns))
        .await
        .map_err(|e| ProjectorError::jetstream(format!("create or update stream {name}"), e))?;
    Ok(())
}

/// The dead-letter stream's configuration (what [`ensure_stream`] creates).
pub fn stream_config(ns: &str) -> stream::Config {
    stream::Config {
        name: subjects::dead_letter_stream(ns),
        description: Some("Gatehouse: messages consumers could not handle".into()),
        subjects: vec![subjects::all_dead_letters(ns)],
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// Where a parked message came from and why it was parked.
pub struct DeadLetter<'a> {
    pub consumer: &'a str,
    pub stream: &'a str,
    pub stream_seq: u64,
    pub deliveries: i64,
    pub reason: &'a str,
}

/// Copies `message` to the dead-letter subject of `letter.consumer` and waits for the PubAck.
pub async fn publish(
    js: &jetstream::Context,
    ns: &str,
    message: &jetstream::Message,
    letter: &DeadLetter<'_>,
) -> Result<(), async_nats::Error> {
    let headers = headers(message.headers.as_ref(), message.subject.as_str(), letter);
    js.publish_with_headers(
        subjects::dead_letter(ns, letter.consumer),
        headers,
        message.payload.clone(),
    )
    .await?
    .await?;
    Ok(())
}

fn headers(original: Option<&HeaderMap>, subject: &str, letter: &DeadLetter<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in original.into_iter().flat_map(HeaderMap::iter) {
        let steers_the_publish = AsRef::<str>::as_ref(name)
            .to_ascii_lowercase()
            .starts_with("nats-");
        if !steers_the_publish {
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("{}:{}", letter.consumer, letter.stream_seq).as_str(),
    );
    headers.insert(
        metadata::HEADER_DLQ_REASON,
        header_safe(letter.reason).as_str(),
    );
    headers.insert(HEADER_DLQ_STREAM, letter.stream);
    headers.insert(HEADER_DLQ_SEQUENCE, letter.stream_seq.to_string().as_str());
    headers.insert(HEADER_DLQ_SUBJECT, subject);
    headers.insert(
        HEADER_DLQ_DELIVERIES,
        letter.deliveries.to_string().as_str(),
    );
    headers
}

/// One line, at most [`MAX_REASON_LEN`] characters: a header value cannot span lines.
fn header_safe(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_LEN)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> DeadLetter<'static> {
        DeadLetter {
            consumer: "t_1_policies",
            stream: "T_1_EVENTS",
            stream_seq: 42,
            deliveries: 9,
            reason: "unusable event:\nmissing field `name`",
        }
    }

    fn original() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", "policy:p1:3");
        h.insert("Nats-Expected-Last-Subject-Sequence", "7");
        h.insert(metadata::HEADER_SEQUENCE, "3");
        h
    }

    #[test]
    fn a_dead_letter_keeps_the_gatehouse_headers_and_drops_the_nats_ones() {
        let h = headers(
            Some(&original()),
            "t_1.events.policy.p1.PolicyCreated",
            &letter(),
        );
        assert_eq!(
            h.get(metadata::HEADER_SEQUENCE).map(|v| v.as_str()),
            Some("3")
        );
        assert!(h.get("Nats-Expected-Last-Subject-Sequence").is_none());
    }

    #[test]
    fn a_dead_letter_is_deduplicated_by_consumer_and_stream_sequence() {
        let h = headers(Some(&original()), "s", &letter());
        assert_eq!(
            h.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some("t_1_policies:42")
        );
    }

    #[test]
    fn a_dead_letter_says_why_and_where_from_on_one_line() {
        let h = headers(None, "t_1.events.policy.p1.PolicyCreated", &letter());
        assert_eq!(
            h.get(metadata::HEADER_DLQ_REASON).map(|v| v.as_str()),
            Some("unusable event: missing field `name`")
        );
        assert_eq!(
            h.get(HEADER_DLQ_STREAM).map(|v| v.as_str()),
            Some("T_1_EVENTS")
        );
        assert_eq!(h.get(HEADER_DLQ_SEQUENCE).map(|v| v.as_str()), Some("42"));
        assert_eq!(h.get(HEADER_DLQ_DELIVERIES).map(|v| v.as_str()), Some("9"));
    }
}
