//! The `flag` aggregate (flags and progressive rollouts) and the `global` singleton (safe mode).
//!
//! Commands (`<ns>.cmd.flag.<name>`): `create`, `update_values`, `archive`, `set_rollout`,
//! `emergency_stop`, `resume`; (`<ns>.cmd.global.<name>`): `safe_mode`.
//! Queries (`<ns>.query.flag.<name>`): `get`, `list`, `history`, `snapshot`, `evaluate`,
//! `evaluate_batch`.
//! Events: [`FlagEvent`] on `<ns>.events.flag.<key>.<event_type>`, [`GlobalEvent`] on
//! `<ns>.events.global.global.<event_type>`.
//!
//! [`FlagState`] is a flag as its events leave it, folded by [`FlagState::apply`]: the server's
//! aggregate, its read model and the client crate (`gatehouse-flags`) fold with this same code,
//! and evaluate with the same code (`gatehouse_flags::evaluate`).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rules::AttributeSchema;

/// The aggregate type of flags, as stored and in subjects.
pub const AGGREGATE: &str = "flag";
/// The aggregate type of the global switches (safe mode).
pub const GLOBAL_AGGREGATE: &str = "global";
/// The one id of the `global` aggregate.
pub const GLOBAL_ID: &str = "global";
/// Longest flag key.
pub const MAX_KEY_LEN: usize = 128;
/// Longest description or reason.
pub const MAX_TEXT_LEN: usize = 4_000;
/// Most units in `include` plus `exclude`.
pub const MAX_LISTED_UNITS: usize = 10_000;
/// Largest on/off value or schema, as JSON text.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The type of a flag's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FlagType {
    /// on = `true`, off = `false` unless given.
    #[default]
    Boolean,
    /// Any JSON; each value must satisfy the flag's JSON Schema when it has one.
    Json,
}

/// How a rollout chooses units beyond `include`/`exclude`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Units whose bucket is at or below the percentage.
    #[default]
    Percentage,
    /// Only the units in `include`.
    Whitelist,
    /// Units of the chosen `categories`, in priority order: the percentage is a position on
    /// the priority scale (`docs/architecture.md`, *Flags*, *Categories*).
    Category,
    /// Units whose context satisfies the CEL `rule`, and among those the percentage by bucket.
    Rule,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Percentage => "percentage",
            Strategy::Whitelist => "whitelist",
            Strategy::Category => "category",
            Strategy::Rule => "rule",
        }
    }
}

/// How a unit becomes a bucket (formulas in `docs/architecture.md`, *Flags*).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Bucketing {
    /// 10,000 buckets: `murmur3_x86_32("<group>:<unit>", 0) % 10000 + 1`, on iff
    /// `bucket <= percentage * 100`.
    #[default]
    Default,
    /// Unleash's: `murmur3_x86_32("<group>:<unit>", 0) % 100 + 1`, on iff
    /// `percentage > 0 && bucket <= percentage`.
    Unleash,
}

/// Who or what changed a rollout (history rows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TriggeredBy {
    #[default]
    Manual,
    AutoRollback,
    EmergencyStop,
    SafeMode,
}

impl TriggeredBy {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggeredBy::Manual => "manual",
            TriggeredBy::AutoRollback => "auto_rollback",
            TriggeredBy::EmergencyStop => "emergency_stop",
            TriggeredBy::SafeMode => "safe_mode",
        }
    }
}

/// When Gatehouse sets the rollout to 0% by itself (issue 11 part 7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AutoRollback {
    /// Error rate (0–1) above which the rollout is set to 0%.
    pub max_error_rate: f64,
    /// Outcomes a window needs before it can decide.
    pub min_volume: u64,
    /// The window, in seconds.
    pub window_secs: u64,
}

/// A flag's rollout: who gets the "on" value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// 0–100 with at most two decimals.
    pub percentage: f64,
    #[serde(default)]
    pub strategy: Strategy,
    /// Units always on (after `exclude`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Units always off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// The CEL condition of the `rule` strategy, over the evaluation context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The context attributes `rule` reads, with their types (as a policy declares them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rule_attributes: AttributeSchema,
    /// The context attribute that identifies a unit; absent: the request's `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<String>,
    /// The bucketing group (hash prefix); absent: the flag key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default)]
    pub bucketing: Bucketing,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<AutoRollback>,
}

impl Default for Rollout {
    /// A new flag's rollout: 0%, by percentage (safe: nobody gets "on").
    fn default() -> Self {
        Rollout {
            percentage: 0.0,
            strategy: Strategy::Percentage,
            include: Vec::new(),
            exclude: Vec::new(),
            categories: Vec::new(),
            rule: None,
            rule_attributes: BTreeMap::new(),
            stickiness: None,
            group: None,
            bucketing: Bucketing::Default,
            auto_rollback: None,
        }
    }
}

