//! From fetched catalog messages to what one transaction writes: the last change of each item
//! (a [`Row`]), and a [`Rejection`] for every message that is not a valid change. Pure: no
//! NATS, no SQL, so every rule is unit-tested here.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use gatehouse_events::catalog::{is_valid_item_id, CatalogChange};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::wire::{self, Change};

/// The status a deleted item gets when the catalog never held it.
pub(crate) const DELETED_STATUS: &str = "deleted";
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
    /// Decodes `messages` (of the namespace whose subjects start with `prefix`) and keeps the
    /// last change per item: the one with the highest stream sequence, whatever the delivery
    /// order (a redelivered message comes after later ones).
    pub(crate) fn of<'a>(prefix: &str, messages: impl IntoIterator<Item = Message<'a>>) -> Self {
        let mut last: HashMap<String, Row> = HashMap::new();
        let mut plan = Plan::default();
        for message in messages {
            match decode(prefix, message) {
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

/// One message as a row, or why it is none.
pub(crate) fn decode(prefix: &str, message: Message<'_>) -> Result<Row, Rejection> {
    let reject = |error: String| rejection(message, error);
    let subject_id = message
        .subject
        .strip_prefix(prefix)
        .filter(|id| is_valid_item_id(id))
        .ok_or_else(|| {
            reject(format!(
                "subject: `{}` names no valid item id",
                message.subject
            ))
        })?;
    let change = match wire::read(message.payload) {
        Some(Change::Upsert {
            id,
            status,
            attributes,
        }) => Decoded {
            id: id.into(),
            status: status.to_owned(),
            deleted: false,
            attributes: attributes.to_owned(),
        },
        Some(Change::Delete { id }) => Decoded::delete(id.into()),
        None => by_contract(message.payload).map_err(reject)?,
    };
    if change.id != subject_id {
        return Err(reject(format!(
            "id: `{}` differs from the subject's item `{subject_id}`",
            change.id
        )));
    }
    let stream_seq = to_i64(message.stream_seq);
    Ok(Row {
        item_id: subject_id.to_owned(),
        status: change.status,
        deleted: change.deleted,
        attributes: change.attributes,
        updated_at: message.published,
        stream_seq,
        content_seq: (!change.deleted).then_some(stream_seq),
    })
}

/// The item id of `payload` if the catalog projector will apply it, or why it will reject it:
/// the projector's own reading (in place, else by the contract), for `gatehouse catalog
/// import` to check a line before publishing it. The subject is not checked (the importer
/// derives it from the id).
pub fn check_change(payload: &[u8]) -> Result<String, String> {
    match wire::read(payload) {
        Some(Change::Upsert { id, .. } | Change::Delete { id }) => Ok(id.to_owned()),
        None => by_contract(payload).map(|change| change.id.into_owned()),
    }
}

/// A change, before it is checked against its subject.
struct Decoded<'a> {
    id: Cow<'a, str>,
    status: String,
    deleted: bool,
    attributes: Box<RawValue>,
}

impl<'a> Decoded<'a> {
    fn delete(id: Cow<'a, str>) -> Self {
        Decoded {
            id,
            status: DELETED_STATUS.to_owned(),
            deleted: true,
            attributes: empty_object(),
        }
    }
}

/// What the fast reading declined, read by the contract: a valid change it could not read in
/// place, or the contract's reason for refusing it.
fn by_contract(payload: &[u8]) -> Result<Decoded<'static>, String> {
    let change: CatalogChange =
        serde_json::from_slice(payload).map_err(|e| format!("not a catalog change: {e}"))?;
    change.validate()?;
    match change {
        CatalogChange::Upsert {
            id,
            status,
            attributes,
        } => {
            if let Some(path) = nul_in(&attributes) {
                return Err(format!(
                    "attributes: {path} holds a NUL character (\\u0000), which Postgres cannot store"
                ));
            }
            let attributes = serde_json::value::to_raw_value(&attributes)
                .map_err(|e| format!("attributes: {e}"))?;
            Ok(Decoded {
                id: id.into(),
                status,
                deleted: false,
                attributes,
            })
        }
        CatalogChange::Delete { id } => Ok(Decoded::delete(id.into())),
    }
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!("`{{}}` is JSON"))
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

/// Where a key or string under `attributes` holds a NUL (jsonb refuses `\u0000`), if anywhere.
fn nul_in(attributes: &Map<String, Value>) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => in_map(map, path),
            _ => false,
        }
    }
    fn in_map(map: &Map<String, Value>, path: &mut String) -> bool {
        map.iter().any(|(key, value)| {
            let len = path.len();
            path.push('.');
            path.push_str(&key.replace('\0', "\\u0000"));
            let found = key.contains('\0') || walk(value, path);
            if !found {
                path.truncate(len);
            }
            found
        })
    }
    let mut path = String::from("attributes");
    in_map(attributes, &mut path).then_some(path)
}

