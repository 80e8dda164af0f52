//! The dry run: CEL has no static type checker in cel 0.15, so each expression is evaluated on
//! typed sample items generated from the schema, catching what only shows at run time
//! (`quality + "x"`, a condition that yields an int, a score that yields a string).
//!
//! `&&`, `||` and `? :` short-circuit, so a branch the samples never reach would go unchecked:
//! every operand of those operators (outside comprehensions, whose variables only exist in
//! the loop) is evaluated on its own as well.

use cel::common::ast::{EntryExpr, Expr, IdedEntryExpr, IdedExpr};
use cel::common::types::CelBool;
use cel::common::value::Val;
use cel::{Context, ExecutionError, Value};

use crate::error::RuleErrorCode;
use crate::eval::as_number;
use crate::item::Item;

/// What an expression must yield.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A rule condition.
    Bool,
    /// The score: an int, uint or double.
    Number,
    /// A standalone expression ([`crate::CompiledExpression`]): any value.
    Any,
}

/// The first problem the dry run found; `id` is the node it is at, when known.
pub(crate) struct Problem {
    pub code: RuleErrorCode,
    pub message: String,
    pub id: Option<u64>,
}

/// Evaluates `expr`, and each short-circuited operand in it, on every sample item.
pub(crate) fn dry_run(
    expr: &IdedExpr,
    expect: Expect,
    root: &Context<'_, '_>,
    samples: &[Item<'_>],
) -> Option<Problem> {
    if let Some(problem) = constant_failure(expr, root) {
        return Some(problem);
    }
    let mut operands = Vec::new();
    collect_operands(expr, &mut operands);
    for item in samples {
        let mut ctx = root.new_inner_scope();
        ctx.set_variable_resolver(item);
        if let Some(problem) = run(expr, Some(expect), None, &ctx) {
            return Some(problem);
        }
        for &(operand, expect) in &operands {
            if let Some(problem) = run(operand, expect, Some(operand.id), &ctx) {
                return Some(problem);
            }
        }
    }
    None
}

fn run(expr: &IdedExpr, expect: Option<Expect>, id: Option<u64>, ctx: &Context) -> Option<Problem> {
    match Value::resolve_val(expr, ctx) {
        Ok(value) => {
            let (code, message) = mismatch(value.as_ref(), expect?, id.is_some())?;
            Some(Problem { code, message, id })
        }
        Err(error) => {
            let (code, message) = reported(&error)?;
            let id = Some(culprit(expr, ctx, &|e| reported(e).is_some()).id);
            Some(Problem { code, message, id })
        }
    }
}

/// The innermost sub-expression of `e` (which fails) that fails on its own: where the error is.
fn culprit<'e>(
    e: &'e IdedExpr,
    ctx: &Context,
    counts: &dyn Fn(&ExecutionError) -> bool,
) -> &'e IdedExpr {
    let fails =
        |child: &IdedExpr| matches!(Value::resolve_val(child, ctx), Err(err) if counts(&err));
    match children(e).into_iter().find(|child| fails(child)) {
        Some(child) => culprit(child, ctx, counts),
        None => e,
    }
}

/// The outermost sub-expression that reads no attribute and fails: it fails for every item,
/// whatever the samples (`timestamp("soon")`, `1 / 0`), and may hide a type error around it.
fn constant_failure(e: &IdedExpr, ctx: &Context) -> Option<Problem> {
    if !is_constant(e) {
        return children(e)
            .into_iter()
            .find_map(|child| constant_failure(child, ctx));
    }
    let error = Value::resolve_val(e, ctx).err()?;
    Some(Problem {
        code: RuleErrorCode::TypeError,
        message: format!("fails for every item: {error}"),
        id: Some(culprit(e, ctx, &|_| true).id),
    })
}

/// Whether `e` reads no attribute (nor comprehension variable).
fn is_constant(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Ident(_) | Expr::Comprehension(_) => false,
        _ => children(e).into_iter().all(is_constant),
    }
}

fn mismatch(value: &dyn Val, expect: Expect, operand: bool) -> Option<(RuleErrorCode, String)> {
    let found = value.get_type().name();
    let message = match expect {
        Expect::Any => return None,
        Expect::Bool if value.downcast_ref::<CelBool>().is_some() => return None,
        Expect::Number if as_number(value).is_some() => return None,
        Expect::Bool if operand => format!("this operand yields {found}, expected bool"),
        Expect::Bool => format!("the condition yields {found}, expected bool"),
        Expect::Number => {
            format!("the score yields {found}, expected a number (int, uint or double)")
        }
    };
    Some((RuleErrorCode::TypeError, message))
}

/// The error as a problem, or `None` when it depends on the sample's values rather than on
/// types (division by zero, an index out of range, `int("sample")`): real items may not hit it.
fn reported(error: &ExecutionError) -> Option<(RuleErrorCode, String)> {
    match error {
        ExecutionError::DivisionByZero(_)
        | ExecutionError::RemainderByZero(_)
        | ExecutionError::Overflow(..)
        | ExecutionError::IndexOutOfBounds(_) => None,
        // An invalid regex fails on every value; other function errors depend on the value.
        ExecutionError::FunctionError { function, message }
            if !(function == "matches" && message.contains("not a valid regex")) =>
        {
            None
        }
        ExecutionError::NoSuchKey(key) => Some((
            RuleErrorCode::UnknownAttribute,
            format!("unknown attribute field `{key}`"),
        )),
        other => Some((
            RuleErrorCode::TypeError,
            format!("fails on sample items: {other}"),
        )),
    }
}

