//! The fast reading of a catalog message: the contract's [`CatalogChange`] builds every
//! attribute into a map, to be serialized again for Postgres; this reads the attributes as raw
//! JSON text and the rest in place. It accepts only what the contract accepts, and declines
//! anything else (including what it cannot read in place, such as escaped ids), which then goes
//! through [`CatalogChange`] for the verdict and its wording.
//!
//! [`CatalogChange`]: gatehouse_events::catalog::CatalogChange

use gatehouse_events::catalog::{is_valid_item_id, is_valid_status, MAX_ATTRIBUTE_DEPTH};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// A valid change, read in place.
#[derive(Debug)]
pub(crate) enum Change<'a> {
    Upsert {
        id: &'a str,
        status: &'a str,
        /// A JSON object without `\u0000`.
        attributes: &'a RawValue,
    },
    Delete {
        id: &'a str,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    op: &'a str,
    id: &'a str,
    /// `Some` when present, even as `null` (which fails the read), unlike a plain `Option`.
    #[serde(default, deserialize_with = "present")]
    status: Option<&'a str>,
    #[serde(default, deserialize_with = "present", borrow)]
    attributes: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The change in `payload` if it is a valid one that can be read in place.
pub(crate) fn read(payload: &[u8]) -> Option<Change<'_>> {
    let wire: Wire<'_> = serde_json::from_slice(payload).ok()?;
    if !is_valid_item_id(wire.id) {
        return None;
    }
    match (wire.op, wire.status, wire.attributes) {
        ("upsert", Some(status), Some(attributes))
            if is_valid_status(status) && is_plain_object(attributes.get()) =>
        {
            Some(Change::Upsert {
                id: wire.id,
                status,
                attributes,
            })
        }
        ("delete", None, None) => Some(Change::Delete { id: wire.id }),
        _ => None,
    }
}

/// Is `json` (valid JSON) an object nested at most [`MAX_ATTRIBUTE_DEPTH`] levels, holding no
/// `\u0000` escape (jsonb refuses it)?
fn is_plain_object(json: &str) -> bool {
    let scan = Scan::of(json.as_bytes());
    json.starts_with('{') && !scan.nul && scan.depth <= MAX_ATTRIBUTE_DEPTH
}

/// How deep `json` nests objects and arrays. Lenient: `json` need not be valid JSON.
pub(crate) fn depth(json: &[u8]) -> usize {
    Scan::of(json).depth
}

/// One pass over JSON text, strings skipped.
struct Scan {
    /// The deepest nesting of objects and arrays.
    depth: usize,
    /// Whether a string holds a `\u0000` escape.
    nul: bool,
}

impl Scan {
    fn of(json: &[u8]) -> Scan {
        let mut scan = Scan {
            depth: 0,
            nul: false,
        };
        let (mut level, mut in_string, mut i) = (0usize, false, 0);
        while i < json.len() {
            match (in_string, json[i]) {
                (true, b'\\') => {
                    scan.nul |= json[i + 1..].starts_with(b"u0000");
                    i += 1;
                }
                (_, b'"') => in_string = !in_string,
                (false, b'{' | b'[') => {
                    level += 1;
                    scan.depth = scan.depth.max(level);
                }
                (false, b'}' | b']') => level = level.saturating_sub(1),
                _ => {}
            }
            i += 1;
        }
        scan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_events::catalog::CatalogChange;

    /// Whether the contract accepts `payload` as a valid change.
    fn contract_accepts(payload: &str) -> bool {
        serde_json::from_str::<CatalogChange>(payload).is_ok_and(|c| c.validate().is_ok())
    }

    #[test]
    fn what_is_read_in_place_the_contract_accepts_too() {
        let samples = [
            r#"{"op":"upsert","id":"m-1","status":"ready","attributes":{"a":[1,{"b":null}]}}"#,
            r#"{"id":"m-1","attributes":{},"status":"pending","op":"upsert"}"#,
            r#"{"op":"delete","id":"m-1"}"#,
            r#"{"op":"delete","id":"m-1","status":null}"#,
            r#"{"op":"delete","id":"m-1","attributes":{}}"#,
            r#"{"op":"upsert","id":"m-1","status":null,"attributes":{}}"#,
            r#"{"op":"upsert","id":"m-1","status":"ready","attributes":null}"#,
            r#"{"op":"upsert","id":"m-1","status":"ready","attributes":[]}"#,
            r#"{"op":"upsert","id":"m-1","status":"ready"}"#,
            r#"{"op":"upsert","id":"m-1","status":"Ready","attributes":{}}"#,
            r#"{"op":"upsert","id":"a.b","status":"ready","attributes":{}}"#,
            r#"{"op":"upsert","id":"m-1","status":"ready","attributes":{},"x":1}"#,
            r#"{"op":"merge","id":"m-1"}"#,
            r#"{"op":"delete","id":"m-1","op":"delete"}"#,
            r#"{"op":"delete"}"#,
            r#"[{"op":"delete","id":"m-1"}]"#,
            r#"{"op":"delete","id":"m\u002d1"}"#,
        ];
        for sample in samples {
            if read(sample.as_bytes()).is_some() {
                assert!(
                    contract_accepts(sample),
                    "read in place, refused by the contract: {sample}"
                );
            }
        }
    }

    #[test]
    fn a_plain_change_is_read_in_place() {
        let upsert =
            br#"{"op":"upsert","id":"m-1","status":"ready","attributes":{"q":"x\\u0000"}}"#;
        match read(upsert) {
            Some(Change::Upsert {
                id,
                status,
                attributes,
            }) => {
                assert_eq!((id, status), ("m-1", "ready"));
                assert_eq!(attributes.get(), r#"{"q":"x\\u0000"}"#);
            }
            other => panic!("{other:?}"),
        }
        let delete = read(br#"{"op":"delete","id":"m-1"}"#);
        assert!(
            matches!(delete, Some(Change::Delete { id: "m-1" })),
            "{delete:?}"
        );
    }

    #[test]
    fn attributes_with_a_nul_escape_are_declined() {
        assert!(!is_plain_object(r#"{"q":"a\u0000"}"#));
        assert!(!is_plain_object(r#"{"q":"\\\u0000"}"#));
        assert!(is_plain_object(r#"{"q":"\\u0000"}"#));
    }

    #[test]
    fn nesting_is_counted_outside_strings() {
        assert_eq!(depth(br#"{"a":[1,{"b":"[[{{"}],"c":{}}"#), 3);
        assert_eq!(depth(br#"{"a":"\"[["}"#), 1);
        assert_eq!(depth(b"[[[not json"), 3);
    }
}