// ----- commands -----

/// `flag.create`: a new flag at 0%.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateFlag {
    /// `[a-z0-9][a-z0-9_-]*` segments joined by `.`, at most 128 characters.
    pub flag: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, rename = "type")]
    pub flag_type: FlagType,
    /// JSON flags: the JSON Schema every value must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// Boolean flags default to `true`; JSON flags must give it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_value: Option<serde_json::Value>,
    /// The safe value; boolean flags default to `false`; JSON flags must give it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_value: Option<serde_json::Value>,
    #[serde(default)]
    pub reason: String,
}

/// `flag.update_values`: new on/off values (and schema), each checked against the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateFlagValues {
    pub flag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_value: Option<serde_json::Value>,
    pub reason: String,
}

/// `flag.archive`: the flag evaluates to its off value from now on and takes no more changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ArchiveFlag {
    pub flag: String,
    pub reason: String,
}

/// `flag.set_rollout`: the whole new rollout, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SetRollout {
    pub flag: String,
    /// 0–100 with at most two decimals.
    pub percentage: f64,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rule_attributes: AttributeSchema,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default)]
    pub bucketing: Bucketing,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<AutoRollback>,
    pub reason: String,
}

impl SetRollout {
    /// The rollout this command sets.
    pub fn rollout(&self) -> Rollout {
        Rollout {
            percentage: self.percentage,
            strategy: self.strategy,
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            categories: self.categories.clone(),
            rule: self.rule.clone(),
            rule_attributes: self.rule_attributes.clone(),
            stickiness: self.stickiness.clone(),
            group: self.group.clone(),
            bucketing: self.bucketing,
            auto_rollback: self.auto_rollback.clone(),
        }
    }
}

/// `flag.emergency_stop` and `flag.resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StopFlag {
    pub flag: String,
    pub reason: String,
}

/// `global.safe_mode`: every flag evaluates to its off value while on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SetSafeMode {
    pub on: bool,
    pub reason: String,
}

/// `flag.auto_rollback` (internal: Gatehouse's flag monitor): the rollout to 0% because a
/// window's error rate exceeded the flag's `max_error_rate` with at least `min_volume` outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AutoRollbackFlag {
    pub flag: String,
    pub window_start: DateTime<Utc>,
    pub window_secs: u64,
    pub total: u64,
    pub errors: u64,
}

/// One outcome a service reports on `<ns>.outcomes.flag.<flag>` (stream `<NS>_OUTCOMES`).
/// Counted per flag and window, not stored one by one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FlagOutcome {
    pub flag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The processor or variant that served the unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub success: bool,
    #[serde(default)]
    pub duration_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `flag.stats`: a flag's outcome windows, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FlagStats {
    pub flag: String,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One window of outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OutcomeWindow {
    pub flag: String,
    pub window_start: DateTime<Utc>,
    pub window_secs: u64,
    pub total: u64,
    pub successes: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub success_rate: f64,
    pub avg_duration_ms: f64,
}

// ----- events -----

/// Every event of the `flag` aggregate, stored externally tagged under the names spelled here.
// A `RolloutSet` carries two rollouts; events are few and short-lived in memory.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum FlagEvent {
    #[serde(rename = "FlagCreated")]
    FlagCreated(FlagCreated),
    #[serde(rename = "FlagValuesUpdated")]
    FlagValuesUpdated(FlagValuesUpdated),
    #[serde(rename = "FlagArchived")]
    FlagArchived(FlagChanged),
    #[serde(rename = "RolloutSet")]
    RolloutSet(RolloutSet),
    #[serde(rename = "FlagEmergencyStopped")]
    FlagEmergencyStopped(FlagChanged),
    #[serde(rename = "FlagResumed")]
    FlagResumed(FlagChanged),
}

