//! A catalog item's attributes, checked against the attribute schema and converted once into
//! CEL values that evaluations borrow (no copy per evaluation).
//!
//! Two ways in: [`Item::from_json`] converts parsed JSON, and [`Item::from_json_text`] converts
//! JSON text in one pass guided by the schema, with no `serde_json::Value` in between (the
//! worker's hot path). The one-pass conversion only accepts what the `Value` path accepts; at
//! anything else it gives up and converts the text the `Value` way, so the two agree on every
//! item and on every error.

use std::borrow::Cow;
use std::collections::HashMap;

use cel::common::types::{
    CelBool, CelDouble, CelDuration, CelInt, CelList, CelMap, CelMapKey, CelString, CelTimestamp,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use chrono::Datelike;
use gatehouse_events::rules::{AttributeSchema, AttributeType};
use serde_json::Value as Json;

use self::duration::parse_duration;
use self::text::one_pass;
use crate::error::ItemError;

mod duration;
mod text;

/// An item's attributes as CEL values, ready to evaluate.
///
/// Strings and keys borrow from the JSON the item was made from (`'a`), so converting an
/// item copies no text (from JSON text, strings written with escapes are copied unescaped).
/// An attribute that is absent or `null` in the JSON is absent here: a rule that references
/// it fails with an [`EvalError`](crate::EvalError) for that item. So is one the schema does
/// not declare, which no rule can reference.
#[derive(Debug)]
pub struct Item<'a> {
    attributes: Vec<Attribute<'a>>,
}

/// An attribute's name and value.
type Attribute<'a> = (Cow<'a, str>, Box<dyn Val + 'a>);

/// Why attributes given as JSON text did not become an [`Item`].
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The text is not JSON; serde_json's message says what is wrong and where.
    #[error("attributes are not JSON: {0}")]
    NotJson(serde_json::Error),
    /// The JSON does not fit the schema: the error [`Item::from_json`] reports for it.
    #[error(transparent)]
    Item(#[from] ItemError),
}

impl<'a> Item<'a> {
    /// Checks `json` (the attributes object of a catalog item) against `schema` and converts it.
    ///
    /// Ints must be JSON integers; doubles accept any JSON number; timestamps are RFC 3339
    /// text; durations are text CEL's `duration()` reads (`"1h30m"`); object attributes are checked field by field. A value of the wrong type is an
    /// error naming the attribute path (`scan.status`, `tags[2]`). Attributes (and fields of
    /// object attributes) the schema does not declare are left out: one catalog serves
    /// policies that each declare only what their rules read.
    pub fn from_json(json: &'a Json, schema: &AttributeSchema) -> Result<Item<'a>, ItemError> {
        Item::convert(json, schema, Cow::Borrowed)
    }

    /// Checks and converts `text`, the attributes object of a catalog item as JSON text:
    /// the same item, or the same error, as parsing it and calling [`Item::from_json`].
    ///
    /// Strings borrow from `text` unless they contain escapes. Of duplicate keys the last
    /// one counts, as when parsing into a `serde_json::Value`.
    pub fn from_json_text(text: &'a [u8], schema: &AttributeSchema) -> Result<Item<'a>, TextError> {
        match one_pass(text, schema) {
            Ok(attributes) => Ok(Item { attributes }),
            // Rare (a rejected item, or a duplicate key hiding a wrong value), so its cost does
            // not matter: it reports exactly what `from_json` reports, because it is `from_json`.
            Err(_) => {
                let json: Json = serde_json::from_slice(text).map_err(TextError::NotJson)?;
                Ok(Item::convert(&json, schema, |s| Cow::Owned(s.to_owned()))?)
            }
        }
    }

    /// How many attributes the item has (absent and `null` ones not counted).
    pub fn len(&self) -> usize {
        self.attributes.len()
    }

    /// Whether the item has no attributes.
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
    }

    /// [`Item::from_json`], with each string of `json` made into a CEL string by `text`:
    /// borrowed for as long as `json` lives, or copied.
    /// [`Item::from_json`] of an object given as its map (no copy into a `Value` first).
    pub fn from_map(
        fields: &'a serde_json::Map<String, Json>,
        schema: &AttributeSchema,
    ) -> Result<Item<'a>, ItemError> {
        Item::convert_fields(fields, schema, Cow::Borrowed)
    }

