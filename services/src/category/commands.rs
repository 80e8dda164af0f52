//! Categorisation rules commands: execute on the event store, map a refusal to its rejection.

use chrono::Utc;
use gatehouse_events::category::{
    ActivateCategoryRules, CategoryEvent, DraftCategoryRules, RULES_ID,
};
use gatehouse_events::envelope::{CommandAccepted, Rejection, RejectionCode};
use serde_json::json;

use super::aggregate::{CategoryCommand, CategoryError, CategoryRules};
use crate::api::request::Parsed;
use crate::api::{infrastructure_rejection, App};
use crate::store::{CommandError, CommandTarget};

/// `category.draft_rules`.
pub async fn draft_rules(
    app: &App,
    parsed: Parsed<DraftCategoryRules>,
) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let cmd = CategoryCommand::Draft {
        command,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    app.categories
        .execute(&context, RULES_ID, cmd)
        .await
        .map_err(category_rejection)
}

/// `category.activate_rules`.
pub async fn activate_rules(
    app: &App,
    parsed: Parsed<ActivateCategoryRules>,
) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let cmd = CategoryCommand::Activate {
        command,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    app.categories
        .execute(&context, RULES_ID, cmd)
        .await
        .map_err(category_rejection)
}

fn category_rejection(error: CommandError<CategoryError>) -> Rejection {
    let domain = match error {
        CommandError::Rejected(e) => e,
        other => return infrastructure_rejection(other),
    };
    let message = domain.to_string();
    match domain {
        CategoryError::Invalid { field, .. } => {
            Rejection::new(RejectionCode::BadRequest, message).with_field(field)
        }
        CategoryError::UnknownVersion(_) => {
            Rejection::new(RejectionCode::VersionNotFound, message).with_field("command.version")
        }
        CategoryError::AlreadyActive(_) => {
            Rejection::new(RejectionCode::Unchanged, message).with_field("command.version")
        }
    }
}

impl CommandTarget for CategoryRules {
    fn reply_detail(_: &str, events: &[serde_json::Value]) -> serde_json::Value {
        let mut detail = json!({});
        for event in events
            .iter()
            .filter_map(|e| serde_json::from_value::<CategoryEvent>(e.clone()).ok())
        {
            match event {
                CategoryEvent::RulesDrafted(e) => detail["version"] = e.version.into(),
                CategoryEvent::RulesActivated(e) => {
                    detail["version"] = e.version.into();
                    detail["active"] = true.into();
                }
            }
        }
        detail
    }
}
