//! The `flags` read model: `flags` (one row per flag, its whole [`FlagState`] folded with the
//! protocol's own fold), `flag_rollout_history` (one row per rollout change, emergency stop,
//! resume and safe-mode switch) and `flag_globals` (safe mode).
//!
//! Reads `<ns>.events.flag.>` and `<ns>.events.global.>`. Each aggregate's row guards its
//! changes by `last_sequence`: an event at or below it is already applied, the next one
//! applies, one further ahead is a gap (retried until the missing event arrives).

use async_trait::async_trait;
use gatehouse_events::flag::{
    self, FlagEvent, FlagState, GlobalEvent, RolloutChange, SafeMode, TriggeredBy,
};
use gatehouse_events::record::EventRecord;
use tokio_postgres::types::Json;
use tokio_postgres::Transaction;

use crate::model::{ApplyError, Interest, ReadModel, Tables};

/// The flags read model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flags;

impl Flags {
    pub const NAME: &'static str = "flags";
}

#[async_trait]
impl ReadModel for Flags {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["flags", "flag_rollout_history", "flag_globals"]
    }

    fn interest(&self) -> Interest {
        Interest::Aggregates(&[flag::AGGREGATE, flag::GLOBAL_AGGREGATE])
    }

    async fn apply(
        &self,
        tx: &Transaction<'_>,
        tables: &Tables,
        event: &EventRecord,
    ) -> Result<(), ApplyError> {
        match event.aggregate.as_str() {
            flag::AGGREGATE => apply_flag(tx, tables, event).await,
            flag::GLOBAL_AGGREGATE => apply_global(tx, tables, event).await,
            _ => Ok(()),
        }
    }
}

/// Skip, apply, or a gap, from the stored sequence.
fn check(last: i64, event: &EventRecord) -> Result<bool, ApplyError> {
    if event.sequence <= last {
        return Ok(false);
    }
    if event.sequence != last + 1 {
        return Err(ApplyError::gap(event, last + 1));
    }
    Ok(true)
}

async fn history(
    tx: &Transaction<'_>,
    tables: &Tables,
    event: &EventRecord,
    change: &RolloutChange,
) -> Result<(), ApplyError> {
    let sql = format!(
        "INSERT INTO {} (flag_key, aggregate_id, sequence, triggered_by, at, change) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        tables.name("flag_rollout_history")
    );
    tx.execute(
        &sql,
        &[
            &change.flag,
            &event.aggregate_id,
            &event.sequence,
            &change.triggered_by.as_str(),
            &change.at,
            &Json(change),
        ],
    )
    .await?;
    Ok(())
}

