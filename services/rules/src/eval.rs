//! [`CompiledPolicy`]: a validated rules document, compiled once per policy version and shared
//! (e.g. in an `Arc`) by every worker thread that evaluates items.
//!
//! Thread safety: cel 0.15's parsed `Expression` (what a `Program` wraps) and its root
//! `Context` are both `Send + Sync` (a context's functions, values and resolver are required
//! to be). So the policy keeps one root context, and each evaluation opens a child scope on it
//! that borrows the item through a `VariableResolver`: no per-thread state, no locking and
//! no copy of the item's values.

use std::fmt;
use std::sync::Arc;

use cel::common::types::{CelBool, CelDouble, CelInt, CelUInt};
use cel::common::value::Val;
use cel::parser::Expression;
use cel::{Context, Env, ExecutionError, Value};
use gatehouse_events::rules::{AttributeSchema, Decision, RulesDocument};
use serde_json::Value as Json;

use crate::error::{EvalError, ItemError, RuleError};
use crate::item::{Item, TextError};

/// A rules document that passed validation, ready to evaluate items.
pub struct CompiledPolicy {
    pub(crate) root: Context<'static, 'static>,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) score: Expression,
    pub(crate) default_decision: Decision,
    pub(crate) default_reason: Arc<str>,
    pub(crate) schema: AttributeSchema,
}

/// One rule, in document order.
pub(crate) struct CompiledRule {
    pub id: Arc<str>,
    /// `rules[i].condition`, for evaluation errors.
    pub location: String,
    pub condition: Expression,
    pub decision: Decision,
    pub reason: Arc<str>,
}

/// The outcome of evaluating one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub decision: Decision,
    /// The rule that matched first; `None` when the default decision applied.
    pub rule_id: Option<Arc<str>>,
    /// The matching rule's reason, or the document's default reason.
    pub reason: Arc<str>,
    /// The score expression's value (ints become `f64`); always finite.
    pub score: f64,
}

impl CompiledPolicy {
    /// Validates `doc` against `schema` and compiles it; the same as [`crate::validate`].
    pub fn compile(doc: &RulesDocument, schema: &AttributeSchema) -> Result<Self, Vec<RuleError>> {
        crate::validate::validate(doc, schema)
    }

    /// Evaluates `item`: the first rule whose condition holds decides (else the default), and
    /// the score expression is always evaluated.
    ///
    /// A condition or score that fails on this item (an attribute it lacks, a non-bool
    /// condition, a non-finite score) is an [`EvalError`]; this never panics.
    pub fn evaluate(&self, item: &Item<'_>) -> Result<Evaluation, EvalError> {
        let mut ctx = self.root.new_inner_scope();
        ctx.set_variable_resolver(item);
        let matched = self.first_match(&ctx)?;
        let score = self.score(&ctx)?;
        Ok(match matched {
            Some(rule) => Evaluation {
                decision: rule.decision,
                rule_id: Some(Arc::clone(&rule.id)),
                reason: Arc::clone(&rule.reason),
                score,
            },
            None => Evaluation {
                decision: self.default_decision,
                rule_id: None,
                reason: Arc::clone(&self.default_reason),
                score,
            },
        })
    }

    /// Checks and converts an item's attributes against the schema this policy was compiled
    /// with: [`Item::from_json`] with [`CompiledPolicy::schema`].
    pub fn item<'a>(&self, attributes: &'a Json) -> Result<Item<'a>, ItemError> {
        Item::from_json(attributes, &self.schema)
    }

    /// Checks and converts an item's attributes given as JSON text, in one pass:
    /// [`Item::from_json_text`] with [`CompiledPolicy::schema`]. The same item or error as
    /// [`CompiledPolicy::item`] on the parsed text.
    pub fn item_from_text<'a>(&self, attributes: &'a [u8]) -> Result<Item<'a>, TextError> {
        Item::from_json_text(attributes, &self.schema)
    }

    /// The attribute schema the policy was validated against.
    pub fn schema(&self) -> &AttributeSchema {
        &self.schema
    }

    /// The rule ids, in evaluation order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|rule| &*rule.id)
    }

    fn first_match(&self, ctx: &Context<'_, '_>) -> Result<Option<&CompiledRule>, EvalError> {
        for rule in &self.rules {
            let fail = |message: &dyn fmt::Display| {
                EvalError::new(&rule.location, Some(&rule.id), message)
            };
            let value = Value::resolve_val(&rule.condition, ctx).map_err(|e| fail(&describe(e)))?;
            match value.downcast_ref::<CelBool>() {
                Some(holds) if *holds.inner() => return Ok(Some(rule)),
                Some(_) => {}
                None => {
                    let found = value.get_type().name();
                    return Err(fail(&format_args!(
                        "the condition yielded {found}, expected bool"
                    )));
                }
            }
        }
        Ok(None)
    }

    fn score(&self, ctx: &Context<'_, '_>) -> Result<f64, EvalError> {
        let fail = |message: &dyn fmt::Display| EvalError::new("score", None, message);
        let value = Value::resolve_val(&self.score, ctx).map_err(|e| fail(&describe(e)))?;
        match as_number(value.as_ref()) {
            Some(score) if score.is_finite() => Ok(score),
            Some(score) => Err(fail(&format_args!(
                "the score is {score}, not a finite number"
            ))),
            None => {
                let found = value.get_type().name();
                Err(fail(&format_args!(
                    "the score yielded {found}, expected a number"
                )))
            }
        }
    }
}

impl fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("rules", &self.rule_ids().collect::<Vec<_>>())
            .field("default_decision", &self.default_decision)
            .finish_non_exhaustive()
    }
}

/// A run-time error in the item's terms where cel's wording is obscure: expressions are
/// validated, so an undeclared reference is an attribute the item lacks.
pub(crate) fn describe(error: ExecutionError) -> String {
    match error {
        ExecutionError::UndeclaredReference(name) => format!("the item has no attribute `{name}`"),
        ExecutionError::NoSuchKey(key) => format!("the item has no field `{key}`"),
        other => other.to_string(),
    }
}

/// An int, uint or double CEL value as `f64`.
pub(crate) fn as_number(value: &dyn Val) -> Option<f64> {
    if let Some(d) = value.downcast_ref::<CelDouble>() {
        return Some(*d.inner());
    }
    if let Some(i) = value.downcast_ref::<CelInt>() {
        return Some(*i.inner() as f64);
    }
    value.downcast_ref::<CelUInt>().map(|u| *u.inner() as f64)
}

/// The environment expressions are parsed and run in: the standard library, without the
/// optional syntax (`a.?b`), which is not on the allow-list.
pub(crate) fn standard_env() -> Arc<Env> {
    Arc::new(Env::stdlib().with_optional_support(false))
}

/// The root context every evaluation scopes into: `env` plus the `max` and `min` functions.
pub(crate) fn root_context(env: Arc<Env>) -> Context<'static, 'static> {
    let mut root = Context::with_env(env);
    // Cannot fail: the standard Env declares no `max`/`min` overload to conflict with.
    let max = root.add_function("max", cel::functions::max);
    let min = root.add_function("min", cel::functions::min);
    debug_assert!(max.is_ok() && min.is_ok());
    root
}

#[cfg(test)]
mod tests;
