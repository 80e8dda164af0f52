//! The rules document of a policy version and the attribute schema it is checked against.
//!
//! A rules document is an ordered list of rules (first match wins), a default decision and a
//! CEL score expression. Conditions and the score are CEL source text; compiling and validating
//! them is the job of the `gatehouse-rules` crate.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a policy decides for an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The item is published.
    Allow,
    /// The item is not published.
    Deny,
    /// The item is held for a human (release or reject).
    Quarantine,
}

impl Decision {
    /// The stable wire name (`allow`, `deny`, `quarantine`).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Quarantine => "quarantine",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule: when `condition` (CEL, must yield a bool) holds, the item gets `decision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique within the document: `[a-z0-9][a-z0-9_-]*`, at most 64 characters.
    pub id: String,
    /// CEL expression over the item's attributes.
    pub condition: String,
    pub decision: Decision,
    /// Human-readable reason recorded with each decision this rule makes.
    pub reason: String,
}

/// The full rules document of one policy version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RulesDocument {
    /// Evaluated in order; the first rule whose condition holds decides.
    pub rules: Vec<Rule>,
    /// The decision when no rule matches.
    pub default_decision: Decision,
    /// The reason recorded with the default decision.
    #[serde(default = "default_reason")]
    pub default_reason: String,
    /// CEL expression yielding a number (int, uint or double): the item's score.
    pub score: String,
}

fn default_reason() -> String {
    "default".to_owned()
}

/// The type of one declared item attribute.
///
/// On the wire a scalar or list type is a string (`"string"`, `"int"`, `"double"`, `"bool"`,
/// `"timestamp"`, `"duration"`, `"list<string>"`, `"list<int>"`, `"list<double>"`), and an
/// object is a JSON object mapping field names to types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeType {
    String,
    Int,
    Double,
    Bool,
    /// RFC 3339 text in items; a CEL timestamp in expressions.
    Timestamp,
    /// The text CEL's `duration()` reads (`"90s"`, `"1h30m"`) in items; a CEL duration in
    /// expressions.
    Duration,
    List(Box<AttributeType>),
    Object(BTreeMap<String, AttributeType>),
}

impl AttributeType {
    fn parse_name(name: &str) -> Option<AttributeType> {
        Some(match name {
            "string" => AttributeType::String,
            "int" => AttributeType::Int,
            "double" => AttributeType::Double,
            "bool" => AttributeType::Bool,
            "timestamp" => AttributeType::Timestamp,
            "duration" => AttributeType::Duration,
            _ => {
                let inner = name.strip_prefix("list<")?.strip_suffix('>')?;
                let inner = AttributeType::parse_name(inner)?;
                if matches!(inner, AttributeType::List(_)) {
                    return None;
                }
                AttributeType::List(Box::new(inner))
            }
        })
    }

    /// The wire name of a non-object type (`None` for objects).
    pub fn name(&self) -> Option<String> {
        Some(match self {
            AttributeType::String => "string".into(),
            AttributeType::Int => "int".into(),
            AttributeType::Double => "double".into(),
            AttributeType::Bool => "bool".into(),
            AttributeType::Timestamp => "timestamp".into(),
            AttributeType::Duration => "duration".into(),
            AttributeType::List(inner) => format!("list<{}>", inner.name()?),
            AttributeType::Object(_) => return None,
        })
    }
}

impl Serialize for AttributeType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AttributeType::Object(fields) => fields.serialize(s),
            other => s.serialize_str(&other.name().unwrap_or_default()),
        }
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for AttributeType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AttributeType".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let object = generator.subschema_for::<BTreeMap<String, AttributeType>>();
        schemars::json_schema!({
            "description": "a scalar or list type by name, or an object of field types",
            "anyOf": [
                {"type": "string", "pattern":
                    "^(string|int|double|bool|timestamp|duration|list<(string|int|double|bool|timestamp|duration)>)$"},
                object
            ]
        })
    }
}

impl<'de> Deserialize<'de> for AttributeType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Name(String),
            Object(BTreeMap<String, AttributeType>),
        }
        match Wire::deserialize(d)? {
            Wire::Name(n) => AttributeType::parse_name(&n).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown attribute type `{n}` (expected string, int, double, bool, timestamp, \
                     duration, list<...> or an object)"
                ))
            }),
            Wire::Object(fields) => Ok(AttributeType::Object(fields)),
        }
    }
}

/// The attributes items of a policy's catalog may carry, by name.
pub type AttributeSchema = BTreeMap<String, AttributeType>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attribute_types_round_trip_through_their_wire_names() {
        let wire = json!({"kind": "string", "tags": "list<string>", "scan": {"critical": "int"},
                          "waits": "list<duration>"});
        let schema: AttributeSchema = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(
            schema["tags"],
            AttributeType::List(Box::new(AttributeType::String))
        );
        assert_eq!(serde_json::to_value(&schema).unwrap(), wire);
    }

    #[test]
    fn an_unknown_attribute_type_is_rejected_by_name() {
        let err = serde_json::from_value::<AttributeSchema>(json!({"x": "float"})).unwrap_err();
        assert!(
            err.to_string().contains("unknown attribute type `float`"),
            "{err}"
        );
    }

    #[test]
    fn nested_lists_are_rejected() {
        assert!(
            serde_json::from_value::<AttributeSchema>(json!({"x": "list<list<int>>"})).is_err()
        );
    }

    #[test]
    fn a_rules_document_rejects_unknown_fields() {
        let doc = json!({"rules": [], "default_decision": "allow", "score": "1", "extra": 1});
        assert!(serde_json::from_value::<RulesDocument>(doc).is_err());
    }
}
