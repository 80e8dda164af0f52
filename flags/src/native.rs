//! A `rule` rollout's condition compiled to native code when it has one of the common shapes,
//! so an evaluation reads the context directly instead of converting it for CEL and walking
//! the CEL interpreter: comparisons of a scalar attribute with a literal (`plan == "pro"`,
//! `seats >= 10`), membership in a list of literals (`region in ["eu", "us"]`), a bool
//! attribute, `true`/`false`, and `!`, `&&`, `||` over those. Anything else (a function, a
//! macro, a timestamp, a list or object attribute anywhere in the schema) stays with CEL.
//!
//! The answer is exactly CEL's (the property test below compares the two on random rules and
//! contexts): a context whose declared attributes do not fit the schema does not hold (as when
//! it does not convert to an item); an absent or `null` attribute is an error, and errors
//! combine as CEL combines them (`error && false` is `false`, `error || true` is `true`, any
//! other error stays one), and a rule holds only if it yields `true`.

use std::cmp::Ordering;

use cel::common::ast::{operators, Expr, LiteralValue};
use cel::parser::Expression;
use gatehouse_events::rules::{AttributeSchema, AttributeType};
use serde_json::{Map, Value};

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct NativeRule {
    /// Every declared attribute and its type: a context must fit them all.
    schema: Vec<(Box<str>, Scalar)>,
    root: Node,
}

/// The attribute types a native rule reads (checked as `Item::from_map` checks them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    String,
    Int,
    Double,
    Bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    String(Box<str>),
    Int(i64),
    Double(f64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum Node {
    Const(bool),
    /// A bool attribute.
    Attribute(Box<str>),
    /// `attribute <op> literal`, the literal of the attribute's type.
    Compare(Box<str>, Op, Literal),
    /// `attribute in [literals]`.
    In(Box<str>, Vec<Literal>),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
}

/// CEL's outcome of a sub-expression: a bool, or an error (`Err(())`).
type Outcome = Result<bool, ()>;

impl NativeRule {
    /// The native form of `expression` (compiled against `schema`), if it has one.
    pub fn compile(expression: &Expression, schema: &AttributeSchema) -> Option<NativeRule> {
        let schema = schema
            .iter()
            .map(|(name, ty)| Some((Box::from(name.as_str()), scalar(ty)?)))
            .collect::<Option<Vec<_>>>()?;
        let root = Compiler { schema: &schema }.node(expression)?;
        Some(NativeRule { schema, root })
    }

    /// Does the rule hold on `context`?
    pub fn holds(&self, context: &Map<String, Value>) -> bool {
        let fits = self
            .schema
            .iter()
            .all(|(name, ty)| match context.get(&**name) {
                None | Some(Value::Null) => true,
                Some(value) => fits(value, *ty),
            });
        fits && eval(&self.root, context) == Ok(true)
    }
}

fn scalar(ty: &AttributeType) -> Option<Scalar> {
    Some(match ty {
        AttributeType::String => Scalar::String,
        AttributeType::Int => Scalar::Int,
        AttributeType::Double => Scalar::Double,
        AttributeType::Bool => Scalar::Bool,
        _ => return None,
    })
}

/// Would `Item::from_map` accept `value` for an attribute of type `ty`?
fn fits(value: &Value, ty: Scalar) -> bool {
    match ty {
        Scalar::String => value.is_string(),
        Scalar::Int => value.as_i64().is_some(),
        Scalar::Double => value.is_number() && value.as_f64().is_some(),
        Scalar::Bool => value.is_boolean(),
    }
}

/// Names that CEL may resolve as something other than a variable.
const RESERVED: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
    "null",
    "true",
    "false",
];

struct Compiler<'s> {
    schema: &'s [(Box<str>, Scalar)],
}

