//! The `flag` aggregate (one stream per flag key) and the `global` singleton (safe mode).
//!
//! Both fold with the protocol's own fold ([`FlagState::fold`], [`SafeMode::apply`]), the same
//! code the read model and the client crate run. `handle` decides from the state and the
//! command only; JSON Schema checks are pure.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use gatehouse_events::flag::{
    self, ArchiveFlag, AutoRollbackFlag, CreateFlag, FlagChanged, FlagCreated, FlagEvent,
    FlagState, FlagType, FlagValuesUpdated, GlobalEvent, Rollout, RolloutSet, SafeMode,
    SafeModeChanged, SetRollout, SetSafeMode, StopFlag, Strategy, TriggeredBy, UpdateFlagValues,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A command to a flag, with what the gateway adds (the actor, the time).
#[derive(Debug, Clone, PartialEq)]
pub enum FlagCommand {
    Create {
        command: CreateFlag,
        actor: String,
        at: DateTime<Utc>,
    },
    UpdateValues {
        command: UpdateFlagValues,
        actor: String,
        at: DateTime<Utc>,
    },
    Archive {
        command: ArchiveFlag,
        actor: String,
        at: DateTime<Utc>,
    },
    SetRollout {
        command: SetRollout,
        triggered_by: TriggeredBy,
        actor: String,
        at: DateTime<Utc>,
    },
    EmergencyStop {
        command: StopFlag,
        actor: String,
        at: DateTime<Utc>,
    },
    Resume {
        command: StopFlag,
        actor: String,
        at: DateTime<Utc>,
    },
    /// The flag monitor's: roll back to 0% on these numbers (the aggregate checks them against
    /// the flag's own `auto_rollback`).
    AutoRollback {
        command: AutoRollbackFlag,
        actor: String,
        at: DateTime<Utc>,
    },
}

/// Why a flag command was refused. `Invalid` names the request field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlagError {
    #[error("flag `{0}` already exists")]
    AlreadyExists(String),
    #[error("flag does not exist")]
    NotFound,
    #[error("flag `{0}` is archived: it takes no more changes")]
    Archived(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Unchanged(String),
}

fn invalid(field: &str, message: impl Into<String>) -> FlagError {
    FlagError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A flag key: `[a-z0-9][a-z0-9_-]*` segments joined by `.`, at most 128 characters.
pub fn valid_key(key: &str) -> bool {
    key.len() <= flag::MAX_KEY_LEN
        && key.split('.').all(|seg| {
            let mut chars = seg.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
                && chars
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        })
}

fn text(field: &str, value: &str, required: bool) -> Result<(), FlagError> {
    if required && value.trim().is_empty() {
        return Err(invalid(field, "is required: say why"));
    }
    if value.chars().count() > flag::MAX_TEXT_LEN {
        return Err(invalid(
            field,
            format!("is longer than {} characters", flag::MAX_TEXT_LEN),
        ));
    }
    Ok(())
}

/// Checks `schema` (a JSON Schema) and the values against it.
fn check_values(
    flag_type: FlagType,
    schema: Option<&Value>,
    on: &Value,
    off: &Value,
) -> Result<(), FlagError> {
    for (field, value) in [("command.on_value", on), ("command.off_value", off)] {
        if value.to_string().len() > flag::MAX_VALUE_BYTES {
            return Err(invalid(
                field,
                format!("is larger than {} bytes", flag::MAX_VALUE_BYTES),
            ));
        }
        if flag_type == FlagType::Boolean && !value.is_boolean() {
            return Err(invalid(field, "a boolean flag's values are true or false"));
        }
    }
    let Some(schema) = schema else { return Ok(()) };
    if flag_type == FlagType::Boolean {
        return Err(invalid("command.schema", "only JSON flags have a schema"));
    }
    if schema.to_string().len() > flag::MAX_VALUE_BYTES {
        return Err(invalid(
            "command.schema",
            format!("is larger than {} bytes", flag::MAX_VALUE_BYTES),
        ));
    }
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| invalid("command.schema", format!("is not a valid JSON Schema: {e}")))?;
    for (field, value) in [("command.on_value", on), ("command.off_value", off)] {
        if let Some(error) = validator.iter_errors(value).next() {
            let at = error.instance_path().to_string();
            let field = if at.is_empty() {
                field.to_owned()
            } else {
                format!("{field}{}", at.replace('/', "."))
            };
            return Err(FlagError::Invalid {
                field,
                message: format!("does not match the flag's schema: {error}"),
            });
        }
    }
    Ok(())
}