impl FlagEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            FlagEvent::FlagCreated(_) => "FlagCreated",
            FlagEvent::FlagValuesUpdated(_) => "FlagValuesUpdated",
            FlagEvent::FlagArchived(_) => "FlagArchived",
            FlagEvent::RolloutSet(_) => "RolloutSet",
            FlagEvent::FlagEmergencyStopped(_) => "FlagEmergencyStopped",
            FlagEvent::FlagResumed(_) => "FlagResumed",
        }
    }

    pub fn event_version(&self) -> &'static str {
        "1.0"
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FlagCreated {
    pub flag: String,
    pub description: String,
    #[serde(rename = "type")]
    pub flag_type: FlagType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    pub on_value: serde_json::Value,
    pub off_value: serde_json::Value,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FlagValuesUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    pub on_value: serde_json::Value,
    pub off_value: serde_json::Value,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// Archive, emergency stop, resume: who, when, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FlagChanged {
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RolloutSet {
    pub previous: Rollout,
    pub rollout: Rollout,
    pub reason: String,
    pub triggered_by: TriggeredBy,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// Every event of the `global` aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum GlobalEvent {
    #[serde(rename = "SafeModeChanged")]
    SafeModeChanged(SafeModeChanged),
}

impl GlobalEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            GlobalEvent::SafeModeChanged(_) => "SafeModeChanged",
        }
    }

    pub fn event_version(&self) -> &'static str {
        "1.0"
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SafeModeChanged {
    pub on: bool,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[cfg(feature = "cqrs")]
impl cqrs_es::DomainEvent for FlagEvent {
    fn event_type(&self) -> String {
        FlagEvent::event_type(self).to_owned()
    }
    fn event_version(&self) -> String {
        FlagEvent::event_version(self).to_owned()
    }
}

#[cfg(feature = "cqrs")]
impl cqrs_es::DomainEvent for GlobalEvent {
    fn event_type(&self) -> String {
        GlobalEvent::event_type(self).to_owned()
    }
    fn event_version(&self) -> String {
        GlobalEvent::event_version(self).to_owned()
    }
}

// ----- state -----

/// A flag as its events leave it: what `flag.get` answers and what every evaluator holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FlagState {
    pub flag: String,
    pub description: String,
    #[serde(rename = "type")]
    pub flag_type: FlagType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    pub on_value: serde_json::Value,
    pub off_value: serde_json::Value,
    pub rollout: Rollout,
    /// Set while an emergency stop holds (its reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_stop: Option<String>,
    #[serde(default)]
    pub archived: bool,
    /// The aggregate sequence of the last event folded in.
    pub sequence: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl FlagState {
    /// The state a `FlagCreated` at `sequence` starts.
    pub fn created(e: &FlagCreated, sequence: u64) -> Self {
        FlagState {
            flag: e.flag.clone(),
            description: e.description.clone(),
            flag_type: e.flag_type,
            schema: e.schema.clone(),
            on_value: e.on_value.clone(),
            off_value: e.off_value.clone(),
            rollout: Rollout::default(),
            emergency_stop: None,
            archived: false,
            sequence,
            created_at: e.at,
            updated_at: e.at,
            updated_by: e.actor.clone(),
        }
    }

    /// Folds `event` (at `sequence`) into `state` (`None` before `FlagCreated`).
    pub fn fold(state: Option<FlagState>, event: &FlagEvent, sequence: u64) -> Option<FlagState> {
        match (state, event) {
            (_, FlagEvent::FlagCreated(e)) => Some(FlagState::created(e, sequence)),
            (None, _) => None,
            (Some(mut s), event) => {
                s.apply(event);
                s.sequence = sequence;
                Some(s)
            }
        }
    }

    /// Applies an event after `FlagCreated` (never fails).
    pub fn apply(&mut self, event: &FlagEvent) {
        let (actor, at) = match event {
            FlagEvent::FlagCreated(e) => {
                *self = FlagState::created(e, self.sequence);
                return;
            }
            FlagEvent::FlagValuesUpdated(e) => {
                if e.schema.is_some() {
                    self.schema = e.schema.clone();
                }
                self.on_value = e.on_value.clone();
                self.off_value = e.off_value.clone();
                (&e.actor, e.at)
            }
            FlagEvent::FlagArchived(e) => {
                self.archived = true;
                (&e.actor, e.at)
            }
            FlagEvent::RolloutSet(e) => {
                self.rollout = e.rollout.clone();
                (&e.actor, e.at)
            }
            FlagEvent::FlagEmergencyStopped(e) => {
                self.emergency_stop = Some(e.reason.clone());
                (&e.actor, e.at)
            }
            FlagEvent::FlagResumed(e) => {
                self.emergency_stop = None;
                (&e.actor, e.at)
            }
        };
        self.updated_by = actor.clone();
        self.updated_at = at;
    }
}

/// The global switches as their events leave them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SafeMode {
    pub on: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<DateTime<Utc>>,
    /// The `global` aggregate's sequence (0 before any change).
    #[serde(default)]
    pub sequence: u64,
}