impl Compiler<'_> {
    fn node(&self, e: &Expression) -> Option<Node> {
        match &e.expr {
            Expr::Literal(LiteralValue::Boolean(b)) => Some(Node::Const(*b.inner())),
            Expr::Ident(_) => match self.attribute(e)? {
                (name, Scalar::Bool) => Some(Node::Attribute(name)),
                _ => None,
            },
            Expr::Call(call) if call.target.is_none() => {
                match (call.func_name.as_str(), call.args.as_slice()) {
                    (operators::LOGICAL_NOT, [a]) => Some(Node::Not(Box::new(self.node(a)?))),
                    (operators::LOGICAL_AND, [a, b]) => {
                        Some(Node::And(Box::new(self.node(a)?), Box::new(self.node(b)?)))
                    }
                    (operators::LOGICAL_OR, [a, b]) => {
                        Some(Node::Or(Box::new(self.node(a)?), Box::new(self.node(b)?)))
                    }
                    (operators::IN, [a, list]) => self.membership(a, list),
                    (name, [a, b]) => self.comparison(name, a, b),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// A declared scalar attribute, by name.
    fn attribute(&self, e: &Expression) -> Option<(Box<str>, Scalar)> {
        let Expr::Ident(name) = &e.expr else {
            return None;
        };
        if RESERVED.contains(&name.as_str()) {
            return None;
        }
        self.schema
            .iter()
            .find(|(n, _)| **n == **name)
            .map(|(n, ty)| (n.clone(), *ty))
    }

    fn comparison(&self, name: &str, a: &Expression, b: &Expression) -> Option<Node> {
        let op = match name {
            operators::EQUALS => Op::Eq,
            operators::NOT_EQUALS => Op::Ne,
            operators::LESS => Op::Lt,
            operators::LESS_EQUALS => Op::Le,
            operators::GREATER => Op::Gt,
            operators::GREATER_EQUALS => Op::Ge,
            _ => return None,
        };
        // `attribute <op> literal`, or `literal <op> attribute` read the other way round.
        let (attribute, literal, op) = match (self.attribute(a), self.attribute(b)) {
            (Some(attribute), None) => (attribute, literal(b)?, op),
            (None, Some(attribute)) => (attribute, literal(a)?, flipped(op)),
            _ => return None,
        };
        let (name, ty) = attribute;
        let ordered = matches!(ty, Scalar::Int | Scalar::Double);
        if literal_type(&literal) != ty || (!ordered && !matches!(op, Op::Eq | Op::Ne)) {
            return None;
        }
        Some(Node::Compare(name, op, literal))
    }

    fn membership(&self, a: &Expression, list: &Expression) -> Option<Node> {
        let (name, ty) = self.attribute(a)?;
        let Expr::List(list) = &list.expr else {
            return None;
        };
        if !list.optional_indices.is_empty() {
            return None;
        }
        let literals = list
            .elements
            .iter()
            .map(literal)
            .collect::<Option<Vec<_>>>()?;
        if literals.iter().any(|l| literal_type(l) != ty) {
            return None;
        }
        Some(Node::In(name, literals))
    }
}

fn literal(e: &Expression) -> Option<Literal> {
    let Expr::Literal(value) = &e.expr else {
        return None;
    };
    Some(match value {
        LiteralValue::String(s) => Literal::String(Box::from(s.inner())),
        LiteralValue::Int(i) => Literal::Int(*i.inner()),
        LiteralValue::Double(d) => Literal::Double(*d.inner()),
        LiteralValue::Boolean(b) => Literal::Bool(*b.inner()),
        _ => return None,
    })
}

fn literal_type(literal: &Literal) -> Scalar {
    match literal {
        Literal::String(_) => Scalar::String,
        Literal::Int(_) => Scalar::Int,
        Literal::Double(_) => Scalar::Double,
        Literal::Bool(_) => Scalar::Bool,
    }
}

/// `a <op> b` is `b <flipped(op)> a`.
fn flipped(op: Op) -> Op {
    match op {
        Op::Lt => Op::Gt,
        Op::Le => Op::Ge,
        Op::Gt => Op::Lt,
        Op::Ge => Op::Le,
        same => same,
    }
}

/// The attribute's value: an absent or `null` one is an error, as in CEL.
fn value<'c>(context: &'c Map<String, Value>, name: &str) -> Result<&'c Value, ()> {
    match context.get(name) {
        None | Some(Value::Null) => Err(()),
        Some(value) => Ok(value),
    }
}

/// How a value (of the literal's type: the schema was checked) orders against the literal.
fn order(value: &Value, literal: &Literal) -> Option<Ordering> {
    match literal {
        Literal::String(s) => Some(value.as_str()?.cmp(s)),
        Literal::Int(i) => Some(value.as_i64()?.cmp(i)),
        Literal::Double(d) => value.as_f64()?.partial_cmp(d),
        Literal::Bool(b) => Some(value.as_bool()?.cmp(b)),
    }
}

fn eval(node: &Node, context: &Map<String, Value>) -> Outcome {
    match node {
        Node::Const(b) => Ok(*b),
        Node::Attribute(name) => value(context, name)?.as_bool().ok_or(()),
        Node::Compare(name, op, literal) => {
            let ordering = order(value(context, name)?, literal);
            Ok(match op {
                Op::Eq => ordering == Some(Ordering::Equal),
                Op::Ne => ordering != Some(Ordering::Equal),
                Op::Lt => ordering == Some(Ordering::Less),
                Op::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
                Op::Gt => ordering == Some(Ordering::Greater),
                Op::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
            })
        }
        Node::In(name, literals) => {
            let value = value(context, name)?;
            Ok(literals
                .iter()
                .any(|l| order(value, l) == Some(Ordering::Equal)))
        }
        Node::Not(a) => eval(a, context).map(|b| !b),
        // CEL's `&&`: `false` on either side decides, else an error stays one.
        Node::And(a, b) => match eval(a, context) {
            Ok(false) => Ok(false),
            left => match (left, eval(b, context)) {
                (Ok(true), right) => right,
                (_, Ok(false)) => Ok(false),
                _ => Err(()),
            },
        },
        // CEL's `||`: `true` on either side decides, else an error stays one.
        Node::Or(a, b) => match eval(a, context) {
            Ok(true) => Ok(true),
            left => match (left, eval(b, context)) {
                (Ok(false), right) => right,
                (_, Ok(true)) => Ok(true),
                _ => Err(()),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_rules::{CompiledExpression, Item};
    use proptest::prelude::*;
    use serde_json::json;

    fn schema() -> AttributeSchema {
        serde_json::from_value(
            json!({"plan": "string", "seats": "int", "ratio": "double", "beta": "bool"}),
        )
        .unwrap()
    }

    /// What the CEL interpreter answers: the context converts to an item and the rule is true.
    fn cel_holds(rule: &CompiledExpression, context: &Map<String, Value>) -> bool {
        let Ok(item) = Item::from_map(context, &schema()) else {
            return false;
        };
        matches!(rule.evaluate(&item), Ok(cel::Value::Bool(true)))
    }

    /// A rule's source and whether every part of it has a native form.
    fn leaf() -> impl Strategy<Value = (String, bool)> {
        prop_oneof![
            Just(("plan == \"pro\"".to_owned(), true)),
            Just(("\"free\" != plan".to_owned(), true)),
            Just(("plan in [\"pro\", \"team\"]".to_owned(), true)),
            Just(("plan in []".to_owned(), true)),
            (-2i64..12).prop_map(|n| (format!("seats >= {n}"), true)),
            (-2i64..12).prop_map(|n| (format!("{n} < seats"), true)),
            (-2i64..12).prop_map(|n| (format!("seats == {n}"), true)),
            Just(("seats in [1, 5, 10]".to_owned(), true)),
            Just(("ratio > 0.5".to_owned(), true)),
            Just(("0.25 >= ratio".to_owned(), true)),
            Just(("ratio != 1.0".to_owned(), true)),
            Just(("beta".to_owned(), true)),
            Just(("beta == false".to_owned(), true)),
            Just(("true".to_owned(), true)),
            Just(("false".to_owned(), true)),
            // No native form: the rule stays with CEL.
            Just(("size(plan) > 2".to_owned(), false)),
            Just(("plan.startsWith(\"p\")".to_owned(), false)),
            Just(("seats > 2.5".to_owned(), false)),
        ]
    }

    fn rule() -> impl Strategy<Value = (String, bool)> {
        leaf().prop_recursive(4, 16, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|(a, n)| (format!("!({a})"), n)),
                (inner.clone(), inner.clone())
                    .prop_map(|((a, m), (b, n))| (format!("({a}) && ({b})"), m && n)),
                (inner.clone(), inner)
                    .prop_map(|((a, m), (b, n))| (format!("({a}) || ({b})"), m && n)),
            ]
        })
    }

    /// An attribute: absent, `null`, of its type, or of another.
    fn attribute(values: Vec<Value>) -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            1 => Just(None),
            1 => Just(Some(Value::Null)),
            6 => proptest::sample::select(values).prop_map(Some),
            1 => Just(Some(json!("text"))),
            1 => Just(Some(json!(3))),
            1 => Just(Some(json!(true))),
        ]
    }

    fn context() -> impl Strategy<Value = Map<String, Value>> {
        (
            attribute(vec![json!("pro"), json!("team"), json!("free"), json!("")]),
            attribute(vec![
                json!(0),
                json!(1),
                json!(5),
                json!(10),
                json!(-1),
                json!(2.5),
            ]),
            attribute(vec![
                json!(0.25),
                json!(0.5),
                json!(1),
                json!(0.75),
                json!(-0.0),
            ]),
            attribute(vec![json!(true), json!(false)]),
        )
            .prop_map(|(plan, seats, ratio, beta)| {
                let mut context = Map::new();
                for (name, value) in [
                    ("plan", plan),
                    ("seats", seats),
                    ("ratio", ratio),
                    ("beta", beta),
                ] {
                    if let Some(value) = value {
                        context.insert(name.to_owned(), value);
                    }
                }
                context.insert("userId".to_owned(), json!("u1"));
                context
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// The native form answers as CEL does, and every rule made only of native shapes has one.
        #[test]
        fn a_native_rule_answers_as_cel((source, native) in rule(), contexts in proptest::collection::vec(context(), 8)) {
            let schema = schema();
            let compiled = CompiledExpression::compile(&source, &schema);
            // A rule Gatehouse refuses (`seats > 2.5` mixes types) is never evaluated.
            let Ok(compiled) = compiled else { return Ok(()) };
            let fast = NativeRule::compile(compiled.expression(), &schema);
            prop_assert_eq!(fast.is_some(), native, "{}", source);
            if let Some(fast) = fast {
                for context in &contexts {
                    prop_assert_eq!(fast.holds(context), cel_holds(&compiled, context), "{} on {:?}", source, context);
                }
            }
        }
    }

    #[test]
    fn the_common_shapes_have_a_native_form() {
        let schema = schema();
        for source in [
            "plan == \"pro\"",
            "plan in [\"pro\", \"team\"] && seats >= 10",
            "!beta || 0.5 < ratio",
        ] {
            let compiled = CompiledExpression::compile(source, &schema).unwrap();
            assert!(
                NativeRule::compile(compiled.expression(), &schema).is_some(),
                "{source}"
            );
        }
    }

    #[test]
    fn a_schema_with_a_non_scalar_attribute_stays_with_cel() {
        let schema: AttributeSchema =
            serde_json::from_value(json!({"plan": "string", "tags": "list<string>"})).unwrap();
        let compiled = CompiledExpression::compile("plan == \"pro\"", &schema).unwrap();
        assert!(NativeRule::compile(compiled.expression(), &schema).is_none());
    }
}
