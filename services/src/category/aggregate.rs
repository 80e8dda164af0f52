//! The `category` aggregate (id `rules`): the versions of the categorisation rules and which is
//! in force. `handle` decides from the state and the command only.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use gatehouse_events::category::{
    self, ActivateCategoryRules, CategoryEvent, CategoryRulesActivated, CategoryRulesDrafted,
    DraftCategoryRules, RulesState,
};
use serde::{Deserialize, Serialize};

use super::rules::CompiledRules;

/// Longest reason.
const MAX_REASON: usize = 4_000;

/// A command to the rules, with what the gateway adds.
#[derive(Debug, Clone, PartialEq)]
pub enum CategoryCommand {
    Draft {
        command: DraftCategoryRules,
        actor: String,
        at: DateTime<Utc>,
    },
    Activate {
        command: ActivateCategoryRules,
        actor: String,
        at: DateTime<Utc>,
    },
}

/// Why a command on the rules is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CategoryError {
    /// A field is invalid (a rule that does not compile, a reason too long).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// `activate_rules` names a version never drafted.
    #[error("categorisation rules version {0} does not exist")]
    UnknownVersion(u32),
    /// `activate_rules` names the version already in force.
    #[error("categorisation rules version {0} is already active")]
    AlreadyActive(u32),
}

/// The categorisation rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CategoryRules {
    pub state: RulesState,
}

impl Aggregate for CategoryRules {
    const TYPE: &'static str = category::AGGREGATE;
    type Command = CategoryCommand;
    type Event = CategoryEvent;
    type Error = CategoryError;
    type Services = ();

    async fn handle(
        &mut self,
        c: CategoryCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CategoryError> {
        let event = self.decide(c)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: CategoryEvent) {
        self.state.apply(&event);
    }
}

fn reason(text: &str) -> Result<(), CategoryError> {
    if text.len() > MAX_REASON {
        return Err(CategoryError::Invalid {
            field: "command.reason".into(),
            message: format!("longer than {MAX_REASON} bytes"),
        });
    }
    Ok(())
}

impl CategoryRules {
    fn decide(&self, c: CategoryCommand) -> Result<CategoryEvent, CategoryError> {
        match c {
            CategoryCommand::Draft { command, actor, at } => {
                reason(&command.reason)?;
                let version = self.state.versions.len() as u32 + 1;
                CompiledRules::compile(version, &command.document, "command.document").map_err(
                    |p| CategoryError::Invalid {
                        field: p.field,
                        message: p.message,
                    },
                )?;
                Ok(CategoryEvent::RulesDrafted(CategoryRulesDrafted {
                    version,
                    document: command.document,
                    reason: command.reason,
                    actor,
                    at,
                }))
            }
            CategoryCommand::Activate { command, actor, at } => {
                reason(&command.reason)?;
                if command.reason.trim().is_empty() {
                    return Err(CategoryError::Invalid {
                        field: "command.reason".into(),
                        message: "say why".into(),
                    });
                }
                let v = command.version;
                if !self.state.versions.iter().any(|r| r.version == v) {
                    return Err(CategoryError::UnknownVersion(v));
                }
                if self.state.active == Some(v) {
                    return Err(CategoryError::AlreadyActive(v));
                }
                Ok(CategoryEvent::RulesActivated(CategoryRulesActivated {
                    version: v,
                    previous: self.state.active,
                    reason: command.reason,
                    actor,
                    at,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_events::category::seed_rules;

    fn when(
        given: Vec<CategoryEvent>,
        command: CategoryCommand,
    ) -> Result<CategoryEvent, CategoryError> {
        let mut rules = CategoryRules::default();
        for e in given {
            rules.apply(e);
        }
        rules.decide(command)
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(0, 0).unwrap()
    }

    fn draft_of(document: category::CategorisationRules) -> CategoryCommand {
        CategoryCommand::Draft {
            command: DraftCategoryRules {
                document,
                reason: "seed".into(),
            },
            actor: "ana".into(),
            at: at(),
        }
    }

    fn drafted(version: u32) -> CategoryEvent {
        CategoryEvent::RulesDrafted(CategoryRulesDrafted {
            version,
            document: seed_rules(),
            reason: "seed".into(),
            actor: "ana".into(),
            at: at(),
        })
    }

    fn activate(version: u32, reason: &str) -> CategoryCommand {
        CategoryCommand::Activate {
            command: ActivateCategoryRules {
                version,
                reason: reason.into(),
            },
            actor: "olga".into(),
            at: at(),
        }
    }

    fn activated(version: u32, previous: Option<u32>) -> CategoryEvent {
        CategoryEvent::RulesActivated(CategoryRulesActivated {
            version,
            previous,
            reason: "go".into(),
            actor: "olga".into(),
            at: at(),
        })
    }

    fn field_of(result: Result<CategoryEvent, CategoryError>) -> String {
        match result {
            Err(CategoryError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn a_draft_records_the_next_version() {
        assert_eq!(
            when(vec![drafted(1)], draft_of(seed_rules())),
            Ok(drafted(2))
        );
    }

    #[test]
    fn a_draft_whose_rule_does_not_compile_is_refused_naming_the_field() {
        let mut document = seed_rules();
        document.rules[0].condition = "stars >".into();
        assert_eq!(
            field_of(when(vec![], draft_of(document))),
            "command.document.rules[0].condition"
        );
    }

    #[test]
    fn activation_puts_a_drafted_version_in_force_and_names_the_previous() {
        let given = vec![drafted(1), drafted(2), activated(1, None)];
        assert_eq!(when(given, activate(2, "go")), Ok(activated(2, Some(1))));
    }

    #[test]
    fn activating_an_unknown_version_is_refused() {
        assert_eq!(
            when(vec![drafted(1)], activate(3, "go")),
            Err(CategoryError::UnknownVersion(3))
        );
    }

    #[test]
    fn activating_the_active_version_is_refused() {
        assert_eq!(
            when(vec![drafted(1), activated(1, None)], activate(1, "go")),
            Err(CategoryError::AlreadyActive(1))
        );
    }

    #[test]
    fn activation_needs_a_reason() {
        assert_eq!(
            field_of(when(vec![drafted(1)], activate(1, " "))),
            "command.reason"
        );
    }
}
