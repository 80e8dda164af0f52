//! The `category` context: units fall into `test | small | medium | large | enterprise` with a
//! priority 0–100, computed by the versioned categorisation rules (issue 11 part 4).
//!
//! Commands `category.draft_rules` (Author), `category.activate_rules` (Operator); queries
//! `category.get`, `category.list`, `category.compute`, `category.rules` (Viewer). The
//! [`categoriser`] keeps `unit_categories` current from the catalog stream and activations.
//!
//! Layout: [`aggregate`] (the `category` aggregate, id `rules`), [`rules`] (compiling and
//! evaluating a document), [`commands`], [`queries`], [`categoriser`].
pub mod aggregate;
pub mod categoriser;
pub mod commands;
pub mod queries;
pub mod rules;

pub use aggregate::{CategoryCommand, CategoryError, CategoryRules};

use gatehouse_events::category::{
    ActivateCategoryRules, Categorised, ComputeCategory, DraftCategoryRules, GetCategoryRules,
    GetUnitCategory, ListUnitCategories, RulesState, UnitCategory,
};
use gatehouse_events::envelope::CommandAccepted;

use crate::api::Operation;
use crate::{command, query};

/// The category context's commands and queries.
pub const OPERATIONS: &[Operation] = &[
    command!("category.draft_rules", Author, "draft a version of the categorisation rules",
        DraftCategoryRules => CommandAccepted, commands::draft_rules),
    command!("category.activate_rules", Operator, "put a drafted categorisation rules version in force",
        ActivateCategoryRules => CommandAccepted, commands::activate_rules),
    query!("category.get", Viewer, "a unit's category and priority (unit_categories)",
        GetUnitCategory => UnitCategory, queries::get, None),
    query!("category.list", Viewer, "units with their categories, highest priority first",
        ListUnitCategories => Vec<UnitCategory>, queries::list, None),
    query!("category.compute", Viewer, "the category of attributes the caller gives, by the active rules",
        ComputeCategory => Categorised, queries::compute, None),
    query!("category.rules", Viewer, "the categorisation rules' versions and the active one",
        GetCategoryRules => RulesState, queries::rules, None),
];
