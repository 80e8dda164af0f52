//! The categorisation rules compiled: checked at draft (errors name the field, with line and
//! column) and evaluated on a unit's attributes (the categoriser, `category.compute`).

use gatehouse_events::category::{self, CategorisationRules, Categorised, Category, MAX_RULES};
use gatehouse_rules::{CompiledExpression, Item, RuleError};
use serde_json::Value;

/// One problem in a document: the field (`command.document.rules[1].condition`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

struct CompiledRule {
    id: String,
    condition: CompiledExpression,
    category: Category,
    priority: CompiledExpression,
}

/// A rules version ready to categorise units.
pub struct CompiledRules {
    pub version: u32,
    document: CategorisationRules,
    rules: Vec<CompiledRule>,
}

fn problem(field: String, message: impl Into<String>) -> Problem {
    Problem {
        field,
        message: message.into(),
    }
}

fn located(field: String, errors: Vec<RuleError>) -> Problem {
    let first = errors.into_iter().next();
    let message = match &first {
        Some(e) => match (e.line, e.column) {
            (Some(line), Some(column)) => {
                format!("{} at line {line}, column {column}: {}", e.code, e.message)
            }
            _ => format!("{}: {}", e.code, e.message),
        },
        None => "does not compile".to_owned(),
    };
    problem(field, message)
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && id.len() <= 64
}

impl CompiledRules {
    /// Checks and compiles `document` (fields under `prefix`, e.g. `command.document`).
    pub fn compile(
        version: u32,
        document: &CategorisationRules,
        prefix: &str,
    ) -> Result<Self, Problem> {
        if document.rules.len() > MAX_RULES {
            return Err(problem(
                format!("{prefix}.rules"),
                format!("at most {MAX_RULES} rules"),
            ));
        }
        if document.default_priority > 100 {
            return Err(problem(
                format!("{prefix}.default_priority"),
                "a priority is 0 to 100",
            ));
        }
        let mut rules = Vec::with_capacity(document.rules.len());
        for (i, rule) in document.rules.iter().enumerate() {
            let at = format!("{prefix}.rules[{i}]");
            if !valid_id(&rule.id) {
                return Err(problem(
                    format!("{at}.id"),
                    "an id is [a-z0-9][a-z0-9_-]*, up to 64 bytes",
                ));
            }
            if document.rules[..i].iter().any(|r| r.id == rule.id) {
                return Err(problem(
                    format!("{at}.id"),
                    format!("`{}` is used twice", rule.id),
                ));
            }
            let compile = |field: &str, source: &str| {
                if source.trim().is_empty() {
                    return Err(problem(format!("{at}.{field}"), "is empty"));
                }
                CompiledExpression::compile(source, &document.attributes)
                    .map_err(|e| located(format!("{at}.{field}"), e))
            };
            rules.push(CompiledRule {
                id: rule.id.clone(),
                condition: compile("condition", &rule.condition)?,
                category: rule.category,
                priority: compile("priority", &rule.priority)?,
            });
        }
        Ok(CompiledRules {
            version,
            document: document.clone(),
            rules,
        })
    }

    /// The category of a unit with `attributes` (a JSON object). A rule whose condition fails
    /// or is not `true`, or whose priority is not a number, does not hold.
    pub fn categorise(&self, attributes: &Value) -> Categorised {
        let item = Item::from_json(attributes, &self.document.attributes).ok();
        let held = item.as_ref().and_then(|item| {
            self.rules.iter().find_map(|rule| {
                let holds = matches!(rule.condition.evaluate(item), Ok(cel::Value::Bool(true)));
                let priority = match rule.priority.evaluate(item) {
                    Ok(cel::Value::Int(i)) => i as f64,
                    Ok(cel::Value::UInt(u)) => u as f64,
                    Ok(cel::Value::Float(f)) if f.is_finite() => f,
                    _ => return None,
                };
                holds.then(|| (rule, priority.clamp(0.0, 100.0).round() as u8))
            })
        });
        match held {
            Some((rule, priority)) => Categorised {
                category: rule.category,
                priority,
                rules_version: self.version,
                rule: Some(rule.id.clone()),
            },
            None => Categorised {
                category: self.document.default_category,
                priority: self.document.default_priority,
                rules_version: self.version,
                rule: None,
            },
        }
    }
}

/// Checks that the seed document compiles (it is drafted by `gatehouse category seed`).
pub fn seed() -> CategorisationRules {
    category::seed_rules()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seeded() -> CompiledRules {
        CompiledRules::compile(1, &seed(), "document").expect("the seed compiles")
    }

    #[test]
    fn the_seed_categorises_by_stars_contributors_and_pr_volume() {
        let rules = seeded();
        let of = |a: Value| {
            let c = rules.categorise(&a);
            (c.category, c.priority)
        };
        assert_eq!(of(json!({"test": true})), (Category::Test, 100));
        assert_eq!(
            of(json!({"stars": 20000, "contributors": 3, "prs_per_week": 300.0})),
            (Category::Enterprise, 7)
        );
        assert_eq!(
            of(json!({"stars": 2000, "contributors": 3, "prs_per_week": 50.0})),
            (Category::Large, 35)
        );
        assert_eq!(
            of(json!({"stars": 200, "contributors": 3, "prs_per_week": 5.0})),
            (Category::Medium, 65)
        );
        assert_eq!(
            of(json!({"stars": 2, "contributors": 1, "prs_per_week": 0.0})),
            (Category::Small, 90)
        );
        assert_eq!(of(json!({})), (Category::Small, 90));
    }

    #[test]
    fn a_draft_names_the_field_line_and_column_of_a_bad_rule() {
        let mut doc = seed();
        doc.rules[1].condition = "stars >= \n 10 &&".into();
        let p = CompiledRules::compile(2, &doc, "command.document")
            .err()
            .unwrap();
        assert_eq!(p.field, "command.document.rules[1].condition");
        assert!(p.message.contains("line"), "{}", p.message);
        let mut doc = seed();
        doc.rules[2].priority = "forks * 2".into();
        let p = CompiledRules::compile(2, &doc, "command.document")
            .err()
            .unwrap();
        assert_eq!(p.field, "command.document.rules[2].priority");
        let mut doc = seed();
        doc.rules[3].id = "test".into();
        let p = CompiledRules::compile(2, &doc, "command.document")
            .err()
            .unwrap();
        assert_eq!(p.field, "command.document.rules[3].id");
        let mut doc = seed();
        doc.default_priority = 101;
        let p = CompiledRules::compile(2, &doc, "command.document")
            .err()
            .unwrap();
        assert_eq!(p.field, "command.document.default_priority");
    }
}
