//! Static checks of a parsed expression: every attribute (and field path) it names is in the
//! schema, and every function it calls is on the allow-list.
//!
//! `Program::references()` is not enough here: it lists comprehension variables (`t` in
//! `tags.exists(t, ...)`) as variables and sees neither field paths nor namespaced calls, so
//! this walks the AST itself, tracking the variables each comprehension binds.

use cel::common::ast::{ComprehensionExpr, EntryExpr, Expr, IdedExpr, SelectExpr};
use gatehouse_events::rules::{AttributeSchema, AttributeType};

use crate::error::RuleErrorCode;
use crate::item::type_name;

/// Operators, as cel 0.15 names them in the AST. The macros (`has`, `all`, `exists`,
/// `exists_one`, `map`, `filter`) expand into comprehensions over these while parsing.
#[rustfmt::skip]
const OPERATORS: &[&str] = &[
    "_?_:_", "_&&_", "_||_", "!_", "@not_strictly_false",
    "-_", "_+_", "_-_", "_*_", "_/_", "_%_",
    "_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_",
    "_[_]", "@in",
];

/// Standard functions that are deterministic and cheap (no clock, no I/O); `max` and `min`
/// are registered on the root context by [`crate::eval`].
#[rustfmt::skip]
pub(crate) const FUNCTIONS: &[&str] = &[
    "size", "contains", "startsWith", "endsWith", "matches",
    "int", "uint", "double", "string", "bool", "bytes", "type", "dyn",
    "timestamp", "duration",
    "getFullYear", "getMonth", "getDayOfYear", "getDayOfMonth", "getDate", "getDayOfWeek",
    "getHours", "getMinutes", "getSeconds", "getMilliseconds",
    "max", "min",
];

/// Deepest nesting of comprehension macros (`all`, `exists`, `exists_one`, `map`, `filter`)
/// within one another's predicates: with item lists of length n, k nested loops cost n^k.
pub const MAX_MACRO_NESTING: usize = 2;

/// Identifiers that name a type (`type(x) == string`), not an attribute.
#[rustfmt::skip]
const TYPE_NAMES: &[&str] = &[
    "bool", "bytes", "double", "int", "list", "map", "null_type", "string", "type", "uint",
];

/// A problem found by the checks, at the node `id`.
pub(crate) struct Finding {
    pub code: RuleErrorCode,
    pub message: String,
    pub id: u64,
}

/// Checks `expr` against `schema`; each unknown name is reported once, in walk order.
pub(crate) fn check(expr: &IdedExpr, schema: &AttributeSchema) -> Vec<Finding> {
    let mut checker = Checker {
        schema,
        bound: Vec::new(),
        loops: 0,
        reported: Vec::new(),
        findings: Vec::new(),
    };
    checker.walk(expr);
    checker.findings
}

struct Checker<'e> {
    schema: &'e AttributeSchema,
    /// Variables bound by the enclosing comprehensions (iteration and accumulator).
    bound: Vec<&'e str>,
    /// How many comprehension loops enclose the node being walked.
    loops: usize,
    reported: Vec<(RuleErrorCode, String)>,
    findings: Vec<Finding>,
}

impl<'e> Checker<'e> {
    fn walk(&mut self, e: &'e IdedExpr) {
        match &e.expr {
            Expr::Unspecified | Expr::Literal(_) => {}
            Expr::Ident(name) => self.ident(e.id, name),
            Expr::Select(select) => self.select(e, select),
            Expr::Call(call) => {
                self.call(e.id, &call.func_name, call.target.as_deref());
                call.args.iter().for_each(|arg| self.walk(arg));
            }
            Expr::Comprehension(c) => self.comprehension(e.id, c),
            Expr::List(list) => list.elements.iter().for_each(|el| self.walk(el)),
            Expr::Map(map) => map.entries.iter().for_each(|en| self.entry(&en.expr)),
            Expr::Struct(st) => st.entries.iter().for_each(|en| self.entry(&en.expr)),
        }
    }

