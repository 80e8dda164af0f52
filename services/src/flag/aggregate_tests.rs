//! Given/when/then tests of every flag command and refusal.

use chrono::DateTime;
use gatehouse_events::flag::{AutoRollback, AutoRollbackFlag, Bucketing};
use serde_json::json;

use super::*;

/// Given `given`, when `command`: the event recorded.
fn when(given: Vec<FlagEvent>, command: FlagCommand) -> Result<FlagEvent, FlagError> {
    let mut flag = Flag::default();
    for e in given {
        flag.apply(e);
    }
    flag.decide(command)
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn create_json() -> CreateFlag {
    CreateFlag {
        flag: "ranker.policy".into(),
        description: "the ranker".into(),
        flag_type: FlagType::Json,
        schema: Some(json!({
            "type": "object",
            "required": ["version", "epsilon"],
            "properties": {"version": {"type": "string"}, "epsilon": {"type": "number", "minimum": 0, "maximum": 1}}
        })),
        on_value: Some(json!({"version": "epsilon_greedy_v1", "epsilon": 0.08})),
        off_value: Some(json!({"version": "baseline", "epsilon": 0})),
        reason: "new ranker".into(),
    }
}

fn created() -> FlagEvent {
    let c = create_json();
    FlagEvent::FlagCreated(FlagCreated {
        flag: c.flag,
        description: c.description,
        flag_type: c.flag_type,
        schema: c.schema,
        on_value: c.on_value.unwrap(),
        off_value: c.off_value.unwrap(),
        reason: c.reason,
        actor: "alice".into(),
        at: at(),
    })
}

fn set(percentage: f64) -> SetRollout {
    SetRollout {
        flag: "ranker.policy".into(),
        percentage,
        strategy: Strategy::Percentage,
        include: vec![],
        exclude: vec![],
        categories: vec![],
        rule: None,
        rule_attributes: Default::default(),
        stickiness: None,
        group: None,
        bucketing: Bucketing::Default,
        auto_rollback: None,
        reason: "ramp".into(),
    }
}

fn rollout_cmd(command: SetRollout) -> FlagCommand {
    FlagCommand::SetRollout {
        command,
        triggered_by: TriggeredBy::Manual,
        actor: "olga".into(),
        at: at(),
    }
}

fn field_of(error: FlagError) -> String {
    match error {
        FlagError::Invalid { field, .. } => field,
        other => panic!("not a field error: {other:?}"),
    }
}

fn refusal(given: Vec<FlagEvent>, command: FlagCommand) -> FlagError {
    let mut flag = Flag::default();
    for e in given {
        flag.apply(e);
    }
    flag.decide(command).unwrap_err()
}

#[test]
fn create_records_the_flag_at_zero_percent() {
    assert_eq!(
        when(
            vec![],
            FlagCommand::Create {
                command: create_json(),
                actor: "alice".into(),
                at: at()
            }
        ),
        Ok(created())
    );
    let mut flag = Flag::default();
    flag.apply(created());
    let state = flag.state.unwrap();
    assert_eq!(state.rollout.percentage, 0.0);
    assert_eq!(state.sequence, 1);
}

#[test]
fn a_boolean_flag_defaults_its_values() {
    let mut flag = Flag::default();
    let command = CreateFlag {
        flag: "checkout-v2".into(),
        description: String::new(),
        flag_type: FlagType::Boolean,
        schema: None,
        on_value: None,
        off_value: None,
        reason: String::new(),
    };
    let event = flag
        .decide(FlagCommand::Create {
            command,
            actor: "a".into(),
            at: at(),
        })
        .unwrap();
    flag.apply(event);
    let s = flag.state.unwrap();
    assert_eq!((s.on_value, s.off_value), (json!(true), json!(false)));
}

#[test]
fn create_refuses_a_second_create_a_bad_key_and_values_off_the_schema() {
    assert!(matches!(
        refusal(
            vec![created()],
            FlagCommand::Create {
                command: create_json(),
                actor: "a".into(),
                at: at()
            }
        ),
        FlagError::AlreadyExists(_)
    ));
    let mut bad_key = create_json();
    bad_key.flag = "Ranker..x".into();
    assert_eq!(
        field_of(refusal(
            vec![],
            FlagCommand::Create {
                command: bad_key,
                actor: "a".into(),
                at: at()
            }
        )),
        "command.flag"
    );
    let mut off_schema = create_json();
    off_schema.on_value = Some(json!({"version": "v2", "epsilon": 3}));
    assert_eq!(
        field_of(refusal(
            vec![],
            FlagCommand::Create {
                command: off_schema,
                actor: "a".into(),
                at: at()
            }
        )),
        "command.on_value.epsilon"
    );
    let mut missing_off = create_json();
    missing_off.off_value = None;
    assert_eq!(
        field_of(refusal(
            vec![],
            FlagCommand::Create {
                command: missing_off,
                actor: "a".into(),
                at: at()
            }
        )),
        "command.off_value"
    );
    let mut bad_schema = create_json();
    bad_schema.schema = Some(json!({"type": 12}));
    assert_eq!(
        field_of(refusal(
            vec![],
            FlagCommand::Create {
                command: bad_schema,
                actor: "a".into(),
                at: at()
            }
        )),
        "command.schema"
    );
    let boolean = CreateFlag {
        flag_type: FlagType::Boolean,
        on_value: Some(json!("yes")),
        schema: None,
        ..create_json()
    };
    assert_eq!(
        field_of(refusal(
            vec![],
            FlagCommand::Create {
                command: boolean,
                actor: "a".into(),
                at: at()
            }
        )),
        "command.on_value"
    );
}

#[test]
fn update_values_checks_the_schema_and_needs_a_reason() {
    let update = |on: serde_json::Value, reason: &str| FlagCommand::UpdateValues {
        command: UpdateFlagValues {
            flag: "ranker.policy".into(),
            schema: None,
            on_value: Some(on),
            off_value: None,
            reason: reason.into(),
        },
        actor: "alice".into(),
        at: at(),
    };
    let ok = json!({"version": "epsilon_greedy_v2", "epsilon": 0.1});
    assert_eq!(
        when(vec![created()], update(ok.clone(), "v2")),
        Ok(FlagEvent::FlagValuesUpdated(FlagValuesUpdated {
            schema: None,
            on_value: ok.clone(),
            off_value: json!({"version": "baseline", "epsilon": 0}),
            reason: "v2".into(),
            actor: "alice".into(),
            at: at(),
        }))
    );
    assert_eq!(
        field_of(refusal(vec![created()], update(json!({"version": 1}), "x"))),
        "command.on_value"
    );
    assert_eq!(
        field_of(refusal(vec![created()], update(ok, " "))),
        "command.reason"
    );
    assert_eq!(refusal(vec![], update(json!(1), "x")), FlagError::NotFound);
}

#[test]
fn set_rollout_records_previous_and_new() {
    assert_eq!(
        when(vec![created()], rollout_cmd(set(5.25))),
        Ok(FlagEvent::RolloutSet(RolloutSet {
            previous: Rollout::default(),
            rollout: set(5.25).rollout(),
            reason: "ramp".into(),
            triggered_by: TriggeredBy::Manual,
            actor: "olga".into(),
            at: at(),
        }))
    );
}

#[test]
fn set_rollout_accepts_a_category_rollout() {
    let command = SetRollout {
        strategy: Strategy::Category,
        categories: vec!["test".into(), "small".into()],
        ..set(25.0)
    };
    let Ok(FlagEvent::RolloutSet(e)) = when(vec![created()], rollout_cmd(command)) else {
        panic!("a category rollout is recorded")
    };
    assert_eq!(e.rollout.strategy, Strategy::Category);
    assert_eq!(e.rollout.categories, ["test", "small"]);
}

#[test]
fn set_rollout_refuses_bad_percentages_strategies_rules_and_limits() {
    for p in [-1.0, 100.01, 5.125, f64::NAN] {
        assert_eq!(
            field_of(refusal(vec![created()], rollout_cmd(set(p)))),
            "command.percentage",
            "{p}"
        );
    }
    let no_categories = SetRollout {
        strategy: Strategy::Category,
        ..set(5.0)
    };
    assert_eq!(
        field_of(refusal(vec![created()], rollout_cmd(no_categories))),
        "command.categories"
    );
    let unknown_category = SetRollout {
        strategy: Strategy::Category,
        categories: vec!["small".into(), "huge".into()],
        ..set(5.0)
    };
    assert_eq!(
        field_of(refusal(vec![created()], rollout_cmd(unknown_category))),
        "command.categories[1]"
    );
    let categories_without_the_strategy = SetRollout {
        categories: vec!["small".into()],
        ..set(5.0)
    };
    assert_eq!(
        field_of(refusal(
            vec![created()],
            rollout_cmd(categories_without_the_strategy)
        )),
        "command.categories"
    );
    let no_rule = SetRollout {
        strategy: Strategy::Rule,
        ..set(5.0)
    };
    assert_eq!(
        field_of(refusal(vec![created()], rollout_cmd(no_rule))),
        "command.rule"
    );
    let bad_rule = SetRollout {
        strategy: Strategy::Rule,
        rule: Some("plan ==".into()),
        ..set(5.0)
    };
    assert_eq!(
        field_of(refusal(vec![created()], rollout_cmd(bad_rule))),
        "command.rule"
    );
    let good_rule = SetRollout {
        strategy: Strategy::Rule,
        rule: Some(r#"plan == "pro""#.into()),
        rule_attributes: serde_json::from_value(json!({"plan": "string"})).unwrap(),
        ..set(5.0)
    };
    let mut flag = Flag::default();
    flag.apply(created());
    assert!(flag.decide(rollout_cmd(good_rule)).is_ok());
    let both = SetRollout {
        include: vec!["u".into()],
        exclude: vec!["u".into()],
        ..set(5.0)
    };
    assert_eq!(
        field_of(refusal(vec![created()], rollout_cmd(both))),
        "command.include"
    );
    let rollback = SetRollout {
        auto_rollback: Some(AutoRollback {
            max_error_rate: 2.0,
            min_volume: 10,
            window_secs: 60,
        }),
        ..set(5.0)
    };
    assert_eq!(
        field_of(refusal(vec![created()], rollout_cmd(rollback))),
        "command.auto_rollback.max_error_rate"
    );
    let no_reason = SetRollout {
        reason: String::new(),
        ..set(5.0)
    };
    assert_eq!(
        field_of(refusal(vec![created()], rollout_cmd(no_reason))),
        "command.reason"
    );
}

#[test]
fn emergency_stop_and_resume_alternate_and_archive_ends_changes() {
    let stop = |c: fn(StopFlag, String, DateTime<Utc>) -> FlagCommand| {
        c(
            StopFlag {
                flag: "ranker.policy".into(),
                reason: "errors".into(),
            },
            "olga".into(),
            at(),
        )
    };
    let stop_cmd = stop(|command, actor, at| FlagCommand::EmergencyStop { command, actor, at });
    let resume_cmd = stop(|command, actor, at| FlagCommand::Resume { command, actor, at });
    let changed = FlagChanged {
        reason: "errors".into(),
        actor: "olga".into(),
        at: at(),
    };
    assert_eq!(
        when(vec![created()], stop_cmd.clone()),
        Ok(FlagEvent::FlagEmergencyStopped(changed.clone()))
    );
    let stopped = vec![created(), FlagEvent::FlagEmergencyStopped(changed.clone())];
    assert!(matches!(
        refusal(stopped.clone(), stop_cmd),
        FlagError::Unchanged(_)
    ));
    assert_eq!(
        when(stopped, resume_cmd.clone()),
        Ok(FlagEvent::FlagResumed(changed.clone()))
    );
    assert!(matches!(
        refusal(vec![created()], resume_cmd),
        FlagError::Unchanged(_)
    ));
    let archived = vec![created(), FlagEvent::FlagArchived(changed)];
    assert!(matches!(
        refusal(archived, rollout_cmd(set(5.0))),
        FlagError::Archived(_)
    ));
}

#[test]
fn safe_mode_turns_on_and_off_once_each() {
    let cmd = |on: bool| GlobalCommand {
        command: SetSafeMode {
            on,
            reason: "incident".into(),
        },
        actor: "olga".into(),
        at: at(),
    };
    let changed = |on: bool| {
        GlobalEvent::SafeModeChanged(SafeModeChanged {
            on,
            reason: "incident".into(),
            actor: "olga".into(),
            at: at(),
        })
    };
    let mut global = Global::default();
    assert_eq!(global.decide(cmd(true)), Ok(changed(true)));
    global.apply(changed(true));
    assert_eq!(
        global.decide(cmd(true)),
        Err(FlagError::Unchanged("safe mode is already on".into()))
    );
    assert_eq!(global.decide(cmd(false)), Ok(changed(false)));
}

#[test]
fn auto_rollback_sets_zero_percent_only_past_the_limits() {
    let limits = AutoRollback {
        max_error_rate: 0.2,
        min_volume: 20,
        window_secs: 60,
    };
    let armed = FlagEvent::RolloutSet(RolloutSet {
        previous: Rollout::default(),
        rollout: Rollout {
            percentage: 50.0,
            auto_rollback: Some(limits),
            ..Rollout::default()
        },
        reason: "half".into(),
        triggered_by: TriggeredBy::Manual,
        actor: "olga".into(),
        at: at(),
    });
    let cmd = |total: u64, errors: u64| FlagCommand::AutoRollback {
        command: AutoRollbackFlag {
            flag: "ranker.policy".into(),
            window_start: at(),
            window_secs: 60,
            total,
            errors,
        },
        actor: "gatehouse".into(),
        at: at(),
    };
    let Ok(FlagEvent::RolloutSet(e)) = when(vec![created(), armed.clone()], cmd(65, 25)) else {
        panic!("no rollback")
    };
    assert_eq!(
        (e.previous.percentage, e.rollout.percentage, e.triggered_by),
        (50.0, 0.0, TriggeredBy::AutoRollback)
    );
    assert!(
        e.reason.contains("25 errors of 65 outcomes"),
        "{}",
        e.reason
    );
    assert!(e.rollout.auto_rollback.is_some());
    // Below the minimum volume, or at the rate: refused (the monitor holds).
    assert_eq!(
        field_of(when(vec![created(), armed.clone()], cmd(10, 10)).unwrap_err()),
        "command.errors"
    );
    assert_eq!(
        field_of(when(vec![created(), armed], cmd(100, 20)).unwrap_err()),
        "command.errors"
    );
    // Without auto_rollback, or at 0% already: unchanged.
    assert!(matches!(
        when(vec![created()], cmd(65, 25)),
        Err(FlagError::Unchanged(_))
    ));
}