/// The `category` strategy: one or more known categories, each once, and no rule.
fn check_categories(r: &Rollout) -> Result<(), FlagError> {
    if r.categories.is_empty() {
        return Err(invalid(
            "command.categories",
            "the category strategy needs at least one category",
        ));
    }
    for (i, c) in r.categories.iter().enumerate() {
        if gatehouse_events::category::Category::parse(c).is_none() {
            return Err(invalid(
                &format!("command.categories[{i}]"),
                format!("`{c}` is not one of test, small, medium, large, enterprise"),
            ));
        }
        if r.categories[..i].contains(c) {
            return Err(invalid(
                &format!("command.categories[{i}]"),
                format!("`{c}` is listed twice"),
            ));
        }
    }
    if r.rule.is_some() {
        return Err(invalid(
            "command.rule",
            "only the rule strategy reads a rule",
        ));
    }
    Ok(())
}

/// Checks a rollout: percentage, strategy, lists, rule, stickiness, auto-rollback.
pub fn check_rollout(r: &Rollout) -> Result<(), FlagError> {
    let p = r.percentage;
    if !p.is_finite() || !(0.0..=100.0).contains(&p) {
        return Err(invalid(
            "command.percentage",
            format!("{p} is not between 0 and 100"),
        ));
    }
    if ((p * 100.0).round() - p * 100.0).abs() > 1e-6 {
        return Err(invalid(
            "command.percentage",
            format!("{p} has more than two decimals"),
        ));
    }
    match r.strategy {
        Strategy::Category => check_categories(r)?,
        Strategy::Rule => {
            let rule = r
                .rule
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| {
                    invalid(
                        "command.rule",
                        "the rule strategy needs a rule (CEL over the context)",
                    )
                })?;
            if let Err(errors) = gatehouse_flags::eval::compile_rule(rule, &r.rule_attributes) {
                let first = errors
                    .first()
                    .map(|e| e.message.clone())
                    .unwrap_or_default();
                return Err(invalid(
                    "command.rule",
                    format!("does not compile: {first}"),
                ));
            }
        }
        Strategy::Percentage | Strategy::Whitelist => {
            if r.rule.is_some() {
                return Err(invalid(
                    "command.rule",
                    "only the rule strategy reads a rule",
                ));
            }
        }
    }
    if r.strategy != Strategy::Category && !r.categories.is_empty() {
        return Err(invalid(
            "command.categories",
            "only the category strategy reads categories",
        ));
    }
    if r.include.len() + r.exclude.len() > flag::MAX_LISTED_UNITS {
        return Err(invalid(
            "command.include",
            format!(
                "include and exclude list more than {} units",
                flag::MAX_LISTED_UNITS
            ),
        ));
    }
    for (field, list) in [
        ("command.include", &r.include),
        ("command.exclude", &r.exclude),
    ] {
        if let Some(i) = list.iter().position(|u| u.is_empty() || u.len() > 256) {
            return Err(invalid(
                &format!("{field}[{i}]"),
                "a unit is 1 to 256 bytes",
            ));
        }
    }
    if let Some(u) = r.include.iter().find(|u| r.exclude.contains(u)) {
        return Err(invalid(
            "command.include",
            format!("`{u}` is both included and excluded"),
        ));
    }
    if let Some(s) = &r.stickiness {
        if s.is_empty() || s.len() > 64 {
            return Err(invalid(
                "command.stickiness",
                "names a context attribute (1 to 64 bytes)",
            ));
        }
    }
    if let Some(g) = &r.group {
        if g.len() > flag::MAX_KEY_LEN {
            return Err(invalid("command.group", "is longer than 128 bytes"));
        }
    }
    if let Some(a) = &r.auto_rollback {
        if !(0.0..=1.0).contains(&a.max_error_rate) {
            return Err(invalid(
                "command.auto_rollback.max_error_rate",
                "is between 0 and 1",
            ));
        }
        if a.min_volume == 0 {
            return Err(invalid("command.auto_rollback.min_volume", "is at least 1"));
        }
        if a.window_secs == 0 || a.window_secs > 86_400 {
            return Err(invalid(
                "command.auto_rollback.window_secs",
                "is between 1 and 86400",
            ));
        }
    }
    Ok(())
}

