//! The errors of this crate: problems found in a rules document ([`RuleError`]), an evaluation
//! that failed ([`EvalError`]) and an item that does not fit the schema ([`ItemError`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest message an [`EvalError`] carries, in characters.
pub const MAX_EVAL_MESSAGE_CHARS: usize = 500;

/// What is wrong with a rules document; the stable wire name is [`RuleErrorCode::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleErrorCode {
    /// The expression does not parse; `line` and `column` say where.
    SyntaxError,
    /// The expression names an attribute (or a field of one) the schema does not declare.
    UnknownAttribute,
    /// The expression calls a function outside the allow-list.
    UnknownFunction,
    /// Evaluating the expression on sample items failed, or yielded the wrong type.
    TypeError,
    /// A bound was exceeded: rule count, expression or reason length, nesting depth, id length.
    TooLarge,
    /// A rule id does not match `[a-z0-9][a-z0-9_-]*`.
    InvalidRuleId,
    /// Two rules share an id.
    DuplicateRuleId,
    /// A condition or the score is empty.
    EmptyExpression,
}

impl RuleErrorCode {
    /// The stable wire name, e.g. `syntax_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleErrorCode::SyntaxError => "syntax_error",
            RuleErrorCode::UnknownAttribute => "unknown_attribute",
            RuleErrorCode::UnknownFunction => "unknown_function",
            RuleErrorCode::TypeError => "type_error",
            RuleErrorCode::TooLarge => "too_large",
            RuleErrorCode::InvalidRuleId => "invalid_rule_id",
            RuleErrorCode::DuplicateRuleId => "duplicate_rule_id",
            RuleErrorCode::EmptyExpression => "empty_expression",
        }
    }
}

impl fmt::Display for RuleErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found while validating a rules document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{location}: {code}: {message}")]
pub struct RuleError {
    pub code: RuleErrorCode,
    /// Where in the document: `rules[2].condition`, `rules[0].id`, `rules`, `default_reason`
    /// or `score` (rule indexes count from 0).
    pub location: String,
    /// The id of the rule the problem is in, if any.
    pub rule_id: Option<String>,
    /// Human-readable; for a syntax error it ends with the source line and a caret.
    pub message: String,
    /// 1-based line within the expression, when known.
    pub line: Option<u32>,
    /// 1-based column (in characters) within the line, when known.
    pub column: Option<u32>,
}

impl RuleError {
    /// An error without a source position.
    pub(crate) fn new(
        code: RuleErrorCode,
        location: impl Into<String>,
        rule_id: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        RuleError {
            code,
            location: location.into(),
            rule_id: rule_id.map(str::to_owned),
            message: message.into(),
            line: None,
            column: None,
        }
    }

    /// The same error at `position` (line, column), if there is one.
    pub(crate) fn at(mut self, position: Option<(u32, u32)>) -> Self {
        if let Some((line, column)) = position {
            self.line = Some(line);
            self.column = Some(column);
        }
        self
    }
}

/// An evaluation that failed at run time, e.g. a rule referencing an attribute the item lacks.
///
/// The caller records it as the item's evaluation error; it never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct EvalError {
    /// `rules[2].condition` or `score`.
    pub location: String,
    /// The id of the rule whose condition failed; `None` for the score.
    pub rule_id: Option<String>,
    /// At most [`MAX_EVAL_MESSAGE_CHARS`] characters.
    pub message: String,
}

impl EvalError {
    pub(crate) fn new(location: &str, rule_id: Option<&str>, message: impl fmt::Display) -> Self {
        EvalError {
            location: location.to_owned(),
            rule_id: rule_id.map(str::to_owned),
            message: truncate(message.to_string(), MAX_EVAL_MESSAGE_CHARS),
        }
    }
}

/// An item whose attributes do not fit the attribute schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// The item's attributes are not a JSON object.
    #[error("item attributes must be a JSON object, got {found}")]
    NotAnObject { found: &'static str },
    /// A value of the wrong JSON type, or out of range for its type.
    #[error("attribute `{path}`: expected {expected}, got {found}")]
    WrongType {
        path: String,
        expected: String,
        found: String,
    },
    /// A timestamp attribute that is not RFC 3339 text, or outside years 1 to 9999 in UTC.
    #[error("attribute `{path}`: `{value}` is not an RFC 3339 timestamp")]
    InvalidTimestamp { path: String, value: String },
    /// A duration attribute that is not duration text (`"90s"`, `"1h30m"`), or beyond CEL's
    /// range (about 292 years either way).
    #[error("attribute `{path}`: `{value}` is not a duration (like \"90s\" or \"1h30m\")")]
    InvalidDuration { path: String, value: String },
}

/// `text` cut to at most `max` characters, marked with `…` when cut.
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max.saturating_sub(1)) {
        if text[cut..].chars().nth(1).is_some() {
            text.truncate(cut);
            text.push('…');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_wire_names() {
        for code in [RuleErrorCode::SyntaxError, RuleErrorCode::DuplicateRuleId] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn a_long_message_is_cut_to_the_limit_on_a_character_boundary() {
        let cut = truncate("é".repeat(600), MAX_EVAL_MESSAGE_CHARS);
        assert_eq!(cut.chars().count(), MAX_EVAL_MESSAGE_CHARS);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn a_message_at_the_limit_is_kept_whole() {
        let text = "x".repeat(MAX_EVAL_MESSAGE_CHARS);
        assert_eq!(truncate(text.clone(), MAX_EVAL_MESSAGE_CHARS), text);
    }
}
