//! Unit categories (issue 11 part 4): the categorisation rules document, versioned by the
//! singleton `category` aggregate (id `rules`), and the categories it computes.
//!
//! Commands (`<ns>.cmd.category.<name>`): `draft_rules`, `activate_rules`.
//! Queries (`<ns>.query.category.<name>`): `get`, `list`, `compute`, `rules`.
//! Events: [`CategoryEvent`] on `<ns>.events.category.rules.<event_type>`.
//!
//! A unit falls into one [`Category`] with a priority 0–100 (how early it gets a `category`
//! rollout: higher first). The active [`CategorisationRules`] decide: the first rule whose
//! condition holds gives the category and the priority (a CEL expression); none → the defaults.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::rules::AttributeSchema;

/// The aggregate type, as stored and in subjects.
pub const AGGREGATE: &str = "category";
/// The one id of the `category` aggregate.
pub const RULES_ID: &str = "rules";
/// Most rules in a document.
pub const MAX_RULES: usize = 100;

/// The categories, from least to most at stake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Test,
    Small,
    Medium,
    Large,
    Enterprise,
}

impl Category {
    /// Every category, in order.
    pub const ALL: [Category; 5] = [
        Category::Test,
        Category::Small,
        Category::Medium,
        Category::Large,
        Category::Enterprise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Test => "test",
            Category::Small => "small",
            Category::Medium => "medium",
            Category::Large => "large",
            Category::Enterprise => "enterprise",
        }
    }

    /// The category named `name`, if any.
    pub fn parse(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// One categorisation rule: when `condition` holds, the unit is `category` with `priority`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CategorisationRule {
    /// `[a-z0-9][a-z0-9_-]*`, unique in the document.
    pub id: String,
    /// CEL, yielding a bool, over the declared attributes.
    pub condition: String,
    pub category: Category,
    /// CEL yielding an int or a double, clamped to 0–100 and rounded (e.g. `"50"`).
    pub priority: String,
}

/// The categorisation rules document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CategorisationRules {
    /// The unit attributes the rules read, with their types (as a policy declares them).
    pub attributes: AttributeSchema,
    /// Tried in order; the first that holds decides.
    pub rules: Vec<CategorisationRule>,
    /// When no rule holds.
    pub default_category: Category,
    /// 0–100.
    pub default_priority: u8,
}

/// The seed document: repositories by stars, contributors and pull requests per week.
/// A unit marked `test` comes first; the busiest come last.
pub fn seed_rules() -> CategorisationRules {
    let rule = |id: &str, condition: &str, category, priority: &str| CategorisationRule {
        id: id.into(),
        condition: condition.into(),
        category,
        priority: priority.into(),
    };
    CategorisationRules {
        attributes: serde_json::from_value(serde_json::json!({
            "test": "bool", "stars": "int", "contributors": "int", "prs_per_week": "double"
        }))
        .expect("a valid schema"),
        rules: vec![
            rule("test", "test", Category::Test, "100"),
            rule(
                "enterprise",
                "stars >= 10000 || contributors >= 500",
                Category::Enterprise,
                "10.0 - prs_per_week / 100.0",
            ),
            rule(
                "large",
                "stars >= 1000 || contributors >= 50",
                Category::Large,
                "40.0 - prs_per_week / 10.0",
            ),
            rule(
                "medium",
                "stars >= 100 || contributors >= 5",
                Category::Medium,
                "70.0 - prs_per_week",
            ),
        ],
        default_category: Category::Small,
        default_priority: 90,
    }
}

// ----- commands -----

/// `category.draft_rules`: record a new version of the rules (not yet in force).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DraftCategoryRules {
    pub document: CategorisationRules,
    #[serde(default)]
    pub reason: String,
}

/// `category.activate_rules`: put a drafted version in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivateCategoryRules {
    pub version: u32,
    pub reason: String,
}

// ----- events -----

/// Every event of the `category` aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum CategoryEvent {
    #[serde(rename = "CategoryRulesDrafted")]
    RulesDrafted(CategoryRulesDrafted),
    #[serde(rename = "CategoryRulesActivated")]
    RulesActivated(CategoryRulesActivated),
}

impl CategoryEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            CategoryEvent::RulesDrafted(_) => "CategoryRulesDrafted",
            CategoryEvent::RulesActivated(_) => "CategoryRulesActivated",
        }
    }

    pub fn event_version(&self) -> &'static str {
        "1.0"
    }
}

#[cfg(feature = "cqrs")]
impl cqrs_es::DomainEvent for CategoryEvent {
    fn event_type(&self) -> String {
        CategoryEvent::event_type(self).to_owned()
    }
    fn event_version(&self) -> String {
        CategoryEvent::event_version(self).to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CategoryRulesDrafted {
    pub version: u32,
    pub document: CategorisationRules,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CategoryRulesActivated {
    pub version: u32,
    pub previous: Option<u32>,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

// ----- state -----

/// A drafted version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RulesVersion {
    pub version: u32,
    pub document: CategorisationRules,
    pub drafted_by: String,
    pub drafted_at: DateTime<Utc>,
}

/// The rules as their events leave them: what `category.rules` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RulesState {
    /// Every version, oldest first (version n is at index n-1).
    pub versions: Vec<RulesVersion>,
    pub active: Option<u32>,
    pub sequence: u64,
}

impl RulesState {
    /// Folds one event (never fails).
    pub fn apply(&mut self, event: &CategoryEvent) {
        self.sequence += 1;
        match event {
            CategoryEvent::RulesDrafted(e) => self.versions.push(RulesVersion {
                version: e.version,
                document: e.document.clone(),
                drafted_by: e.actor.clone(),
                drafted_at: e.at,
            }),
            CategoryEvent::RulesActivated(e) => self.active = Some(e.version),
        }
    }

    /// The version in force, if any.
    pub fn active_version(&self) -> Option<&RulesVersion> {
        let v = self.active?;
        self.versions.iter().find(|r| r.version == v)
    }
}

// ----- queries and replies -----

/// `category.get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GetUnitCategory {
    pub unit: String,
}

/// `category.list`: units, highest priority first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ListUnitCategories {
    #[serde(default)]
    pub category: Option<Category>,
    /// 1–1000 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `category.compute`: the category of a unit the caller describes, by the active rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ComputeCategory {
    pub attributes: Map<String, Value>,
}

/// `category.rules`: the versions and the active one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GetCategoryRules {}

/// What the rules computed for one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Categorised {
    pub category: Category,
    pub priority: u8,
    pub rules_version: u32,
    /// The rule that held; `None`: the defaults.
    pub rule: Option<String>,
}

/// A row of `unit_categories`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UnitCategory {
    pub unit: String,
    pub category: Category,
    pub priority: u8,
    pub rules_version: u32,
    pub rule: Option<String>,
    /// `sha256:` + SHA-256 of the attributes' JSON text the category was computed from.
    pub attributes_digest: String,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_have_stable_names() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        assert_eq!(Category::parse("huge"), None);
    }
}