    fn comprehension(&mut self, id: u64, c: &'e ComprehensionExpr) {
        self.walk(&c.iter_range);
        self.walk(&c.accu_init);
        if self.loops == MAX_MACRO_NESTING {
            let message = format!("macros nest deeper than {MAX_MACRO_NESTING} levels");
            return self.report(RuleErrorCode::TooLarge, "", message, id);
        }
        let outer = self.bound.len();
        self.bound.push(&c.iter_var);
        self.bound.extend(c.iter_var2.as_deref());
        self.bound.push(&c.accu_var);
        self.loops += 1;
        for part in [&c.loop_cond, &c.loop_step, &c.result] {
            self.walk(part);
        }
        self.loops -= 1;
        self.bound.truncate(outer);
    }

    fn entry(&mut self, entry: &'e EntryExpr) {
        match entry {
            EntryExpr::StructField(field) => self.walk(&field.value),
            EntryExpr::MapEntry(pair) => {
                self.walk(&pair.key);
                self.walk(&pair.value);
            }
        }
    }

    fn is_bound(&self, name: &str) -> bool {
        name.starts_with('@') || self.bound.contains(&name)
    }

    fn is_known(&self, name: &str) -> bool {
        self.is_bound(name) || self.schema.contains_key(name) || TYPE_NAMES.contains(&name)
    }

    fn ident(&mut self, id: u64, name: &str) {
        if !self.is_known(name) {
            let message = format!("unknown attribute `{name}`");
            self.report(RuleErrorCode::UnknownAttribute, name, message, id);
        }
    }

    /// `scan.status` and `has(scan.status)`: a field path on an attribute is checked against
    /// the attribute's declared fields.
    fn select(&mut self, e: &'e IdedExpr, select: &'e SelectExpr) {
        match path_segments(e) {
            Some(path) if !self.is_bound(path[0]) && self.schema.contains_key(path[0]) => {
                self.path(e.id, &path)
            }
            _ => self.walk(&select.operand),
        }
    }

    fn path(&mut self, id: u64, path: &[&str]) {
        let mut ty = &self.schema[path[0]];
        for (i, field) in path.iter().enumerate().skip(1) {
            let parent = path[..i].join(".");
            match ty {
                AttributeType::Object(fields) => match fields.get(*field) {
                    Some(field_type) => ty = field_type,
                    None => {
                        let name = format!("{parent}.{field}");
                        let known = fields.keys().map(String::as_str).collect::<Vec<_>>();
                        let message = format!(
                            "unknown attribute `{name}` (`{parent}` has the fields {})",
                            known.join(", ")
                        );
                        return self.report(RuleErrorCode::UnknownAttribute, &name, message, id);
                    }
                },
                other => {
                    let message = format!(
                        "`{parent}` is a {} and has no field `{field}`",
                        type_name(other)
                    );
                    return self.report(RuleErrorCode::TypeError, &parent, message, id);
                }
            }
        }
    }

    fn call(&mut self, id: u64, function: &str, target: Option<&'e IdedExpr>) {
        let allowed = OPERATORS.contains(&function) || FUNCTIONS.contains(&function);
        if let Some(target) = target {
            // `math.abs(x)` names the namespaced function `math.abs`, while `kidn.size()` is an
            // allowed method on a mistyped attribute.
            match path_segments(target) {
                Some(path) if !allowed && !self.is_known(path[0]) => {
                    let name = format!("{}.{function}", path.join("."));
                    let message = format!("unknown function `{name}`");
                    return self.report(RuleErrorCode::UnknownFunction, &name, message, id);
                }
                _ => self.walk(target),
            }
        }
        if !allowed {
            let message = unknown_function_message(function);
            self.report(RuleErrorCode::UnknownFunction, function, message, id);
        }
    }

    fn report(&mut self, code: RuleErrorCode, name: &str, message: String, id: u64) {
        if self.reported.iter().any(|(c, n)| *c == code && n == name) {
            return;
        }
        self.reported.push((code, name.to_owned()));
        self.findings.push(Finding { code, message, id });
    }
}

