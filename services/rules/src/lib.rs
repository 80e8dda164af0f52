//! Validation and evaluation of a policy version's rules document with CEL (the `cel` crate,
//! 0.15).
//!
//! A rules document ([`RulesDocument`]) is compiled once per policy version with [`validate`]
//! (or [`CompiledPolicy::compile`]), which either returns every problem found as a
//! [`RuleError`] with a stable code, or a [`CompiledPolicy`]. The policy is `Send + Sync`:
//! share it in an `Arc` across worker threads. Each catalog item's attributes are checked and
//! converted once with [`Item::from_json`] (or, from JSON text in one pass, with
//! [`Item::from_json_text`]), then [`CompiledPolicy::evaluate`] yields the first matching
//! rule's decision (or the default) and the score.
//!
//! ```
//! use gatehouse_events::rules::{AttributeSchema, RulesDocument};
//! use gatehouse_rules::{validate, Item};
//! use serde_json::json;
//!
//! let schema: AttributeSchema = serde_json::from_value(json!({"quality": "double"})).unwrap();
//! let doc: RulesDocument = serde_json::from_value(json!({
//!     "rules": [{"id": "low-quality", "condition": "quality < 0.4", "decision": "deny",
//!                "reason": "low quality"}],
//!     "default_decision": "allow",
//!     "score": "quality * 10.0"
//! })).unwrap();
//! let policy = validate(&doc, &schema).unwrap();
//! let attributes = json!({"quality": 0.25});
//! let evaluation = policy.evaluate(&Item::from_json(&attributes, &schema).unwrap()).unwrap();
//! assert_eq!(evaluation.rule_id.as_deref(), Some("low-quality"));
//! assert_eq!(evaluation.score, 2.5);
//! ```
//!
//! Layout:
//! - [`validate`](mod@validate): document bounds, rule ids and reasons; builds the policy.
//! - `expr`: one expression: length, parse (syntax and nesting), static checks, dry run.
//! - `check`: attribute and field paths against the schema; the function allow-list.
//! - `dry_run`: evaluation on typed sample items, which `samples` generates from the schema.
//! - [`item`]: an item's attributes checked against the schema and converted to CEL values
//!   (`item/text.rs`: the one pass from JSON text); [`TextError`] when the text is no item.
//! - [`eval`]: [`CompiledPolicy`] and [`Evaluation`].
//! - [`expression`]: [`CompiledExpression`], one expression compiled and evaluated the same
//!   way, yielding any value (the cel-spec conformance tests run through it).
//! - [`error`]: [`RuleError`] and its codes, [`EvalError`], [`ItemError`].

mod check;
mod dry_run;
pub mod error;
pub mod eval;
mod expr;
pub mod expression;
pub mod item;
mod samples;
pub mod validate;

#[cfg(test)]
mod test_support;

pub use check::MAX_MACRO_NESTING;
pub use error::{EvalError, ItemError, RuleError, RuleErrorCode, MAX_EVAL_MESSAGE_CHARS};
pub use eval::{CompiledPolicy, Evaluation};
pub use expr::{MAX_EXPRESSION_CHARS, MAX_NESTING_DEPTH};
pub use expression::CompiledExpression;
pub use item::{Item, TextError};
pub use validate::{validate, MAX_REASON_CHARS, MAX_RULES, MAX_RULE_ID_CHARS};

// Worker threads share one policy: this fails to compile if it stops being `Send + Sync`.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledPolicy>();
};

#[doc(no_inline)]
pub use gatehouse_events::rules::{AttributeSchema, AttributeType, Decision, RulesDocument};