fn to_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PREFIX: &str = "t_1.catalog.items.";

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
        decode(PREFIX, message).unwrap_err().error
    }

    #[test]
    fn an_upsert_becomes_a_row_stamped_with_its_stream_position_and_time() {
        let row = decode(PREFIX, upsert(7, "ready")).unwrap();
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
        let row = decode(
            PREFIX,
            at(3, "t_1.catalog.items.m-1", r#"{"op":"delete","id":"m-1"}"#),
        );
        let row = row.unwrap();
        assert!(row.deleted);
        assert_eq!(row.status, DELETED_STATUS);
        assert_eq!(row.attributes.get(), "{}");
    }

    #[test]
    fn the_last_change_of_an_item_in_a_batch_wins_whatever_the_delivery_order() {
        let plan = Plan::of(
            PREFIX,
            [
                upsert(5, "pending"),
                upsert(9, "ready"),
                upsert(2, "pending"),
            ],
        );
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
            let plan = Plan::of(PREFIX, order);
            let row = &plan.rows[0];
            assert_eq!((row.stream_seq, row.deleted), (9, true));
            assert_eq!((row.status.as_str(), row.content_seq), ("pending", Some(7)));
            assert_eq!(row.attributes.get(), r#"{"q":2}"#);
        }
    }

    #[test]
    fn a_delete_alone_in_its_batch_carries_no_content() {
        let plan = Plan::of(PREFIX, [delete(4)]);
        assert_eq!(plan.rows[0].content_seq, None);
    }

    #[test]
    fn an_upsert_after_a_delete_in_a_batch_is_the_item() {
        let plan = Plan::of(
            PREFIX,
            [upsert(5, "pending"), delete(6), upsert(7, "ready")],
        );
        let row = &plan.rows[0];
        assert_eq!(
            (row.deleted, row.status.as_str(), row.content_seq),
            (false, "ready", Some(7))
        );
    }

    #[test]
    fn a_valid_change_the_fast_reading_declines_is_read_by_the_contract() {
        let body = r#"{"op":"upsert","id":"m\u002d1","status":"ready","attributes":{"q":1}}"#;
        let row = decode(PREFIX, at(2, "t_1.catalog.items.m-1", body)).unwrap();
        assert_eq!(row.item_id, "m-1");
        assert_eq!(row.attributes.get(), r#"{"q":1}"#);
    }

    #[test]
    fn a_message_that_is_not_json_is_rejected_with_its_position_subject_and_payload() {
        let r = decode(PREFIX, at(4, "t_1.catalog.items.m-1", "{oops")).unwrap_err();
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
    fn a_body_naming_another_item_than_its_subject_is_rejected() {
        let body = r#"{"op":"delete","id":"m-2"}"#;
        let error = error_of(at(1, "t_1.catalog.items.m-1", body));
        assert_eq!(error, "id: `m-2` differs from the subject's item `m-1`");
    }

    #[test]
    fn a_subject_with_more_tokens_names_no_item() {
        let body = r#"{"op":"delete","id":"m-1"}"#;
        assert!(error_of(at(1, "t_1.catalog.items.m-1.x", body)).starts_with("subject:"));
    }

    #[test]
    fn a_nul_anywhere_in_the_attributes_is_rejected_with_its_path() {
        let body = r#"{"op":"upsert","id":"m-1","status":"ready","attributes":{"a":{"b":["x","y\u0000"]}}}"#;
        let error = error_of(at(1, "t_1.catalog.items.m-1", body));
        assert!(
            error.starts_with("attributes: attributes.a.b[1] holds a NUL"),
            "{error}"
        );
    }

    #[test]
    fn a_rejected_payload_is_stored_as_text_without_nul() {
        let r = decode(
            PREFIX,
            Message {
                payload: b"\0\xff",
                ..upsert(1, "ready")
            },
        )
        .unwrap_err();
        assert_eq!(r.payload, "\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn changes_at_or_below_the_checkpoint_are_dropped() {
        let plan = Plan::of(
            PREFIX,
            [upsert(5, "ready"), at(6, "t_1.catalog.items.x", "!")],
        );
        let plan = plan.after(6);
        assert!(plan.rows.is_empty() && plan.rejections.is_empty());
        let plan = Plan::of(
            PREFIX,
            [upsert(5, "ready"), at(6, "t_1.catalog.items.x", "!")],
        );
        let plan = plan.after(5);
        assert!(plan.rows.is_empty());
        assert_eq!(plan.rejections.len(), 1);
    }
}
