//! Field rules for policy commands: formats and sizes, each failure naming its field.

use gatehouse_events::policy::MAX_POLICY_ID_LEN;
use gatehouse_events::rules::{AttributeSchema, AttributeType};

/// A field that breaks its rule, named by its path in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn fail(field: impl Into<String>, message: impl Into<String>) -> Result<(), FieldError> {
    Err(FieldError {
        field: field.into(),
        message: message.into(),
    })
}

/// Words CEL reserves: they cannot name an attribute.
const CEL_RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// Is `id` a slug: `[a-z0-9][a-z0-9_-]*`, at most `max` bytes?
pub fn is_slug(id: &str, max: usize) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && id.len() <= max
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A policy id is a slug of at most 64 characters (it becomes a subject token).
pub fn policy_id(id: &str) -> Result<(), FieldError> {
    if is_slug(id, MAX_POLICY_ID_LEN) {
        Ok(())
    } else {
        fail(
            "command.policy_id",
            format!("`{id}` is not a valid policy id: use [a-z0-9][a-z0-9_-]*, at most {MAX_POLICY_ID_LEN} characters"),
        )
    }
}

/// Text between `min` and `max` characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let len = value.chars().count();
    if len < min {
        fail(
            field,
            if min == 1 {
                "must not be empty".to_owned()
            } else {
                format!("must have at least {min} characters")
            },
        )
    } else if len > max {
        fail(
            field,
            format!("is {len} characters long; at most {max} are allowed"),
        )
    } else {
        Ok(())
    }
}

/// Attribute names are CEL identifiers, not reserved words; at most `max` in all.
pub fn attributes(schema: &AttributeSchema, max: usize) -> Result<(), FieldError> {
    let mut count = 0;
    check_fields(schema, "command.attributes", &mut count)?;
    if count > max {
        return fail(
            "command.attributes",
            format!("declares {count} attributes; at most {max} are allowed"),
        );
    }
    Ok(())
}

fn check_fields(
    fields: &std::collections::BTreeMap<String, AttributeType>,
    path: &str,
    count: &mut usize,
) -> Result<(), FieldError> {
    for (name, ty) in fields {
        *count += 1;
        let field = format!("{path}.{name}");
        if !is_identifier(name) {
            return fail(field, format!("`{name}` is not a valid attribute name: use [A-Za-z_][A-Za-z0-9_]*, at most 64 characters"));
        }
        if CEL_RESERVED.contains(&name.as_str()) {
            return fail(field, format!("`{name}` is a reserved word in CEL"));
        }
        if let AttributeType::Object(inner) = ty {
            if inner.is_empty() {
                return fail(field, "an object attribute must declare at least one field");
            }
            check_fields(inner, &field, count)?;
        }
    }
    Ok(())
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_id_must_be_a_slug() {
        assert!(policy_id("media-v2_x").is_ok());
        assert_eq!(policy_id("Media").unwrap_err().field, "command.policy_id");
        assert!(policy_id("a.b").is_err());
        assert!(policy_id(&"a".repeat(65)).is_err());
    }

    #[test]
    fn text_is_bounded_in_characters() {
        assert!(text("f", "", 1, 3).is_err());
        assert!(text("f", "ééé", 1, 3).is_ok());
        assert!(text("f", "abcd", 1, 3)
            .unwrap_err()
            .message
            .contains("at most 3"));
    }

    #[test]
    fn attribute_names_must_be_cel_identifiers() {
        let schema: AttributeSchema =
            serde_json::from_value(serde_json::json!({"scan": {"has-dash": "int"}})).unwrap();
        assert_eq!(
            attributes(&schema, 10).unwrap_err().field,
            "command.attributes.scan.has-dash"
        );
        let reserved: AttributeSchema =
            serde_json::from_value(serde_json::json!({"in": "int"})).unwrap();
        assert!(attributes(&reserved, 10)
            .unwrap_err()
            .message
            .contains("reserved"));
    }

    #[test]
    fn nested_attributes_count_towards_the_limit() {
        let schema: AttributeSchema =
            serde_json::from_value(serde_json::json!({"a": "int", "o": {"b": "int", "c": "int"}}))
                .unwrap();
        assert!(attributes(&schema, 4).is_ok());
        assert!(attributes(&schema, 3).is_err());
    }
}
