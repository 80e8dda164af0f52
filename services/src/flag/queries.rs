//! Flag queries: the `flags` read model (`flags`, `flag_rollout_history`, `flag_globals`),
//! evaluation over it, and the snapshot a client crate starts from (folded from `events`).

use std::collections::HashMap;

use gatehouse_events::envelope::{Rejection, RejectionCode};
use gatehouse_events::flag::{
    self, EvaluateBatch, EvaluateFlag, Evaluation, FlagEvent, FlagHistory, FlagSnapshot, FlagState,
    FlagStats, GetFlag, GetSnapshot, GlobalEvent, ListFlags, OutcomeWindow, RolloutChange,
    SafeMode, Strategy, MAX_BATCH,
};
use gatehouse_flags::{evaluate as evaluate_flag, CompiledFlag, Switches};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_postgres::types::Json;

use crate::api::read::{column, internal, query};
use crate::api::request::bad_request;
use crate::api::App;

fn state_of(row: &tokio_postgres::Row) -> Result<FlagState, Rejection> {
    let Json(state): Json<FlagState> = column(row, "state")?;
    Ok(state)
}

fn not_found(key: &str) -> Rejection {
    Rejection::new(
        RejectionCode::NotFound,
        format!("flag `{key}` does not exist"),
    )
    .with_field("flag")
}

/// `flag.get`.
pub async fn get(app: &App, q: GetFlag) -> Result<FlagState, Rejection> {
    let rows = query(
        &app.pg,
        "SELECT state FROM flags WHERE flag_key = $1",
        &[&q.flag],
    )
    .await?;
    state_of(rows.first().ok_or_else(|| not_found(&q.flag))?)
}

/// `flag.list`: by key.
pub async fn list(app: &App, q: ListFlags) -> Result<Vec<FlagState>, Rejection> {
    let rows = query(
        &app.pg,
        "SELECT state FROM flags WHERE $1 OR NOT archived ORDER BY flag_key",
        &[&q.include_archived],
    )
    .await?;
    rows.iter().map(state_of).collect()
}

/// `flag.history`: newest first.
pub async fn history(app: &App, q: FlagHistory) -> Result<Vec<RolloutChange>, Rejection> {
    let limit = i64::from(q.limit.unwrap_or(100).clamp(1, 1_000));
    let rows = query(
        &app.pg,
        "SELECT change FROM flag_rollout_history WHERE flag_key = $1 \
          ORDER BY at DESC, sequence DESC LIMIT $2",
        &[&q.flag, &limit],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let Json(change): Json<RolloutChange> = column(r, "change")?;
            Ok(change)
        })
        .collect()
}

/// `global.get`: safe mode.
pub async fn safe_mode(app: &App, _: GetSnapshot) -> Result<SafeMode, Rejection> {
    read_safe_mode(app).await
}

async fn read_safe_mode(app: &App) -> Result<SafeMode, Rejection> {
    let rows = query(
        &app.pg,
        "SELECT state FROM flag_globals WHERE id = $1",
        &[&flag::GLOBAL_ID],
    )
    .await?;
    match rows.first() {
        None => Ok(SafeMode::default()),
        Some(row) => {
            let Json(state): Json<SafeMode> = column(row, "state")?;
            Ok(state)
        }
    }
}

#[derive(Deserialize)]
struct Stored {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    payload: serde_json::Value,
}

/// `flag.snapshot`: every flag and safe mode folded from the event store, so it is never
/// behind a published event (a client subscribes first, then reads this).
pub async fn snapshot(app: &App, _: GetSnapshot) -> Result<FlagSnapshot, Rejection> {
    let rows = query(
        &app.pg,
        "SELECT json_build_object('aggregate_type', aggregate_type, 'aggregate_id', aggregate_id, \
                'sequence', sequence, 'payload', payload)::text \
           FROM events WHERE aggregate_type IN ($1, $2) \
          ORDER BY aggregate_type, aggregate_id, sequence",
        &[&flag::AGGREGATE, &flag::GLOBAL_AGGREGATE],
    )
    .await?;
    let mut flags: HashMap<String, FlagState> = HashMap::new();
    let mut safe_mode = SafeMode::default();
    for row in &rows {
        let text: String = column(row, 0)?;
        let stored: Stored = serde_json::from_str(&text).map_err(|e| internal(e.to_string()))?;
        let sequence = stored.sequence.max(0) as u64;
        if stored.aggregate_type == flag::GLOBAL_AGGREGATE {
            let event: GlobalEvent =
                serde_json::from_value(stored.payload).map_err(|e| internal(e.to_string()))?;
            safe_mode.apply(&event, sequence);
        } else {
            let event: FlagEvent =
                serde_json::from_value(stored.payload).map_err(|e| internal(e.to_string()))?;
            let current = flags.remove(&stored.aggregate_id);
            if let Some(state) = FlagState::fold(current, &event, sequence) {
                flags.insert(stored.aggregate_id, state);
            }
        }
    }
    let mut flags: Vec<FlagState> = flags.into_values().collect();
    flags.sort_by(|a, b| a.flag.cmp(&b.flag));
    Ok(FlagSnapshot { flags, safe_mode })
}

