//! Flag and safe-mode commands: execute on the event store, map a refusal to its rejection.

use chrono::Utc;
use gatehouse_events::envelope::{CommandAccepted, Rejection, RejectionCode};
use gatehouse_events::flag::{
    ArchiveFlag, AutoRollbackFlag, CreateFlag, FlagEvent, GlobalEvent, SetRollout, SetSafeMode,
    StopFlag, TriggeredBy, UpdateFlagValues, GLOBAL_ID,
};
use serde_json::json;

use super::aggregate::{Flag, FlagCommand, FlagError, Global, GlobalCommand};
use crate::api::request::Parsed;
use crate::api::{infrastructure_rejection, App};
use crate::store::{CommandContext, CommandError, CommandTarget};

async fn execute(
    app: &App,
    context: &CommandContext,
    key: &str,
    cmd: FlagCommand,
) -> Result<CommandAccepted, Rejection> {
    app.flags
        .execute(context, key, cmd)
        .await
        .map_err(flag_rejection)
}

/// `flag.create`.
pub async fn create(app: &App, parsed: Parsed<CreateFlag>) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let key = command.flag.clone();
    let cmd = FlagCommand::Create {
        command,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, &key, cmd).await
}

/// `flag.update_values`.
pub async fn update_values(
    app: &App,
    parsed: Parsed<UpdateFlagValues>,
) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let key = command.flag.clone();
    let cmd = FlagCommand::UpdateValues {
        command,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, &key, cmd).await
}

/// `flag.archive`.
pub async fn archive(app: &App, parsed: Parsed<ArchiveFlag>) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let key = command.flag.clone();
    let cmd = FlagCommand::Archive {
        command,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, &key, cmd).await
}

/// `flag.set_rollout` (by a person: `triggered_by: manual`).
pub async fn set_rollout(
    app: &App,
    parsed: Parsed<SetRollout>,
) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let key = command.flag.clone();
    let cmd = FlagCommand::SetRollout {
        command,
        triggered_by: TriggeredBy::Manual,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, &key, cmd).await
}

/// `flag.emergency_stop`.
pub async fn emergency_stop(
    app: &App,
    parsed: Parsed<StopFlag>,
) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let key = command.flag.clone();
    let cmd = FlagCommand::EmergencyStop {
        command,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, &key, cmd).await
}

/// `flag.resume`.
pub async fn resume(app: &App, parsed: Parsed<StopFlag>) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let key = command.flag.clone();
    let cmd = FlagCommand::Resume {
        command,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, &key, cmd).await
}

/// `flag.auto_rollback` (internal: the flag monitor's).
pub async fn auto_rollback(
    app: &App,
    parsed: Parsed<AutoRollbackFlag>,
) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let key = command.flag.clone();
    let cmd = FlagCommand::AutoRollback {
        command,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, &key, cmd).await
}

/// `global.safe_mode`.
pub async fn safe_mode(
    app: &App,
    parsed: Parsed<SetSafeMode>,
) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let cmd = GlobalCommand {
        command,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    app.global
        .execute(&context, GLOBAL_ID, cmd)
        .await
        .map_err(|e| flag_rejection(e).with_field_if_none("command.on"))
}

impl CommandTarget for Flag {
    fn reply_detail(aggregate_id: &str, events: &[serde_json::Value]) -> serde_json::Value {
        let mut detail = json!({"flag": aggregate_id});
        for event in events
            .iter()
            .filter_map(|e| serde_json::from_value::<FlagEvent>(e.clone()).ok())
        {
            match event {
                FlagEvent::RolloutSet(e) => {
                    detail["percentage"] = e.rollout.percentage.into();
                    detail["previous_percentage"] = e.previous.percentage.into();
                    detail["strategy"] = e.rollout.strategy.as_str().into();
                }
                FlagEvent::FlagEmergencyStopped(_) => detail["emergency_stop"] = true.into(),
                FlagEvent::FlagResumed(_) => detail["emergency_stop"] = false.into(),
                FlagEvent::FlagArchived(_) => detail["archived"] = true.into(),
                FlagEvent::FlagCreated(_) | FlagEvent::FlagValuesUpdated(_) => {}
            }
        }
        detail
    }
}

impl CommandTarget for Global {
    fn reply_detail(_: &str, events: &[serde_json::Value]) -> serde_json::Value {
        let mut detail = json!({});
        for event in events
            .iter()
            .filter_map(|e| serde_json::from_value::<GlobalEvent>(e.clone()).ok())
        {
            match event {
                GlobalEvent::SafeModeChanged(e) => detail["safe_mode"] = e.on.into(),
            }
        }
        detail
    }
}

trait WithFieldIfNone {
    fn with_field_if_none(self, field: &str) -> Self;
}

impl WithFieldIfNone for Rejection {
    fn with_field_if_none(self, field: &str) -> Self {
        if self.field.is_none() && self.code == RejectionCode::Unchanged {
            self.with_field(field)
        } else {
            self
        }
    }
}

/// The wire rejection of a failed flag or safe-mode command.
pub(crate) fn flag_rejection(error: CommandError<FlagError>) -> Rejection {
    let domain = match error {
        CommandError::Rejected(e) => e,
        other => return infrastructure_rejection(other),
    };
    let message = domain.to_string();
    match domain {
        FlagError::AlreadyExists(_) => {
            Rejection::new(RejectionCode::AlreadyExists, message).with_field("command.flag")
        }
        FlagError::NotFound => {
            Rejection::new(RejectionCode::NotFound, message).with_field("command.flag")
        }
        FlagError::Archived(_) => {
            Rejection::new(RejectionCode::InvalidState, message).with_field("command.flag")
        }
        FlagError::Invalid { field, .. } => {
            Rejection::new(RejectionCode::BadRequest, message).with_field(field)
        }
        FlagError::Unchanged(_) => Rejection::new(RejectionCode::Unchanged, message),
    }
}
