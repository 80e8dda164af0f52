//! From fetched catalog messages to what one transaction writes: the last change of each item
//! (a [`Row`]), and a [`Rejection`] for every message that is not a valid change. Pure: no
//! NATS, no SQL, so every rule is unit-tested here.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

#[cfg(test)]
use super::change::DELETED_STATUS;
use super::change::{self, ValidChange};

/// Longest payload copied into a rejection (the rest is cut).
const MAX_REJECTED_PAYLOAD: usize = 64 * 1024;

/// One message as the stream stored it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message<'a> {
    pub subject: &'a str,
    pub payload: &'a [u8],
    pub stream_seq: u64,
    /// When the stream stored it: the item's `updated_at`.
    pub published: DateTime<Utc>,
}

/// The state of one item after a change, as written to `catalog_items`.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub item_id: String,
    /// For a delete: [`DELETED_STATUS`], kept only when the item is new to the catalog.
    pub status: String,
    pub deleted: bool,
    /// A JSON object; for a delete `{}`, kept only when the item is new to the catalog.
    pub attributes: Box<RawValue>,
    pub updated_at: DateTime<Utc>,
    pub stream_seq: i64,
    /// The stream sequence of the upsert whose status and attributes the row holds: its own,
    /// or, for a delete, that of an earlier upsert of the batch it carries; `None` for a delete
    /// carrying none (the table's content stays).
    pub content_seq: Option<i64>,
}

/// A message that is no valid catalog change, as written to `catalog_rejections`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub stream_seq: i64,
    pub subject: String,
    pub error: String,
    pub payload: String,
}

/// What one transaction writes.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The last change of each item, by stream sequence.
    pub rows: Vec<Row>,
    pub rejections: Vec<Rejection>,
    /// Valid changes overtaken by a later change of the same item in the same batch.
    pub superseded: usize,
}

/// A delete keeps the item's last status and attributes: when a batch holds an upsert and a
/// later delete of one item, the delete carries the upsert's content (the table may not have
/// it), that of the latest such upsert whatever the delivery order.
fn carry_content(newer: &mut Row, older: Row) {
    if newer.deleted && older.content_seq > newer.content_seq {
        newer.status = older.status;
        newer.attributes = older.attributes;
        newer.content_seq = older.content_seq;
    }
}

impl Plan {
    /// Decodes `messages` and keeps the last change per item: the one with the highest stream
    /// sequence, whatever the delivery order (a redelivered message comes after later ones).
    pub(crate) fn of<'a>(messages: impl IntoIterator<Item = Message<'a>>) -> Self {
        let mut last: HashMap<String, Row> = HashMap::new();
        let mut plan = Plan::default();
        for message in messages {
            match decode(message) {
                Ok(row) => match last.get_mut(&row.item_id) {
                    Some(kept) => {
                        plan.superseded += 1;
                        if kept.stream_seq < row.stream_seq {
                            let older = std::mem::replace(kept, row);
                            carry_content(kept, older);
                        } else {
                            carry_content(kept, row);
                        }
                    }
                    None => {
                        last.insert(row.item_id.clone(), row);
                    }
                },
                Err(rejection) => plan.rejections.push(rejection),
            }
        }
        plan.rows = last.into_values().collect();
        plan
    }

    /// Drops what lies at or below `checkpoint` (already written).
    pub(crate) fn after(mut self, checkpoint: u64) -> Self {
        let checkpoint = to_i64(checkpoint);
        self.rows.retain(|row| row.stream_seq > checkpoint);
        self.rejections.retain(|r| r.stream_seq > checkpoint);
        self
    }
}

/// One message as a row, or why it is none ([`change::read_change`] decides).
pub(crate) fn decode(message: Message<'_>) -> Result<Row, Rejection> {
    let ValidChange {
        id,
        status,
        deleted,
        attributes,
    } = change::read_change(message.subject, message.payload)
        .map_err(|error| rejection(message, error))?;
    let stream_seq = to_i64(message.stream_seq);
    Ok(Row {
        item_id: id.into_owned(),
        status,
        deleted,
        attributes,
        updated_at: message.published,
        stream_seq,
        content_seq: (!deleted).then_some(stream_seq),
    })
}

/// A rejection of `message` for `error`.
pub(crate) fn rejection(message: Message<'_>, error: String) -> Rejection {
    let cut = &message.payload[..message.payload.len().min(MAX_REJECTED_PAYLOAD)];
    // A text column holds neither invalid UTF-8 nor NUL.
    let payload = String::from_utf8_lossy(cut).replace('\0', "\u{FFFD}");
    Rejection {
        stream_seq: to_i64(message.stream_seq),
        subject: message.subject.to_owned(),
        error,
        payload,
    }
}