async fn apply_flag(
    tx: &Transaction<'_>,
    tables: &Tables,
    event: &EventRecord,
) -> Result<(), ApplyError> {
    let select = format!(
        "SELECT state, last_sequence FROM {} WHERE flag_key = $1 FOR UPDATE",
        tables.name("flags")
    );
    let row = tx.query_opt(&select, &[&event.aggregate_id]).await?;
    let (current, last) = match &row {
        Some(r) => {
            let Json(state): Json<FlagState> = r.get(0);
            (Some(state), r.get::<_, i64>(1))
        }
        None => (None, 0),
    };
    if !check(last, event)? {
        return Ok(());
    }
    let decoded: FlagEvent = serde_json::from_value(event.payload.clone())
        .map_err(|e| ApplyError::Poison(format!("{}: {e}", event.event_type)))?;
    let before = current.clone();
    let Some(state) = FlagState::fold(current, &decoded, event.sequence as u64) else {
        return Err(ApplyError::Poison(format!(
            "{} before FlagCreated",
            event.event_type
        )));
    };
    let upsert = format!(
        "INSERT INTO {} (flag_key, state, archived, last_sequence, updated_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (flag_key) DO UPDATE SET state = EXCLUDED.state, archived = EXCLUDED.archived, \
             last_sequence = EXCLUDED.last_sequence, updated_at = EXCLUDED.updated_at",
        tables.name("flags")
    );
    tx.execute(
        &upsert,
        &[
            &event.aggregate_id,
            &Json(&state),
            &state.archived,
            &event.sequence,
            &state.updated_at,
        ],
    )
    .await?;
    let previous = before.as_ref().map(|s| &s.rollout);
    let row = |change: &str, reason: &str, triggered_by: TriggeredBy, actor: &str| RolloutChange {
        flag: state.flag.clone(),
        sequence: event.sequence as u64,
        previous_percentage: Some(previous.map_or(0.0, |r| r.percentage)),
        percentage: Some(state.rollout.percentage),
        previous_strategy: Some(previous.map_or(state.rollout.strategy, |r| r.strategy)),
        strategy: Some(state.rollout.strategy),
        change: change.to_owned(),
        reason: reason.to_owned(),
        triggered_by,
        actor: actor.to_owned(),
        at: state.updated_at,
    };
    let change = match &decoded {
        FlagEvent::FlagCreated(e) => Some(row("create", &e.reason, TriggeredBy::Manual, &e.actor)),
        FlagEvent::RolloutSet(e) => {
            let mut r = row("set_rollout", &e.reason, e.triggered_by, &e.actor);
            r.previous_percentage = Some(e.previous.percentage);
            r.previous_strategy = Some(e.previous.strategy);
            Some(r)
        }
        FlagEvent::FlagEmergencyStopped(e) => Some(row(
            "emergency_stop",
            &e.reason,
            TriggeredBy::EmergencyStop,
            &e.actor,
        )),
        FlagEvent::FlagResumed(e) => Some(row(
            "resume",
            &e.reason,
            TriggeredBy::EmergencyStop,
            &e.actor,
        )),
        FlagEvent::FlagArchived(e) => {
            Some(row("archive", &e.reason, TriggeredBy::Manual, &e.actor))
        }
        FlagEvent::FlagValuesUpdated(_) => None,
    };
    if let Some(change) = change {
        history(tx, tables, event, &change).await?;
    }
    Ok(())
}

async fn apply_global(
    tx: &Transaction<'_>,
    tables: &Tables,
    event: &EventRecord,
) -> Result<(), ApplyError> {
    let select = format!(
        "SELECT state, last_sequence FROM {} WHERE id = $1 FOR UPDATE",
        tables.name("flag_globals")
    );
    let row = tx.query_opt(&select, &[&event.aggregate_id]).await?;
    let (mut state, last) = match &row {
        Some(r) => {
            let Json(state): Json<SafeMode> = r.get(0);
            (state, r.get::<_, i64>(1))
        }
        None => (SafeMode::default(), 0),
    };
    if !check(last, event)? {
        return Ok(());
    }
    let decoded: GlobalEvent = serde_json::from_value(event.payload.clone())
        .map_err(|e| ApplyError::Poison(format!("{}: {e}", event.event_type)))?;
    state.apply(&decoded, event.sequence as u64);
    let upsert = format!(
        "INSERT INTO {} (id, safe_mode, state, last_sequence) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET safe_mode = EXCLUDED.safe_mode, state = EXCLUDED.state, \
             last_sequence = EXCLUDED.last_sequence",
        tables.name("flag_globals")
    );
    tx.execute(
        &upsert,
        &[
            &event.aggregate_id,
            &state.on,
            &Json(&state),
            &event.sequence,
        ],
    )
    .await?;
    let GlobalEvent::SafeModeChanged(e) = &decoded;
    let change = RolloutChange {
        flag: "*".into(),
        sequence: event.sequence as u64,
        previous_percentage: None,
        percentage: None,
        previous_strategy: None,
        strategy: None,
        change: if e.on {
            "safe_mode_on"
        } else {
            "safe_mode_off"
        }
        .into(),
        reason: e.reason.clone(),
        triggered_by: TriggeredBy::SafeMode,
        actor: e.actor.clone(),
        at: e.at,
    };
    history(tx, tables, event, &change).await
}