async fn load(app: &App, keys: &[String]) -> Result<HashMap<String, CompiledFlag>, Rejection> {
    let rows = query(
        &app.pg,
        "SELECT state FROM flags WHERE flag_key = ANY($1)",
        &[&keys],
    )
    .await?;
    rows.iter()
        .map(|r| state_of(r).map(|s| (s.flag.clone(), CompiledFlag::new(s))))
        .collect()
}

async fn switches(app: &App) -> Result<Switches, Rejection> {
    Ok(Switches {
        environment: app.emergency.clone(),
        safe_mode: read_safe_mode(app).await?.on,
    })
}

/// `flag.evaluate`: with the same code as the client crate.
pub async fn evaluate(app: &App, q: EvaluateFlag) -> Result<Evaluation, Rejection> {
    let flags = load(app, std::slice::from_ref(&q.flag)).await?;
    let switches = switches(app).await?;
    let mut contexts = vec![q.context];
    fill_categories(app, &flags, &[(&q.flag, q.unit.as_deref())], &mut contexts).await?;
    Ok(evaluate_flag(
        &q.flag,
        flags.get(&q.flag),
        &switches,
        q.unit.as_deref(),
        &contexts[0],
    ))
}

/// `flag.evaluate_batch`: in request order.
pub async fn evaluate_batch(app: &App, q: EvaluateBatch) -> Result<Vec<Evaluation>, Rejection> {
    if q.evaluations.len() > MAX_BATCH {
        return Err(
            bad_request(format!("at most {MAX_BATCH} evaluations per batch"))
                .with_field("evaluations"),
        );
    }
    let mut keys: Vec<String> = q.evaluations.iter().map(|e| e.flag.clone()).collect();
    keys.sort();
    keys.dedup();
    let flags = load(app, &keys).await?;
    let switches = switches(app).await?;
    let asked: Vec<(&String, Option<&str>)> = q
        .evaluations
        .iter()
        .map(|e| (&e.flag, e.unit.as_deref()))
        .collect();
    let mut contexts: Vec<Map<String, Value>> =
        q.evaluations.iter().map(|e| e.context.clone()).collect();
    fill_categories(app, &flags, &asked, &mut contexts).await?;
    Ok(q.evaluations
        .iter()
        .zip(&contexts)
        .map(|(e, context)| {
            evaluate_flag(
                &e.flag,
                flags.get(&e.flag),
                &switches,
                e.unit.as_deref(),
                context,
            )
        })
        .collect())
}

/// For each evaluation of a `category` rollout whose context has no `category`, puts the
/// unit's `category` and `priority` from `unit_categories` into its context (one query).
async fn fill_categories(
    app: &App,
    flags: &HashMap<String, CompiledFlag>,
    asked: &[(&String, Option<&str>)],
    contexts: &mut [Map<String, Value>],
) -> Result<(), Rejection> {
    let wanted: Vec<(usize, String)> = asked
        .iter()
        .zip(contexts.iter())
        .enumerate()
        .filter_map(|(i, ((flag, unit), context))| {
            let flag = flags.get(*flag)?;
            let needs = flag.state().rollout.strategy == Strategy::Category
                && !context.contains_key(gatehouse_flags::eval::CATEGORY);
            needs
                .then(|| flag.unit_of(*unit, context))
                .flatten()
                .map(|u| (i, u))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let units: Vec<&str> = wanted.iter().map(|(_, u)| u.as_str()).collect();
    let rows = query(
        &app.pg,
        "SELECT unit, category, priority FROM unit_categories WHERE unit = ANY($1)",
        &[&units],
    )
    .await?;
    let mut found = HashMap::new();
    for row in &rows {
        let unit: String = column(row, "unit")?;
        let category: String = column(row, "category")?;
        let priority: i16 = column(row, "priority")?;
        found.insert(unit, (category, priority));
    }
    for (i, unit) in wanted {
        if let Some((category, priority)) = found.get(&unit) {
            contexts[i].insert(
                gatehouse_flags::eval::CATEGORY.into(),
                category.clone().into(),
            );
            contexts[i].insert(gatehouse_flags::eval::PRIORITY.into(), (*priority).into());
        }
    }
    Ok(())
}

/// `flag.stats`: outcome windows, newest first.
pub async fn stats(app: &App, q: FlagStats) -> Result<Vec<OutcomeWindow>, Rejection> {
    let limit = i64::from(q.limit.unwrap_or(20).clamp(1, 1_000));
    let rows = query(
        &app.pg,
        "SELECT window_start, window_secs, successes, errors, duration_ms_sum \
           FROM flag_outcome_windows WHERE flag_key = $1 \
          ORDER BY window_start DESC, window_secs LIMIT $2",
        &[&q.flag, &limit],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let successes: i64 = column(r, "successes")?;
            let errors: i64 = column(r, "errors")?;
            let total = (successes + errors).max(0) as u64;
            let sum: f64 = column(r, "duration_ms_sum")?;
            let per = |n: i64| {
                if total == 0 {
                    0.0
                } else {
                    n as f64 / total as f64
                }
            };
            Ok(OutcomeWindow {
                flag: q.flag.clone(),
                window_start: column(r, "window_start")?,
                window_secs: column::<i32>(r, "window_secs")?.max(0) as u64,
                total,
                successes: successes.max(0) as u64,
                errors: errors.max(0) as u64,
                error_rate: per(errors),
                success_rate: per(successes),
                avg_duration_ms: if total == 0 { 0.0 } else { sum / total as f64 },
            })
        })
        .collect()
}