/// One flag, as its events leave it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub state: Option<FlagState>,
    /// Events applied (the aggregate sequence).
    pub sequence: u64,
}

impl Flag {
    fn live(&self) -> Result<&FlagState, FlagError> {
        let state = self.state.as_ref().ok_or(FlagError::NotFound)?;
        if state.archived {
            return Err(FlagError::Archived(state.flag.clone()));
        }
        Ok(state)
    }

    fn decide(&self, command: FlagCommand) -> Result<FlagEvent, FlagError> {
        Ok(match command {
            FlagCommand::Create {
                command: c,
                actor,
                at,
            } => {
                if let Some(s) = &self.state {
                    return Err(FlagError::AlreadyExists(s.flag.clone()));
                }
                if !valid_key(&c.flag) {
                    return Err(invalid("command.flag", "a flag key is `[a-z0-9][a-z0-9_-]*` segments joined by `.`, at most 128 characters"));
                }
                text("command.description", &c.description, false)?;
                text("command.reason", &c.reason, false)?;
                let (on, off) = match c.flag_type {
                    FlagType::Boolean => (
                        c.on_value.clone().unwrap_or(Value::Bool(true)),
                        c.off_value.clone().unwrap_or(Value::Bool(false)),
                    ),
                    FlagType::Json => (
                        c.on_value.clone().ok_or_else(|| {
                            invalid("command.on_value", "a JSON flag needs an on value")
                        })?,
                        c.off_value.clone().ok_or_else(|| {
                            invalid("command.off_value", "a JSON flag needs a safe off value")
                        })?,
                    ),
                };
                check_values(c.flag_type, c.schema.as_ref(), &on, &off)?;
                FlagEvent::FlagCreated(FlagCreated {
                    flag: c.flag,
                    description: c.description,
                    flag_type: c.flag_type,
                    schema: c.schema,
                    on_value: on,
                    off_value: off,
                    reason: c.reason,
                    actor,
                    at,
                })
            }
            FlagCommand::UpdateValues {
                command: c,
                actor,
                at,
            } => {
                let s = self.live()?;
                text("command.reason", &c.reason, true)?;
                let schema = c.schema.clone().or_else(|| s.schema.clone());
                let on = c.on_value.clone().unwrap_or_else(|| s.on_value.clone());
                let off = c.off_value.clone().unwrap_or_else(|| s.off_value.clone());
                check_values(s.flag_type, schema.as_ref(), &on, &off)?;
                if c.schema.is_none() && on == s.on_value && off == s.off_value {
                    return Err(FlagError::Unchanged("the values are unchanged".into()));
                }
                FlagEvent::FlagValuesUpdated(FlagValuesUpdated {
                    schema: c.schema,
                    on_value: on,
                    off_value: off,
                    reason: c.reason,
                    actor,
                    at,
                })
            }
            FlagCommand::Archive {
                command: c,
                actor,
                at,
            } => {
                self.live()?;
                text("command.reason", &c.reason, true)?;
                FlagEvent::FlagArchived(FlagChanged {
                    reason: c.reason,
                    actor,
                    at,
                })
            }
            FlagCommand::SetRollout {
                command: c,
                triggered_by,
                actor,
                at,
            } => {
                let s = self.live()?;
                text("command.reason", &c.reason, true)?;
                let rollout = c.rollout();
                check_rollout(&rollout)?;
                FlagEvent::RolloutSet(RolloutSet {
                    previous: s.rollout.clone(),
                    rollout,
                    reason: c.reason,
                    triggered_by,
                    actor,
                    at,
                })
            }
            FlagCommand::AutoRollback {
                command: c,
                actor,
                at,
            } => {
                let s = self.live()?;
                let Some(limits) = &s.rollout.auto_rollback else {
                    return Err(FlagError::Unchanged(format!(
                        "flag `{}` has no auto-rollback",
                        s.flag
                    )));
                };
                if s.rollout.percentage == 0.0 {
                    return Err(FlagError::Unchanged(format!(
                        "flag `{}` is already at 0%",
                        s.flag
                    )));
                }
                let rate = if c.total == 0 {
                    0.0
                } else {
                    c.errors as f64 / c.total as f64
                };
                if c.total < limits.min_volume || rate <= limits.max_error_rate {
                    return Err(invalid(
                        "command.errors",
                        format!(
                            "{} errors of {} outcomes do not exceed the limits (max error rate {}, min volume {})",
                            c.errors, c.total, limits.max_error_rate, limits.min_volume
                        ),
                    ));
                }
                let reason = format!(
                    "auto-rollback: error rate {:.2}% ({} errors of {} outcomes) in the {} s window from {} exceeds {:.2}% (min volume {})",
                    rate * 100.0,
                    c.errors,
                    c.total,
                    c.window_secs,
                    c.window_start.to_rfc3339(),
                    limits.max_error_rate * 100.0,
                    limits.min_volume
                );
                let rollout = Rollout {
                    percentage: 0.0,
                    ..s.rollout.clone()
                };
                FlagEvent::RolloutSet(RolloutSet {
                    previous: s.rollout.clone(),
                    rollout,
                    reason,
                    triggered_by: TriggeredBy::AutoRollback,
                    actor,
                    at,
                })
            }
            FlagCommand::EmergencyStop {
                command: c,
                actor,
                at,
            } => {
                let s = self.live()?;
                text("command.reason", &c.reason, true)?;
                if s.emergency_stop.is_some() {
                    return Err(FlagError::Unchanged(format!(
                        "flag `{}` is already stopped",
                        s.flag
                    )));
                }
                FlagEvent::FlagEmergencyStopped(FlagChanged {
                    reason: c.reason,
                    actor,
                    at,
                })
            }
            FlagCommand::Resume {
                command: c,
                actor,
                at,
            } => {
                let s = self.live()?;
                text("command.reason", &c.reason, true)?;
                if s.emergency_stop.is_none() {
                    return Err(FlagError::Unchanged(format!(
                        "flag `{}` is not stopped",
                        s.flag
                    )));
                }
                FlagEvent::FlagResumed(FlagChanged {
                    reason: c.reason,
                    actor,
                    at,
                })
            }
        })
    }
}

