//! [`CompiledExpression`]: one CEL expression compiled and evaluated exactly as a policy's
//! conditions and score are (same environment, parse limits, allow-lists, dry run and
//! evaluation), but yielding any value. It is how the cel-spec conformance cases are run
//! against Gatehouse (`tests/conformance.rs`), and a way to try an expression out.

use std::sync::Arc;

use cel::parser::Expression;
use cel::{Context, Value};
use gatehouse_events::rules::AttributeSchema;

use crate::dry_run::Expect;
use crate::error::{EvalError, RuleError};
use crate::eval::{describe, root_context, standard_env};
use crate::expr::{Compiler, Site};
use crate::item::Item;
use crate::samples::sample_json;

/// Where a standalone expression's errors say they are.
const LOCATION: &str = "expression";

/// A CEL expression over attributes declared in a schema, validated like a rule condition.
pub struct CompiledExpression {
    root: Context<'static, 'static>,
    expr: Expression,
}

impl CompiledExpression {
    /// Parses and checks `source` against `variables` (the attributes it may read) and dry-runs
    /// it on sample items, as [`crate::validate`] does for a condition; any result type is
    /// accepted. Every problem found is returned.
    pub fn compile(source: &str, variables: &AttributeSchema) -> Result<Self, Vec<RuleError>> {
        let env = standard_env();
        let root = root_context(Arc::clone(&env));
        let sample_json = sample_json(variables);
        // Samples are generated from the schema, so they always fit it.
        let samples: Vec<Item> = sample_json
            .iter()
            .filter_map(|json| Item::from_json(json, variables).ok())
            .collect();
        let compiler = Compiler {
            env: &env,
            root: &root,
            schema: variables,
            samples: &samples,
        };
        let site = Site {
            location: LOCATION,
            rule_id: None,
        };
        let mut errors = Vec::new();
        match compiler.compile(source, Expect::Any, &site, &mut errors) {
            Some(expr) => Ok(CompiledExpression { root, expr }),
            None => Err(errors),
        }
    }

    /// The checked expression (what [`CompiledExpression::evaluate`] walks), for callers that
    /// compile common shapes further.
    pub fn expression(&self) -> &Expression {
        &self.expr
    }

    /// Evaluates the expression with `item`'s attributes as its variables.
    pub fn evaluate(&self, item: &Item<'_>) -> Result<Value, EvalError> {
        let mut ctx = self.root.new_inner_scope();
        ctx.set_variable_resolver(item);
        let fail = |message: String| EvalError::new(LOCATION, None, message);
        let value = Value::resolve_val(&self.expr, &ctx).map_err(|e| fail(describe(e)))?;
        Value::try_from(value.as_ref()).map_err(|e| fail(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> AttributeSchema {
        serde_json::from_value(json!({"published_at": "timestamp", "quality": "double"})).unwrap()
    }

    fn evaluate(source: &str, attributes: serde_json::Value) -> Result<Value, EvalError> {
        let expression = CompiledExpression::compile(source, &schema()).unwrap();
        expression.evaluate(&Item::from_json(&attributes, &schema()).unwrap())
    }

    #[test]
    fn an_expression_yields_a_value_of_any_type() {
        let value = evaluate("[quality, quality * 2.0]", json!({"quality": 0.5}));
        assert_eq!(
            value,
            Ok(Value::List(Arc::new(vec![
                Value::Float(0.5),
                Value::Float(1.0)
            ])))
        );
    }

    #[test]
    fn an_expression_is_checked_like_a_condition() {
        let errors = CompiledExpression::compile("colour == 1", &schema())
            .err()
            .unwrap();
        assert_eq!(errors[0].code, crate::RuleErrorCode::UnknownAttribute);
        assert_eq!(errors[0].location, "expression");
    }

    #[test]
    fn timestamps_durations_their_accessors_and_matches_work_on_attributes() {
        let item = json!({"published_at": "2025-12-31T23:30:00-01:00"}); // 00:30 UTC, 2026-01-01
        for (source, expected) in [
            (
                r#"published_at > timestamp("2026-01-01T00:00:00Z")"#,
                Value::Bool(true),
            ),
            (
                r#"published_at - timestamp("2026-01-01T00:00:00Z") == duration("30m")"#,
                Value::Bool(true),
            ),
            (
                r#"published_at + duration("1h30m") < timestamp("2026-01-01T02:00:01Z")"#,
                Value::Bool(true),
            ),
            ("published_at.getFullYear()", Value::Int(2026)),
            (r#"published_at.getFullYear("-01:00")"#, Value::Int(2025)),
            (r#"published_at.getMonth("Europe/Paris")"#, Value::Int(0)),
            ("published_at.getDayOfYear()", Value::Int(0)),
            ("published_at.getDayOfMonth()", Value::Int(0)),
            ("published_at.getDate()", Value::Int(1)),
            ("published_at.getDayOfWeek()", Value::Int(4)),
            ("published_at.getHours()", Value::Int(0)),
            ("published_at.getMinutes()", Value::Int(30)),
            ("published_at.getSeconds()", Value::Int(0)),
            ("published_at.getMilliseconds()", Value::Int(0)),
            (r#"duration("1h30m").getMinutes()"#, Value::Int(90)),
            (
                r#"duration("90s").getSeconds() + duration("1.5s").getMilliseconds()"#,
                Value::Int(1590),
            ),
            (r#"duration("2h").getHours()"#, Value::Int(2)),
            ("int(published_at)", Value::Int(1_767_227_400)),
            (
                "string(published_at)",
                Value::String(Arc::new("2026-01-01T00:30:00Z".into())),
            ),
            (
                r#"string(published_at).matches("^2026-01-01T")"#,
                Value::Bool(true),
            ),
        ] {
            assert_eq!(evaluate(source, item.clone()), Ok(expected), "{source}");
        }
    }

    #[test]
    fn a_duration_attribute_equals_what_cel_s_duration_reads_from_the_same_text() {
        let schema: AttributeSchema = serde_json::from_value(json!({"wait": "duration"})).unwrap();
        for text in [
            "0",
            "-0",
            "90s",
            "1h30m",
            "1.5h",
            "-2m",
            "1m1ms1us1ns",
            "0.5s",
            "2.25ms",
        ] {
            let source = format!(
                r#"wait == duration("{text}") && wait < duration("{text}") + duration("1ns")"#
            );
            let expression = CompiledExpression::compile(&source, &schema).unwrap();
            let attributes = json!({ "wait": text });
            let item = Item::from_json(&attributes, &schema).unwrap();
            assert_eq!(expression.evaluate(&item), Ok(Value::Bool(true)), "{text}");
        }
    }

    #[test]
    fn an_attribute_the_item_lacks_is_an_evaluation_error() {
        let error = evaluate("quality", json!({})).unwrap_err();
        assert_eq!(error.message, "the item has no attribute `quality`");
    }
}
