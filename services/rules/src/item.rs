//! A catalog item's attributes, checked against the attribute schema and converted once into
//! CEL values that evaluations borrow (no copy per evaluation).

use std::collections::HashMap;

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelString, CelTimestamp,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use chrono::Datelike;
use gatehouse_events::rules::{AttributeSchema, AttributeType};
use serde_json::Value as Json;

use crate::error::ItemError;

/// An item's attributes as CEL values, ready to evaluate.
///
/// Strings and keys borrow from the JSON the item was made from (`'a`), so converting an
/// item copies no text. An attribute that is absent or `null` in the JSON is absent here: a
/// rule that references it fails with an [`EvalError`](crate::EvalError) for that item.
#[derive(Debug)]
pub struct Item<'a> {
    attributes: Vec<(&'a str, Box<dyn Val + 'a>)>,
}

impl<'a> Item<'a> {
    /// Checks `json` (the attributes object of a catalog item) against `schema` and converts it.
    ///
    /// Ints must be JSON integers; doubles accept any JSON number; timestamps are RFC 3339
    /// text; object attributes are checked field by field. Unknown attributes and values of
    /// the wrong type are errors naming the attribute path (`scan.status`, `tags[2]`).
    pub fn from_json(json: &'a Json, schema: &AttributeSchema) -> Result<Item<'a>, ItemError> {
        let Json::Object(fields) = json else {
            return Err(ItemError::NotAnObject {
                found: json_kind(json),
            });
        };
        let mut attributes = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            let path = Path::Root(name);
            let Some(ty) = schema.get(name) else {
                return Err(ItemError::UnknownAttribute {
                    path: path.render(),
                });
            };
            if !value.is_null() {
                attributes.push((name.as_str(), convert(value, ty, &path)?));
            }
        }
        Ok(Item { attributes })
    }

    /// How many attributes the item has (absent and `null` ones not counted).
    pub fn len(&self) -> usize {
        self.attributes.len()
    }

    /// Whether the item has no attributes.
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
    }
}

impl VariableResolver for Item<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        // A linear scan beats hashing for the ~10 attributes an item has.
        self.attributes
            .iter()
            .find(|(name, _)| *name == variable)
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

fn convert<'a>(
    value: &'a Json,
    ty: &AttributeType,
    path: &Path<'_>,
) -> Result<Box<dyn Val + 'a>, ItemError> {
    let wrong = || wrong_type(value, ty, path);
    Ok(match (ty, value) {
        (AttributeType::String, Json::String(s)) => Box::new(CelString::from(s.as_str())),
        (AttributeType::Bool, Json::Bool(b)) => Box::new(CelBool::from(*b)),
        (AttributeType::Int, Json::Number(n)) => {
            Box::new(CelInt::from(n.as_i64().ok_or_else(wrong)?))
        }
        (AttributeType::Double, Json::Number(n)) => {
            Box::new(CelDouble::from(n.as_f64().ok_or_else(wrong)?))
        }
        (AttributeType::Timestamp, Json::String(s)) => Box::new(timestamp(s, path)?),
        (AttributeType::List(element), Json::Array(values)) => {
            let mut list: Vec<Box<dyn Val + 'a>> = Vec::with_capacity(values.len());
            for (i, value) in values.iter().enumerate() {
                list.push(convert(value, element, &Path::Index(path, i))?);
            }
            Box::new(CelList::from(list))
        }
        (AttributeType::Object(schema), Json::Object(fields)) => {
            let mut map = HashMap::with_capacity(fields.len());
            for (name, value) in fields {
                let path = Path::Field(path, name);
                let Some(ty) = schema.get(name) else {
                    return Err(ItemError::UnknownAttribute {
                        path: path.render(),
                    });
                };
                if !value.is_null() {
                    map.insert(CelMapKey::from(name.as_str()), convert(value, ty, &path)?);
                }
            }
            Box::new(CelMap::from(map))
        }
        _ => return Err(wrong()),
    })
}

fn timestamp(text: &str, path: &Path<'_>) -> Result<CelTimestamp, ItemError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .filter(|t| t.year() >= 1) // CEL timestamps span years 1 to 9999
        .map(CelTimestamp::from)
        .ok_or_else(|| ItemError::InvalidTimestamp {
            path: path.render(),
            value: text.chars().take(64).collect(),
        })
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
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> AttributeSchema {
        serde_json::from_value(json!({
            "kind": "string", "quality": "double", "age_days": "int", "nsfw": "bool",
            "published_at": "timestamp", "tags": "list<string>",
            "scan": {"status": "string", "critical": "int"}
        }))
        .unwrap()
    }

    fn error(json: Json) -> ItemError {
        Item::from_json(&json, &schema()).expect_err("the item is rejected")
    }

    #[test]
    fn an_item_matching_the_schema_converts_every_present_attribute() {
        let json = json!({"kind": "video", "quality": 0.5, "tags": ["a"], "scan": {"critical": 0}});
        assert_eq!(Item::from_json(&json, &schema()).unwrap().len(), 4);
    }

    #[test]
    fn missing_and_null_attributes_are_simply_absent() {
        let json = json!({"kind": "video", "quality": null});
        let item = Item::from_json(&json, &schema()).unwrap();
        assert!(item.resolve("quality").is_none() && item.resolve("kind").is_some());
    }

    #[test]
    fn an_unknown_attribute_is_rejected_by_name() {
        let err = error(json!({"colour": "red"}));
        assert_eq!(
            err,
            ItemError::UnknownAttribute {
                path: "colour".into()
            }
        );
    }

    #[test]
    fn an_unknown_field_of_an_object_attribute_is_rejected_by_path() {
        let err = error(json!({"scan": {"stauts": "clean"}}));
        assert_eq!(
            err,
            ItemError::UnknownAttribute {
                path: "scan.stauts".into()
            }
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_names_the_path_and_the_expected_type() {
        let err = error(json!({"tags": ["a", 3]}));
        assert_eq!(
            err.to_string(),
            "attribute `tags[1]`: expected string, got a number"
        );
    }

    #[test]
    fn an_int_attribute_rejects_a_fractional_number() {
        let err = error(json!({"age_days": 1.5}));
        assert_eq!(
            err.to_string(),
            "attribute `age_days`: expected int, got a non-integer number"
        );
    }

    #[test]
    fn a_double_attribute_accepts_an_integer() {
        let json = json!({"quality": 1});
        let item = Item::from_json(&json, &schema()).unwrap();
        let value = item.resolve("quality").unwrap();
        assert_eq!(
            value.downcast_ref::<CelDouble>().map(|d| *d.inner()),
            Some(1.0)
        );
    }

    #[test]
    fn a_timestamp_attribute_must_be_rfc_3339() {
        let err = error(json!({"published_at": "yesterday"}));
        assert!(matches!(err, ItemError::InvalidTimestamp { path, .. } if path == "published_at"));
    }

    #[test]
    fn a_timestamp_attribute_with_an_offset_converts() {
        let json = json!({"published_at": "2024-02-29T12:30:00+02:00"});
        assert!(Item::from_json(&json, &schema()).is_ok());
    }

    #[test]
    fn attributes_that_are_not_an_object_are_rejected() {
        assert_eq!(
            error(json!([1])),
            ItemError::NotAnObject { found: "an array" }
        );
    }
}