impl Aggregate for Flag {
    const TYPE: &'static str = flag::AGGREGATE;
    type Command = FlagCommand;
    type Event = FlagEvent;
    type Error = FlagError;
    type Services = ();

    async fn handle(
        &mut self,
        command: FlagCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), FlagError> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: FlagEvent) {
        self.sequence += 1;
        self.state = FlagState::fold(self.state.take(), &event, self.sequence);
    }
}

/// A command to the `global` aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalCommand {
    pub command: SetSafeMode,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// The global switches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Global {
    pub safe_mode: SafeMode,
    pub sequence: u64,
}

impl Aggregate for Global {
    const TYPE: &'static str = flag::GLOBAL_AGGREGATE;
    type Command = GlobalCommand;
    type Event = GlobalEvent;
    type Error = FlagError;
    type Services = ();

    async fn handle(
        &mut self,
        c: GlobalCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), FlagError> {
        let event = self.decide(c)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: GlobalEvent) {
        self.sequence += 1;
        self.safe_mode.apply(&event, self.sequence);
    }
}

impl Global {
    fn decide(&self, c: GlobalCommand) -> Result<GlobalEvent, FlagError> {
        text("command.reason", &c.command.reason, true)?;
        if c.command.on == self.safe_mode.on {
            let state = if c.command.on { "on" } else { "off" };
            return Err(FlagError::Unchanged(format!(
                "safe mode is already {state}"
            )));
        }
        Ok(GlobalEvent::SafeModeChanged(SafeModeChanged {
            on: c.command.on,
            reason: c.command.reason,
            actor: c.actor,
            at: c.at,
        }))
    }
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
