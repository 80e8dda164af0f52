//! Validating a whole rules document: document bounds, rule ids and reasons here, each
//! expression in [`crate::expr`]. Every problem is collected, in document order.

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_events::rules::{AttributeSchema, Rule, RulesDocument};

use crate::dry_run::Expect;
use crate::error::{truncate, RuleError, RuleErrorCode};
use crate::eval::{root_context, standard_env, CompiledPolicy, CompiledRule};
use crate::expr::{Compiler, Site};
use crate::item::Item;
use crate::samples::sample_json;

/// Most rules a document may have; rules past it are not checked.
pub const MAX_RULES: usize = 200;
/// Longest rule id, in characters.
pub const MAX_RULE_ID_CHARS: usize = 64;
/// Longest rule or default reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Validates `doc` against `schema` and compiles it, or returns every problem found, in
/// document order (per rule: id, condition, reason; then the default reason, then the score).
pub fn validate(
    doc: &RulesDocument,
    schema: &AttributeSchema,
) -> Result<CompiledPolicy, Vec<RuleError>> {
    let env = standard_env();
    let root = root_context(Arc::clone(&env));
    let sample_json = sample_json(schema);
    // Samples are generated from the schema, so they always fit it.
    let samples: Vec<Item> = sample_json
        .iter()
        .filter_map(|json| Item::from_json(json, schema).ok())
        .collect();
    let compiler = Compiler {
        env: &env,
        root: &root,
        schema,
        samples: &samples,
    };
    let mut errors = Vec::new();
    let rules = compile_rules(&doc.rules, &compiler, &mut errors);
    check_reason(&doc.default_reason, "default_reason", None, &mut errors);
    let score_site = Site {
        location: "score",
        rule_id: None,
    };
    let score = compiler.compile(&doc.score, Expect::Number, &score_site, &mut errors);
    match score {
        Some(score) if errors.is_empty() => Ok(CompiledPolicy {
            root,
            rules,
            score,
            default_decision: doc.default_decision,
            default_reason: Arc::from(doc.default_reason.as_str()),
            schema: schema.clone(),
        }),
        _ => Err(errors),
    }
}

fn compile_rules(
    rules: &[Rule],
    compiler: &Compiler<'_>,
    errors: &mut Vec<RuleError>,
) -> Vec<CompiledRule> {
    if rules.len() > MAX_RULES {
        let message = format!(
            "the document has {} rules, at most {MAX_RULES} allowed (rules past the limit were not checked)",
            rules.len()
        );
        errors.push(RuleError::new(
            RuleErrorCode::TooLarge,
            "rules",
            None,
            message,
        ));
    }
    let mut first_use: HashMap<&str, usize> = HashMap::new();
    let mut compiled = Vec::with_capacity(rules.len().min(MAX_RULES));
    for (i, rule) in rules.iter().take(MAX_RULES).enumerate() {
        let rule_id = truncate(rule.id.clone(), MAX_RULE_ID_CHARS + 1);
        let rule_id = Some(rule_id.as_str());
        check_id(i, rule, rule_id, &mut first_use, errors);
        let location = format!("rules[{i}].condition");
        let site = Site {
            location: &location,
            rule_id,
        };
        let condition = compiler.compile(&rule.condition, Expect::Bool, &site, errors);
        check_reason(&rule.reason, &format!("rules[{i}].reason"), rule_id, errors);
        if let Some(condition) = condition {
            compiled.push(CompiledRule {
                id: Arc::from(rule.id.as_str()),
                location,
                condition,
                decision: rule.decision,
                reason: Arc::from(rule.reason.as_str()),
            });
        }
    }
    compiled
}

fn check_id<'d>(
    i: usize,
    rule: &'d Rule,
    rule_id: Option<&str>,
    first_use: &mut HashMap<&'d str, usize>,
    errors: &mut Vec<RuleError>,
) {
    let location = format!("rules[{i}].id");
    let error = |code, message: String| RuleError::new(code, &location, rule_id, message);
    let chars = rule.id.chars().count();
    if chars > MAX_RULE_ID_CHARS {
        let message =
            format!("the rule id has {chars} characters, at most {MAX_RULE_ID_CHARS} allowed");
        errors.push(error(RuleErrorCode::TooLarge, message));
    } else if !is_valid_rule_id(&rule.id) {
        let message = format!("rule id `{}` must match [a-z0-9][a-z0-9_-]*", rule.id);
        errors.push(error(RuleErrorCode::InvalidRuleId, message));
    }
    if let Some(first) = first_use.get(rule.id.as_str()) {
        let message = format!("rule id `{}` is already used by rules[{first}]", rule.id);
        errors.push(error(RuleErrorCode::DuplicateRuleId, message));
    } else {
        first_use.insert(&rule.id, i);
    }
}

/// Whether `id` matches `[a-z0-9][a-z0-9_-]*`.
fn is_valid_rule_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    let lower_or_digit = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.next().is_some_and(lower_or_digit)
        && bytes.all(|b| lower_or_digit(b) || b == b'_' || b == b'-')
}

fn check_reason(reason: &str, location: &str, rule_id: Option<&str>, errors: &mut Vec<RuleError>) {
    let chars = reason.chars().count();
    if chars > MAX_REASON_CHARS {
        let message =
            format!("the reason has {chars} characters, at most {MAX_REASON_CHARS} allowed");
        errors.push(RuleError::new(
            RuleErrorCode::TooLarge,
            location,
            rule_id,
            message,
        ));
    }
}

#[cfg(test)]
mod tests;