fn to_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn at(seq: u64, subject: &'static str, payload: &'static str) -> Message<'static> {
        Message {
            subject,
            payload: payload.as_bytes(),
            stream_seq: seq,
            published: DateTime::from_timestamp(1_700_000_000 + seq as i64, 0).unwrap(),
        }
    }

    fn upsert(seq: u64, status: &'static str) -> Message<'static> {
        let payload = match status {
            "ready" => r#"{"op":"upsert","id":"m-1","status":"ready","attributes":{"q":1}}"#,
            _ => r#"{"op":"upsert","id":"m-1","status":"pending","attributes":{"q":2}}"#,
        };
        at(seq, "t_1.catalog.items.m-1", payload)
    }

    fn error_of(message: Message<'_>) -> String {
        decode(message).unwrap_err().error
    }

    #[test]
    fn an_upsert_becomes_a_row_stamped_with_its_stream_position_and_time() {
        let row = decode(upsert(7, "ready")).unwrap();
        assert_eq!(row.item_id, "m-1");
        assert_eq!(row.status, "ready");
        assert!(!row.deleted);
        assert_eq!(
            serde_json::from_str::<Value>(row.attributes.get()).unwrap(),
            json!({"q": 1})
        );
        assert_eq!(row.stream_seq, 7);
        assert_eq!(row.updated_at.timestamp(), 1_700_000_007);
    }

    #[test]
    fn a_delete_becomes_a_deleted_row_with_no_attributes() {
        let row = decode(at(
            3,
            "t_1.catalog.items.m-1",
            r#"{"op":"delete","id":"m-1"}"#,
        ));
        let row = row.unwrap();
        assert!(row.deleted);
        assert_eq!(row.status, DELETED_STATUS);
        assert_eq!(row.attributes.get(), "{}");
    }

    #[test]
    fn the_last_change_of_an_item_in_a_batch_wins_whatever_the_delivery_order() {
        let plan = Plan::of([
            upsert(5, "pending"),
            upsert(9, "ready"),
            upsert(2, "pending"),
        ]);
        assert_eq!(plan.rows.len(), 1);
        assert_eq!(plan.rows[0].stream_seq, 9);
        assert_eq!(plan.rows[0].status, "ready");
        assert_eq!(plan.superseded, 2);
    }

    fn delete(seq: u64) -> Message<'static> {
        at(
            seq,
            "t_1.catalog.items.m-1",
            r#"{"op":"delete","id":"m-1"}"#,
        )
    }

    #[test]
    fn a_delete_carries_the_content_of_the_latest_upsert_before_it_in_its_batch() {
        for order in [
            vec![
                upsert(5, "ready"),
                upsert(7, "pending"),
                delete(8),
                delete(9),
            ],
            vec![
                delete(9),
                upsert(5, "ready"),
                delete(8),
                upsert(7, "pending"),
            ],
        ] {
            let plan = Plan::of(order);
            let row = &plan.rows[0];
            assert_eq!((row.stream_seq, row.deleted), (9, true));
            assert_eq!((row.status.as_str(), row.content_seq), ("pending", Some(7)));
            assert_eq!(row.attributes.get(), r#"{"q":2}"#);
        }
    }

    #[test]
    fn a_delete_alone_in_its_batch_carries_no_content() {
        let plan = Plan::of([delete(4)]);
        assert_eq!(plan.rows[0].content_seq, None);
    }

    #[test]
    fn an_upsert_after_a_delete_in_a_batch_is_the_item() {
        let plan = Plan::of([upsert(5, "pending"), delete(6), upsert(7, "ready")]);
        let row = &plan.rows[0];
        assert_eq!(
            (row.deleted, row.status.as_str(), row.content_seq),
            (false, "ready", Some(7))
        );
    }

    #[test]
    fn a_message_that_is_not_json_is_rejected_with_its_position_subject_and_payload() {
        let r = decode(at(4, "t_1.catalog.items.m-1", "{oops")).unwrap_err();
        assert_eq!(r.stream_seq, 4);
        assert_eq!(r.subject, "t_1.catalog.items.m-1");
        assert_eq!(r.payload, "{oops");
        assert!(r.error.starts_with("not a catalog change:"), "{}", r.error);
    }

    #[test]
    fn an_unknown_op_or_field_is_rejected() {
        let op = at(1, "t_1.catalog.items.m-1", r#"{"op":"merge","id":"m-1"}"#);
        assert!(error_of(op).contains("merge"));
        let field = r#"{"op":"delete","id":"m-1","why":"x"}"#;
        assert!(error_of(at(1, "t_1.catalog.items.m-1", field)).contains("why"));
    }

    #[test]
    fn attributes_that_are_not_an_object_are_rejected() {
        let body = r#"{"op":"upsert","id":"m-1","status":"ready","attributes":[1]}"#;
        assert!(error_of(at(1, "t_1.catalog.items.m-1", body)).starts_with("not a catalog change"));
    }

    #[test]
    fn an_invalid_status_is_rejected_naming_the_field() {
        let body = r#"{"op":"upsert","id":"m-1","status":"Ready","attributes":{}}"#;
        assert!(error_of(at(1, "t_1.catalog.items.m-1", body)).starts_with("status:"));
    }

    #[test]
    fn a_rejected_payload_is_stored_as_text_without_nul() {
        let r = decode(Message {
            payload: b"\0\xff",
            ..upsert(1, "ready")
        })
        .unwrap_err();
        assert_eq!(r.payload, "\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn changes_at_or_below_the_checkpoint_are_dropped() {
        let plan = Plan::of([upsert(5, "ready"), at(6, "t_1.catalog.items.x", "!")]);
        let plan = plan.after(6);
        assert!(plan.rows.is_empty() && plan.rejections.is_empty());
        let plan = Plan::of([upsert(5, "ready"), at(6, "t_1.catalog.items.x", "!")]);
        let plan = plan.after(5);
        assert!(plan.rows.is_empty());
        assert_eq!(plan.rejections.len(), 1);
    }
}
