//! Category queries: a unit's category (`unit_categories`), the units of a category, a
//! category computed for attributes the caller gives, and the rules' versions.

use gatehouse_events::category::{
    Categorised, Category, ComputeCategory, GetCategoryRules, GetUnitCategory, ListUnitCategories,
    RulesState, UnitCategory, RULES_ID,
};
use gatehouse_events::envelope::{Rejection, RejectionCode};
use serde_json::Value;

use super::rules::CompiledRules;
use crate::api::read::{column, internal, query, DEFAULT_LIMIT, MAX_LIMIT};
use crate::api::{infrastructure_rejection, App};

const COLUMNS: &str =
    "unit, category, priority, rules_version, rule, attributes_digest, updated_at";

fn unit_of(row: &tokio_postgres::Row) -> Result<UnitCategory, Rejection> {
    let category: String = column(row, "category")?;
    let priority: i16 = column(row, "priority")?;
    let version: i32 = column(row, "rules_version")?;
    Ok(UnitCategory {
        unit: column(row, "unit")?,
        category: Category::parse(&category)
            .ok_or_else(|| internal(format!("unit_categories holds category `{category}`")))?,
        priority: priority.clamp(0, 100) as u8,
        rules_version: version.max(0) as u32,
        rule: column(row, "rule")?,
        attributes_digest: column(row, "attributes_digest")?,
        updated_at: column(row, "updated_at")?,
    })
}

/// `category.get`.
pub async fn get(app: &App, q: GetUnitCategory) -> Result<UnitCategory, Rejection> {
    let rows = query(
        &app.pg,
        &format!("SELECT {COLUMNS} FROM unit_categories WHERE unit = $1"),
        &[&q.unit],
    )
    .await?;
    let row = rows.first().ok_or_else(|| {
        Rejection::new(
            RejectionCode::NotFound,
            format!(
                "unit `{}` has no category (no active rules, or not in the catalog)",
                q.unit
            ),
        )
        .with_field("unit")
    })?;
    unit_of(row)
}

/// `category.list`: highest priority first, then by unit.
pub async fn list(app: &App, q: ListUnitCategories) -> Result<Vec<UnitCategory>, Rejection> {
    let limit = i64::from(q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT));
    let category = q.category.map(|c| c.as_str().to_owned());
    let rows = query(
        &app.pg,
        &format!(
            "SELECT {COLUMNS} FROM unit_categories WHERE ($1::text IS NULL OR category = $1) \
             ORDER BY priority DESC, unit LIMIT $2"
        ),
        &[&category, &limit],
    )
    .await?;
    rows.iter().map(unit_of).collect()
}

/// The rules as the event store holds them.
pub async fn rules_state(app: &App) -> Result<RulesState, Rejection> {
    app.categories
        .state(RULES_ID)
        .await
        .map(|r| r.state)
        .map_err(infrastructure_rejection)
}

/// `category.rules`.
pub async fn rules(app: &App, _: GetCategoryRules) -> Result<RulesState, Rejection> {
    rules_state(app).await
}

/// `category.compute`: by the active rules, read from the event store (never behind).
pub async fn compute(app: &App, q: ComputeCategory) -> Result<Categorised, Rejection> {
    let state = rules_state(app).await?;
    let active = state.active_version().ok_or_else(|| {
        Rejection::new(
            RejectionCode::NotReady,
            "no categorisation rules are active",
        )
    })?;
    let compiled =
        CompiledRules::compile(active.version, &active.document, "document").map_err(|p| {
            internal(format!(
                "active rules do not compile: {}: {}",
                p.field, p.message
            ))
        })?;
    Ok(compiled.categorise(&Value::Object(q.attributes)))
}