fn unknown_function_message(function: &str) -> String {
    let usage = match function {
        "has" => "has(attribute.field)",
        "map" => "list.map(x, expression)",
        "all" | "exists" | "exists_one" | "filter" => "list.NAME(x, predicate)",
        _ => {
            return format!(
                "unknown function `{function}` (allowed: {})",
                FUNCTIONS.join(", ")
            )
        }
    };
    format!(
        "unknown function `{function}`: the `{function}` macro is written {}",
        usage.replace("NAME", function)
    )
}

/// The names `a.b.c` spells, root first (`has(a.b)` spells `a.b`); `None` for anything else.
fn path_segments(e: &IdedExpr) -> Option<Vec<&str>> {
    let mut segments = Vec::new();
    let mut e = e;
    loop {
        match &e.expr {
            Expr::Ident(name) => {
                segments.push(name.as_str());
                segments.reverse();
                return Some(segments);
            }
            Expr::Select(select) => {
                segments.push(select.field.as_str());
                e = &select.operand;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn findings(source: &str) -> Vec<(RuleErrorCode, String)> {
        let schema: AttributeSchema = serde_json::from_value(json!({
            "kind": "string", "tags": "list<string>", "scan": {"status": "string"}
        }))
        .unwrap();
        let expr = cel::Env::stdlib().parser().parse(source).unwrap();
        check(&expr, &schema)
            .into_iter()
            .map(|f| (f.code, f.message))
            .collect()
    }

    #[test]
    fn comprehension_variables_are_not_attributes() {
        assert!(
            findings(r#"tags.exists(t, t == "x") && tags.map(t, t + "").all(u, u != "")"#)
                .is_empty()
        );
    }

    #[test]
    fn a_comprehension_variable_does_not_leak_out_of_its_macro() {
        let found = findings(r#"tags.exists(t, t == "x") && t == "y""#);
        assert_eq!(
            found,
            [(
                RuleErrorCode::UnknownAttribute,
                "unknown attribute `t`".into()
            )]
        );
    }

    #[test]
    fn a_typo_in_a_field_path_names_the_whole_path() {
        let found = findings(r#"has(scan.stauts) || scan.stauts == "clean""#);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].1.starts_with("unknown attribute `scan.stauts`"),
            "{found:?}"
        );
    }

    #[test]
    fn a_field_of_a_scalar_attribute_is_a_type_error() {
        let found = findings("kind.length > 1");
        assert_eq!(found[0].0, RuleErrorCode::TypeError);
    }

    #[test]
    fn a_namespaced_function_is_reported_by_its_full_name() {
        let found = findings("math.abs(1) > 0");
        assert_eq!(
            found,
            [(
                RuleErrorCode::UnknownFunction,
                "unknown function `math.abs`".into()
            )]
        );
    }

    #[test]
    fn an_allowed_method_on_a_mistyped_attribute_reports_the_attribute() {
        let found = findings(r#"kidn.startsWith("v")"#);
        assert_eq!(
            found,
            [(
                RuleErrorCode::UnknownAttribute,
                "unknown attribute `kidn`".into()
            )]
        );
    }

    #[test]
    fn a_macro_called_with_the_wrong_arity_explains_its_form() {
        let found = findings("tags.exists(t)");
        assert!(
            found[0].1.contains("list.exists(x, predicate)"),
            "{found:?}"
        );
    }

    #[test]
    fn macros_nested_within_the_limit_pass() {
        assert!(findings("tags.exists(t, tags.filter(u, u != t).size() > 0)").is_empty());
    }

    #[test]
    fn macros_nested_past_the_limit_are_too_large() {
        let found = findings(r#"tags.all(a, tags.all(b, tags.all(c, a + b + c != "")))"#);
        assert_eq!(
            found,
            [(
                RuleErrorCode::TooLarge,
                "macros nest deeper than 2 levels".into()
            )]
        );
    }

    #[test]
    fn chained_macros_do_not_nest() {
        let chained = r#"tags.map(t, t + "!").filter(t, t != "").exists(t, t == "a!")"#;
        assert!(findings(chained).is_empty());
    }

    #[test]
    fn type_names_are_not_attributes() {
        assert!(findings("type(kind) == string").is_empty());
    }
}