    fn convert<'j>(
        json: &'j Json,
        schema: &AttributeSchema,
        text: impl Fn(&'j str) -> Cow<'a, str> + Copy,
    ) -> Result<Item<'a>, ItemError> {
        let Json::Object(fields) = json else {
            return Err(ItemError::NotAnObject {
                found: json_kind(json),
            });
        };
        Item::convert_fields(fields, schema, text)
    }

    fn convert_fields<'j>(
        fields: &'j serde_json::Map<String, Json>,
        schema: &AttributeSchema,
        text: impl Fn(&'j str) -> Cow<'a, str> + Copy,
    ) -> Result<Item<'a>, ItemError> {
        let mut attributes = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            // Undeclared attributes are skipped: rules cannot read them (validation refuses it).
            let Some(ty) = schema.get(name) else {
                continue;
            };
            if !value.is_null() {
                attributes.push((text(name), convert(value, ty, &Path::Root(name), text)?));
            }
        }
        Ok(Item { attributes })
    }
}

impl VariableResolver for Item<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        // A linear scan beats hashing for the ~10 attributes an item has.
        self.attributes
            .iter()
            .find(|(name, _)| name == variable)
            .map(|(_, value)| CowVal::Borrowed(value.as_ref()))
    }
}

/// Where a value sits in the item, rendered only when reporting an error.
enum Path<'p> {
    Root(&'p str),
    Field(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root(name) => (*name).to_owned(),
            Path::Field(parent, name) => format!("{}.{name}", parent.render()),
            Path::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

fn convert<'j, 'a>(
    value: &'j Json,
    ty: &AttributeType,
    path: &Path<'_>,
    text: impl Fn(&'j str) -> Cow<'a, str> + Copy,
) -> Result<Box<dyn Val + 'a>, ItemError> {
    let wrong = || wrong_type(value, ty, path);
    Ok(match (ty, value) {
        (AttributeType::String, Json::String(s)) => Box::new(CelString::from(text(s))),
        (AttributeType::Bool, Json::Bool(b)) => Box::new(CelBool::from(*b)),
        (AttributeType::Int, Json::Number(n)) => {
            Box::new(CelInt::from(n.as_i64().ok_or_else(wrong)?))
        }
        (AttributeType::Double, Json::Number(n)) => {
            Box::new(CelDouble::from(n.as_f64().ok_or_else(wrong)?))
        }
        (AttributeType::Timestamp, Json::String(s)) => Box::new(timestamp(s, path)?),
        (AttributeType::Duration, Json::String(s)) => Box::new(duration(s, path)?),
        (AttributeType::List(element), Json::Array(values)) => {
            let mut list: Vec<Box<dyn Val + 'a>> = Vec::with_capacity(values.len());
            for (i, value) in values.iter().enumerate() {
                list.push(convert(value, element, &Path::Index(path, i), text)?);
            }
            Box::new(CelList::from(list))
        }
        (AttributeType::Object(schema), Json::Object(fields)) => {
            let mut map = HashMap::with_capacity(fields.len());
            for (name, value) in fields {
                let path = Path::Field(path, name);
                let Some(ty) = schema.get(name) else {
                    continue;
                };
                if !value.is_null() {
                    let key = CelMapKey::String(CelString::from(text(name)));
                    map.insert(key, convert(value, ty, &path, text)?);
                }
            }
            Box::new(CelMap::from(map))
        }
        _ => return Err(wrong()),
    })
}

fn timestamp(text: &str, path: &Path<'_>) -> Result<CelTimestamp, ItemError> {
    parse_timestamp(text).ok_or_else(|| ItemError::InvalidTimestamp {
        path: path.render(),
        value: text.chars().take(64).collect(),
    })
}

fn duration(text: &str, path: &Path<'_>) -> Result<CelDuration, ItemError> {
    parse_duration(text).ok_or_else(|| ItemError::InvalidDuration {
        path: path.render(),
        value: text.chars().take(64).collect(),
    })
}

/// The instant `text` names, in UTC: CEL's accessors without a time zone (`getHours()`) read
/// UTC, and cel reads the offset the value carries.
fn parse_timestamp(text: &str) -> Option<CelTimestamp> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc).fixed_offset())
        .filter(|t| (1..=9999).contains(&t.year())) // CEL's range, in UTC
        .map(CelTimestamp::from)
}

fn wrong_type(value: &Json, ty: &AttributeType, path: &Path<'_>) -> ItemError {
    let found = match value {
        Json::Number(n) if n.is_f64() => "a non-integer number".to_owned(),
        Json::Number(_) if *ty == AttributeType::Int => "an integer out of range".to_owned(),
        other => json_kind(other).to_owned(),
    };
    ItemError::WrongType {
        path: path.render(),
        expected: type_name(ty),
        found,
    }
}

/// The schema's name for `ty` (`list<string>`), or `object` for an object type.
pub(crate) fn type_name(ty: &AttributeType) -> String {
    ty.name().unwrap_or_else(|| "object".to_owned())
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