/// The operands of `&&`, `||` and `? :` under `e` (outside comprehension loops), with what
/// each must yield: `&&`/`||` operands and a condition must be bools.
fn collect_operands<'e>(e: &'e IdedExpr, out: &mut Vec<(&'e IdedExpr, Option<Expect>)>) {
    if let Expr::Call(call) = &e.expr {
        let logical = matches!(call.func_name.as_str(), "_&&_" | "_||_");
        let conditional = call.func_name == "_?_:_";
        for (i, arg) in call.args.iter().enumerate() {
            if logical || (conditional && i == 0) {
                out.push((arg, Some(Expect::Bool)));
            } else if conditional {
                out.push((arg, None));
            }
        }
    }
    for child in children(e) {
        collect_operands(child, out);
    }
}

/// The sub-expressions of `e` that evaluate in `e`'s scope: a comprehension's range and
/// initial value, not its loop, whose variables exist only while it runs.
fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Call(call) => call
            .target
            .as_deref()
            .into_iter()
            .chain(&call.args)
            .collect(),
        Expr::Comprehension(c) => vec![&c.iter_range, &c.accu_init],
        Expr::Select(select) => vec![&select.operand],
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => map.entries.iter().flat_map(entry_children).collect(),
        Expr::Struct(st) => st.entries.iter().flat_map(entry_children).collect(),
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => Vec::new(),
    }
}

fn entry_children(entry: &IdedEntryExpr) -> Vec<&IdedExpr> {
    match &entry.expr {
        EntryExpr::MapEntry(pair) => vec![&pair.key, &pair.value],
        EntryExpr::StructField(field) => vec![&field.value],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::sample_json;
    use gatehouse_events::rules::AttributeSchema;
    use serde_json::json;

    fn problem(source: &str, expect: Expect) -> Option<(RuleErrorCode, String)> {
        let schema: AttributeSchema = serde_json::from_value(json!({
            "kind": "string", "quality": "double", "age_days": "int", "tags": "list<string>",
            "published_at": "timestamp"
        }))
        .unwrap();
        let json = sample_json(&schema);
        let samples: Vec<Item> = json
            .iter()
            .map(|j| Item::from_json(j, &schema).unwrap())
            .collect();
        let expr = cel::Env::stdlib().parser().parse(source).unwrap();
        let root = crate::eval::root_context(crate::eval::standard_env());
        dry_run(&expr, expect, &root, &samples).map(|p| (p.code, p.message))
    }

    #[test]
    fn adding_a_string_to_a_double_is_a_type_error() {
        let (code, message) = problem(r#"quality + "x" > 1.0"#, Expect::Bool).unwrap();
        assert_eq!(code, RuleErrorCode::TypeError);
        assert!(message.contains("add"), "{message}");
    }

    #[test]
    fn a_type_error_is_located_at_the_innermost_failing_sub_expression() {
        let source = r#"quality + "x" > 1.0"#;
        let expr = cel::Env::stdlib().parser().parse(source).unwrap();
        let Expr::Call(compare) = &expr.expr else {
            panic!("not a call")
        };
        let schema: AttributeSchema = serde_json::from_value(json!({"quality": "double"})).unwrap();
        let json = sample_json(&schema);
        let item = Item::from_json(&json[0], &schema).unwrap();
        let root = crate::eval::root_context(crate::eval::standard_env());
        let mut ctx = root.new_inner_scope();
        ctx.set_variable_resolver(&item);
        let found = culprit(&expr, &ctx, &|e| reported(e).is_some());
        assert_eq!(
            found.id, compare.args[0].id,
            "the addition, not the comparison"
        );
    }

    #[test]
    fn a_type_error_behind_a_short_circuit_is_still_found() {
        let found = problem(r#"kind == "video" && quality + "x" > 1.0"#, Expect::Bool);
        assert_eq!(found.map(|p| p.0), Some(RuleErrorCode::TypeError));
    }

    #[test]
    fn a_division_by_zero_on_sample_values_is_not_reported() {
        assert!(problem("age_days != 0 && 100 / age_days > 1", Expect::Bool).is_none());
    }

    #[test]
    fn an_index_beyond_an_empty_sample_list_is_not_reported() {
        assert!(problem(r#"size(tags) > 0 && tags[0] == "x""#, Expect::Bool).is_none());
    }

    #[test]
    fn a_condition_yielding_an_int_is_a_type_error() {
        let (_, message) = problem("age_days + 1", Expect::Bool).unwrap();
        assert_eq!(message, "the condition yields int, expected bool");
    }

    #[test]
    fn a_score_yielding_a_string_is_a_type_error() {
        let (_, message) = problem("kind", Expect::Number).unwrap();
        assert!(message.starts_with("the score yields string"), "{message}");
    }

    #[test]
    fn a_sub_expression_failing_without_reading_attributes_is_a_type_error() {
        let (_, message) = problem(
            r#"kind == "x" || timestamp("soon") > published_at"#,
            Expect::Bool,
        )
        .unwrap();
        assert!(message.starts_with("fails for every item"), "{message}");
    }

    #[test]
    fn a_type_error_behind_a_conversion_failing_on_some_samples_is_found() {
        // `double("")` and `double("sample")` fail; the sample `"1"` reaches the bad condition.
        let (_, message) = problem("double(kind)", Expect::Bool).unwrap();
        assert_eq!(message, "the condition yields double, expected bool");
    }

    #[test]
    fn an_invalid_regex_is_a_type_error() {
        assert!(problem(r#"kind.matches("[")"#, Expect::Bool).is_some());
    }
}