impl SafeMode {
    pub fn apply(&mut self, event: &GlobalEvent, sequence: u64) {
        match event {
            GlobalEvent::SafeModeChanged(e) => {
                self.on = e.on;
                self.reason = Some(e.reason.clone());
                self.changed_by = Some(e.actor.clone());
                self.changed_at = Some(e.at);
            }
        }
        self.sequence = sequence;
    }
}

// ----- queries -----

/// `flag.get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GetFlag {
    pub flag: String,
}

/// `flag.list`: flags by key (archived ones only when asked).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ListFlags {
    #[serde(default)]
    pub include_archived: bool,
}

/// `flag.history`: a flag's rollout changes, newest first (`flag: "*"`: safe-mode changes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FlagHistory {
    pub flag: String,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One row of the rollout history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RolloutChange {
    pub flag: String,
    pub sequence: u64,
    /// Absent on safe-mode rows (`flag: "*"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_percentage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_strategy: Option<Strategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// `create`, `set_rollout`, `emergency_stop`, `resume`, `safe_mode_on`, `safe_mode_off`.
    pub change: String,
    pub reason: String,
    pub triggered_by: TriggeredBy,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// `flag.snapshot`: every flag (archived included) and safe mode, as stored in the event store
/// (not the read model): what a client crate starts from before it applies events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GetSnapshot {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FlagSnapshot {
    pub flags: Vec<FlagState>,
    pub safe_mode: SafeMode,
}

/// `flag.evaluate`: the value `flag` has for `unit` in `context`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EvaluateFlag {
    pub flag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default)]
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// `flag.evaluate_batch`: several evaluations in one request (at most 1,000).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EvaluateBatch {
    pub evaluations: Vec<EvaluateFlag>,
}

/// Most evaluations in one `flag.evaluate_batch`.
pub const MAX_BATCH: usize = 1_000;

/// What decided an evaluation, in precedence order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// `GATEHOUSE_EMERGENCY_STOP` names the flag (or `all`).
    EnvironmentOverride,
    /// `global.safe_mode` is on.
    SafeMode,
    /// `flag.emergency_stop` holds.
    EmergencyStop,
    /// The flag is archived (or unknown to the evaluator).
    Archived,
    UnknownFlag,
    /// The unit is in `exclude`.
    Excluded,
    /// The unit is in `include`.
    Included,
    /// `whitelist` and the unit is not included.
    NotIncluded,
    /// The unit could not be identified (no `unit`, or no stickiness attribute in the context).
    NoUnit,
    /// The `rule` did not hold (or could not be evaluated on this context).
    Rule,
    /// The `category` strategy decided: the unit's category (not) chosen, or its priority's position.
    Category,
    /// The unit's bucket against the percentage.
    Bucket,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::EnvironmentOverride => "environment_override",
            Reason::SafeMode => "safe_mode",
            Reason::EmergencyStop => "emergency_stop",
            Reason::Archived => "archived",
            Reason::UnknownFlag => "unknown_flag",
            Reason::Excluded => "excluded",
            Reason::Included => "included",
            Reason::NotIncluded => "not_included",
            Reason::NoUnit => "no_unit",
            Reason::Rule => "rule",
            Reason::Category => "category",
            Reason::Bucket => "bucket",
        }
    }
}

/// The answer of an evaluation. The key and value are shared with the flag (`Arc`): an
/// in-process evaluation copies neither.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Evaluation {
    pub flag: Arc<str>,
    pub enabled: bool,
    pub value: Arc<serde_json::Value>,
    pub reason: Reason,
    /// The unit's bucket when one was computed (1–10,000, or 1–100 for `unleash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_evaluation_is_plain_json_though_it_shares_its_key_and_value() {
        let e = Evaluation {
            flag: Arc::from("checkout-v2"),
            enabled: true,
            value: Arc::new(json!({"v": 1})),
            reason: Reason::Bucket,
            bucket: Some(7),
        };
        let wire = json!({"flag": "checkout-v2", "enabled": true, "value": {"v": 1},
            "reason": "bucket", "bucket": 7});
        assert_eq!(serde_json::to_value(&e).unwrap(), wire);
        assert_eq!(serde_json::from_value::<Evaluation>(wire).unwrap(), e);
    }

    #[test]
    fn a_rollout_reads_with_defaults_and_refuses_unknown_fields() {
        let r: SetRollout =
            serde_json::from_value(json!({"flag": "a", "percentage": 5, "reason": "go"})).unwrap();
        assert_eq!(r.rollout().strategy, Strategy::Percentage);
        assert_eq!(r.rollout().bucketing, Bucketing::Default);
        assert!(serde_json::from_value::<SetRollout>(
            json!({"flag": "a", "percentage": 5, "reason": "go", "strategy": "nope"})
        )
        .is_err());
    }
}
