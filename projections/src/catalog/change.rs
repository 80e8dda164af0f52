//! The one reading of a catalog message: subject and body to a valid change, or the reason it
//! is none. The catalog projector, live evaluation and `gatehouse catalog import` all decide
//! with it, so a message one of them applies is never one another rejects.
//!
//! A change is valid when its subject names a valid item id, its body is a
//! [`CatalogChange`] that passes [`CatalogChange::validate`] (id, status, attributes nested at
//! most [`MAX_ATTRIBUTE_DEPTH`] levels), its attributes hold no NUL (Postgres cannot store
//! one), and its id is the subject's.

use std::borrow::Cow;

use gatehouse_events::catalog::{is_valid_item_id, too_deep, CatalogChange, MAX_ATTRIBUTE_DEPTH};
use gatehouse_events::subjects;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::wire::{self, Change};

/// The status a deleted item gets when the catalog never held it.
pub const DELETED_STATUS: &str = "deleted";

/// A valid catalog change.
#[derive(Debug)]
pub struct ValidChange<'a> {
    pub id: Cow<'a, str>,
    /// For a delete: [`DELETED_STATUS`].
    pub status: String,
    pub deleted: bool,
    /// A JSON object without NUL, nested at most [`MAX_ATTRIBUTE_DEPTH`] levels; for a delete
    /// `{}`.
    pub attributes: Box<RawValue>,
}

impl<'a> ValidChange<'a> {
    fn delete(id: Cow<'a, str>) -> Self {
        ValidChange {
            id,
            status: DELETED_STATUS.to_owned(),
            deleted: true,
            attributes: empty_object(),
        }
    }
}

/// The change published on `subject` with body `payload`, or why it is none.
pub fn read_change<'a>(subject: &str, payload: &'a [u8]) -> Result<ValidChange<'a>, String> {
    let subject_id = subjects::catalog_item_of(subject)
        .filter(|id| is_valid_item_id(id))
        .ok_or_else(|| format!("subject: `{subject}` names no valid item id"))?;
    let change = read_body(payload)?;
    if change.id != subject_id {
        return Err(format!(
            "id: `{}` differs from the subject's item `{subject_id}`",
            change.id
        ));
    }
    Ok(change)
}

/// The item id of `payload` if it is a valid change, or why it is none: [`read_change`] but
/// for the subject, which `gatehouse catalog import` derives from the id.
pub fn check_change(payload: &[u8]) -> Result<String, String> {
    read_body(payload).map(|change| change.id.into_owned())
}

/// The body alone: read in place when it can be, else by the contract, which then decides
/// and words the reason.
fn read_body(payload: &[u8]) -> Result<ValidChange<'_>, String> {
    match wire::read(payload) {
        Some(Change::Upsert {
            id,
            status,
            attributes,
        }) => Ok(ValidChange {
            id: id.into(),
            status: status.to_owned(),
            deleted: false,
            attributes: attributes.to_owned(),
        }),
        Some(Change::Delete { id }) => Ok(ValidChange::delete(id.into())),
        None => by_contract(payload),
    }
}

/// What the fast reading declined, read by the contract: a valid change it could not read in
/// place, or the contract's reason for refusing it.
fn by_contract(payload: &[u8]) -> Result<ValidChange<'static>, String> {
    // The change object is one level above its attributes. Checked before parsing, so that
    // nesting deeper than the parser's own limit is named as such.
    if wire::depth(payload) > MAX_ATTRIBUTE_DEPTH + 1 {
        return Err(too_deep());
    }
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
            Ok(ValidChange {
                id: id.into(),
                status,
                deleted: false,
                attributes,
            })
        }
        CatalogChange::Delete { id } => Ok(ValidChange::delete(id.into())),
    }
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!("`{{}}` is JSON"))
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

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "t_1.catalog.items.m-1";

    fn error_of(subject: &str, body: &str) -> String {
        read_change(subject, body.as_bytes()).unwrap_err()
    }

    /// An upsert of `m-1` whose attributes nest `levels` deep: `{"a": [[...[1]...]]}`.
    fn nested(levels: usize) -> String {
        let arrays = levels - 1;
        format!(
            r#"{{"op":"upsert","id":"m-1","status":"ready","attributes":{{"a":{}1{}}}}}"#,
            "[".repeat(arrays),
            "]".repeat(arrays)
        )
    }

    #[test]
    fn a_valid_change_the_fast_reading_declines_is_read_by_the_contract() {
        let body = r#"{"op":"upsert","id":"m\u002d1","status":"ready","attributes":{"q":1}}"#;
        let change = read_change(SUBJECT, body.as_bytes()).unwrap();
        assert_eq!(change.id, "m-1");
        assert_eq!(change.attributes.get(), r#"{"q":1}"#);
    }

    #[test]
    fn a_body_naming_another_item_than_its_subject_is_rejected() {
        let body = r#"{"op":"delete","id":"m-2"}"#;
        assert_eq!(
            error_of(SUBJECT, body),
            "id: `m-2` differs from the subject's item `m-1`"
        );
    }

    #[test]
    fn a_subject_with_more_tokens_or_of_another_kind_names_no_item() {
        let body = r#"{"op":"delete","id":"m-1"}"#;
        assert!(error_of("t_1.catalog.items.m-1.x", body).starts_with("subject:"));
        assert!(error_of("t_1.events.items.m-1", body).starts_with("subject:"));
    }

    #[test]
    fn attributes_nested_as_deep_as_the_limit_are_valid_either_way_they_are_read() {
        let body = nested(MAX_ATTRIBUTE_DEPTH);
        assert!(wire::read(body.as_bytes()).is_some());
        assert!(by_contract(body.as_bytes()).is_ok());
        assert!(read_change(SUBJECT, body.as_bytes()).is_ok());
    }

    #[test]
    fn attributes_nested_deeper_than_the_limit_are_rejected_naming_it() {
        for levels in [MAX_ATTRIBUTE_DEPTH + 1, 127, 1_000] {
            let body = nested(levels);
            assert_eq!(error_of(SUBJECT, &body), too_deep(), "{levels} levels");
            assert!(check_change(body.as_bytes()).is_err());
        }
    }

    #[test]
    fn a_nul_anywhere_in_the_attributes_is_rejected_with_its_path() {
        let body = r#"{"op":"upsert","id":"m-1","status":"ready","attributes":{"a":{"b":["x","y\u0000"]}}}"#;
        let error = error_of(SUBJECT, body);
        assert!(
            error.starts_with("attributes: attributes.a.b[1] holds a NUL"),
            "{error}"
        );
    }

    #[test]
    fn the_import_check_reads_the_body_as_the_projector_does() {
        let line = br#"{"op":"upsert","id":"m-1","status":"ready","attributes":{"k":"a\u0000b"}}"#;
        assert!(check_change(line)
            .unwrap_err()
            .contains("attributes.k holds a NUL"));
        let escaped = br#"{"op":"delete","id":"m\u002d1"}"#;
        assert_eq!(check_change(escaped), Ok("m-1".to_owned()));
    }
}
