//! Every event Gatehouse stores, pinned to its exact JSON.
//!
//! The event store keeps these documents forever and auditors replay them: a change to any of
//! them (a renamed variant or field, a new required field, another date format) must be a
//! deliberate, versioned change, never a side effect of a refactor. Each case checks that the
//! event serializes to exactly the pinned JSON, that the pinned JSON reads back as the same
//! event, and that the stored type name is the JSON's tag.

use chrono::{DateTime, Utc};
use gatehouse_events::policy::{PolicyCreated, PolicyEvent, PolicyVersionDrafted};
use gatehouse_events::rules::{AttributeType, Decision, Rule, RulesDocument};
use gatehouse_events::run::{
    PolicyPromoted, RunCancelled, RunCounters, RunFailed, RunPrepared, RunResumed, RunSucceeded,
};
use serde_json::{json, Value};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).expect("a valid timestamp")
}

fn counters() -> RunCounters {
    RunCounters {
        total_ready_snapshot: 10,
        processed: 10,
        eligible: 6,
        ineligible: 2,
        quarantined: 1,
        pending: 0,
        errors: 1,
    }
}

const COUNTERS: &str = r#"{"total_ready_snapshot": 10, "processed": 10, "eligible": 6,
    "ineligible": 2, "quarantined": 1, "pending": 0, "errors": 1}"#;

fn counters_json() -> Value {
    serde_json::from_str(COUNTERS).expect("pinned counters")
}

/// Serializes `event`, compares with `pinned`, reads `pinned` back, and checks the type name.
fn assert_stored_as(event: PolicyEvent, pinned: Value) {
    let stored = serde_json::to_value(&event).expect("events serialize");
    assert_eq!(stored, pinned, "stored JSON of {}", event.event_type());
    let read: PolicyEvent = serde_json::from_value(pinned.clone()).expect("pinned JSON reads");
    assert_eq!(read, event);
    let tag = pinned
        .as_object()
        .and_then(|o| o.keys().next())
        .expect("externally tagged");
    assert_eq!(tag, event.event_type());
    assert_eq!(event.event_version(), "1.0");
}

#[test]
fn policy_created_is_stored_as_pinned() {
    let event = PolicyEvent::PolicyCreated(PolicyCreated {
        policy_id: "media".into(),
        name: "Media".into(),
        description: "the media catalog".into(),
        attributes: [
            ("quality".to_owned(), AttributeType::Double),
            (
                "tags".to_owned(),
                AttributeType::List(Box::new(AttributeType::String)),
            ),
            (
                "scan".to_owned(),
                AttributeType::Object([("critical".to_owned(), AttributeType::Int)].into()),
            ),
        ]
        .into(),
        created_by: "alice".into(),
        created_at: at(1_700_000_000),
        require_second_approver: false,
    });
    assert_stored_as(
        event,
        json!({"PolicyCreated": {"policy_id": "media", "name": "Media",
            "description": "the media catalog",
            "attributes": {"quality": "double", "scan": {"critical": "int"}, "tags": "list<string>"},
            "created_by": "alice", "created_at": "2023-11-14T22:13:20Z"}}),
    );
}

#[test]
fn a_four_eyes_policy_created_is_stored_with_its_setting_and_older_ones_read_as_without() {
    let event = PolicyEvent::PolicyCreated(PolicyCreated {
        policy_id: "media".into(),
        name: "Media".into(),
        description: String::new(),
        attributes: Default::default(),
        created_by: "alice".into(),
        created_at: at(1_700_000_000),
        require_second_approver: true,
    });
    assert_stored_as(
        event,
        json!({"PolicyCreated": {"policy_id": "media", "name": "Media", "description": "",
            "attributes": {}, "created_by": "alice", "created_at": "2023-11-14T22:13:20Z",
            "require_second_approver": true}}),
    );
}

#[test]
fn policy_version_drafted_is_stored_as_pinned() {
    let event = PolicyEvent::PolicyVersionDrafted(PolicyVersionDrafted {
        version: 3,
        rules: RulesDocument {
            rules: vec![Rule {
                id: "low".into(),
                condition: "quality < 0.4".into(),
                decision: Decision::Deny,
                reason: "low quality".into(),
            }],
            default_decision: Decision::Allow,
            default_reason: "default".into(),
            score: "quality * 10.0".into(),
        },
        notes: "restore the old bar".into(),
        author: "bob".into(),
        restored_from: Some(1),
        rules_hash: "ab12".into(),
        drafted_at: at(1_700_000_060),
    });
    assert_stored_as(
        event,
        json!({"PolicyVersionDrafted": {"version": 3,
            "rules": {"rules": [{"id": "low", "condition": "quality < 0.4", "decision": "deny",
                                 "reason": "low quality"}],
                      "default_decision": "allow", "default_reason": "default",
                      "score": "quality * 10.0"},
            "notes": "restore the old bar", "author": "bob", "restored_from": 1,
            "rules_hash": "ab12", "drafted_at": "2023-11-14T22:14:20Z"}}),
    );
}

#[test]
fn a_drafted_version_without_restore_omits_restored_from() {
    let pinned = json!({"PolicyVersionDrafted": {"version": 1,
        "rules": {"rules": [], "default_decision": "quarantine", "default_reason": "new",
                  "score": "0"},
        "notes": "", "author": "bob", "rules_hash": "00", "drafted_at": "2023-11-14T22:14:20Z"}});
    let event: PolicyEvent = serde_json::from_value(pinned.clone()).expect("reads");
    assert_stored_as(event, pinned);
}

#[test]
fn run_prepared_is_stored_as_pinned() {
    let event = PolicyEvent::RunPrepared(RunPrepared {
        run_id: "media:2".into(),
        run_number: 2,
        version: 3,
        snapshot_id: "0190f2c4-0000-7000-8000-000000000000".into(),
        snapshot_cutoff: at(1_700_000_100),
        total_ready_snapshot: 10,
        batch_size: 500,
        batches: 1,
        coverage_threshold: 0.95,
        max_errors: 5,
        prepared_by: "carol".into(),
        prepared_at: at(1_700_000_101),
    });
    assert_stored_as(
        event,
        json!({"RunPrepared": {"run_id": "media:2", "run_number": 2, "version": 3,
            "snapshot_id": "0190f2c4-0000-7000-8000-000000000000",
            "snapshot_cutoff": "2023-11-14T22:15:00Z", "total_ready_snapshot": 10,
            "batch_size": 500, "batches": 1, "coverage_threshold": 0.95, "max_errors": 5,
            "prepared_by": "carol", "prepared_at": "2023-11-14T22:15:01Z"}}),
    );
}

#[test]
fn run_succeeded_is_stored_as_pinned() {
    let event = PolicyEvent::RunSucceeded(RunSucceeded {
        run_id: "media:2".into(),
        counters: counters(),
        completed_at: at(1_700_000_200),
    });
    assert_stored_as(
        event,
        json!({"RunSucceeded": {"run_id": "media:2", "counters": counters_json(),
            "completed_at": "2023-11-14T22:16:40Z"}}),
    );
}

#[test]
fn run_failed_is_stored_as_pinned() {
    let event = PolicyEvent::RunFailed(RunFailed {
        run_id: "media:2".into(),
        reason: "version 3 does not compile".into(),
        counters: counters(),
        failed_at: at(1_700_000_200),
    });
    assert_stored_as(
        event,
        json!({"RunFailed": {"run_id": "media:2", "reason": "version 3 does not compile",
            "counters": counters_json(), "failed_at": "2023-11-14T22:16:40Z"}}),
    );
}

#[test]
fn run_cancelled_is_stored_as_pinned() {
    let event = PolicyEvent::RunCancelled(RunCancelled {
        run_id: "media:2".into(),
        cancelled_by: "carol".into(),
        cancelled_at: at(1_700_000_150),
    });
    assert_stored_as(
        event,
        json!({"RunCancelled": {"run_id": "media:2", "cancelled_by": "carol",
            "cancelled_at": "2023-11-14T22:15:50Z"}}),
    );
}

#[test]
fn run_resumed_is_stored_as_pinned() {
    let event = PolicyEvent::RunResumed(RunResumed {
        run_id: "media:2".into(),
        epoch: 1,
        resumed_by: "carol".into(),
        resumed_at: at(1_700_000_160),
    });
    assert_stored_as(
        event,
        json!({"RunResumed": {"run_id": "media:2", "epoch": 1, "resumed_by": "carol",
            "resumed_at": "2023-11-14T22:16:00Z"}}),
    );
}

#[test]
fn policy_promoted_is_stored_as_pinned() {
    let event = PolicyEvent::PolicyPromoted(PolicyPromoted {
        version: 3,
        previous_version: None,
        run_id: "media:2".into(),
        counters: counters(),
        coverage_threshold: 1.0,
        max_errors: 0,
        promoted_by: "dave".into(),
        promoted_at: at(1_700_000_300),
    });
    assert_stored_as(
        event,
        json!({"PolicyPromoted": {"version": 3, "previous_version": null, "run_id": "media:2",
            "counters": counters_json(), "coverage_threshold": 1.0, "max_errors": 0,
            "promoted_by": "dave", "promoted_at": "2023-11-14T22:18:20Z"}}),
    );
}

#[test]
fn policy_configured_is_stored_as_pinned() {
    use gatehouse_events::policy::PolicyConfigured;
    let event = PolicyEvent::PolicyConfigured(PolicyConfigured {
        require_second_approver: true,
        notes: "audit finding 12".into(),
        configured_by: "alice".into(),
        configured_at: at(1_700_000_000),
    });
    assert_stored_as(
        event,
        json!({"PolicyConfigured": {"require_second_approver": true, "notes": "audit finding 12",
            "configured_by": "alice", "configured_at": "2023-11-14T22:13:20Z"}}),
    );
}

#[test]
fn every_stored_type_name_is_pinned_here() {
    // A new event variant must get a pinned case above and a name in this list.
    let names = [
        "PolicyCreated",
        "PolicyVersionDrafted",
        "RunPrepared",
        "RunSucceeded",
        "RunFailed",
        "RunCancelled",
        "RunResumed",
        "PolicyPromoted",
        "PolicyConfigured",
    ];
    for name in names {
        let unknown: Result<PolicyEvent, _> = serde_json::from_value(json!({ name: {} }));
        // Known tags fail on the missing fields, not on the tag itself.
        let message = unknown
            .expect_err("an empty payload is incomplete")
            .to_string();
        assert!(
            message.contains("missing field"),
            "{name} is not a stored event name: {message}"
        );
    }
    let unknown = serde_json::from_value::<PolicyEvent>(json!({"PolicyRenamed": {}}))
        .expect_err("an unknown tag is refused");
    assert!(unknown.to_string().contains("unknown variant"), "{unknown}");
}

// ----- the repo and artifact aggregates (decisions and quarantine) -----

mod quarantine {
    use super::at;
    use gatehouse_events::artifact::{
        ArtifactEvent, CaseResolved, DecisionRecorded, QuarantineJoined, QuarantineOpened,
    };
    use gatehouse_events::decision::Action;
    use gatehouse_events::repo::{PolicyTimedOut, RepoBound, RepoEvent};
    use gatehouse_events::rules::Decision;
    use serde::{de::DeserializeOwned, Serialize};
    use serde_json::{json, Value};

    fn pinned<E: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
        event: E,
        event_type: &str,
        pinned: Value,
    ) {
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            pinned,
            "{event_type}"
        );
        let read: E = serde_json::from_value(pinned.clone()).unwrap();
        assert_eq!(read, event);
        assert_eq!(
            pinned.as_object().unwrap().keys().next().unwrap(),
            event_type
        );
    }

    #[test]
    fn repo_events_are_stored_as_pinned() {
        let bound = RepoEvent::RepoBound(RepoBound {
            repo: "npm".into(),
            policy_id: "gate".into(),
            budget_ms: 250,
            auto_release: true,
            previous_policy_id: Some("old".into()),
            bound_by: "alice".into(),
            bound_at: at(0),
        });
        assert_eq!(bound.event_type(), "RepoBound");
        pinned(
            bound,
            "RepoBound",
            json!({"RepoBound": {"repo": "npm", "policy_id": "gate",
            "budget_ms": 250, "auto_release": true, "previous_policy_id": "old",
            "bound_by": "alice", "bound_at": "1970-01-01T00:00:00Z"}}),
        );
        let timed_out = RepoEvent::PolicyTimedOut(PolicyTimedOut {
            repo: "npm".into(),
            item_id: "a-1".into(),
            action: Action::Promote,
            policy_id: "gate".into(),
            budget_ms: 250,
            request_command_id: "c-1".into(),
            timed_out_at: at(1),
        });
        assert_eq!(timed_out.event_type(), "PolicyTimedOut");
        pinned(
            timed_out,
            "PolicyTimedOut",
            json!({"PolicyTimedOut": {"repo": "npm",
            "item_id": "a-1", "action": "promote", "policy_id": "gate", "budget_ms": 250,
            "request_command_id": "c-1", "timed_out_at": "1970-01-01T00:00:01Z"}}),
        );
    }

    #[test]
    fn artifact_events_are_stored_as_pinned() {
        let decided = ArtifactEvent::DecisionRecorded(DecisionRecorded {
            repo: "npm".into(),
            item_id: "a-1".into(),
            action: Action::Publish,
            decision: Decision::Quarantine,
            rule_id: Some("scan".into()),
            reason: "scan not clean".into(),
            policy_id: "gate".into(),
            version: 3,
            input_digest: "sha256:ab".into(),
            digests: vec!["sha256:0123456789".into()],
            decided_by: "svc".into(),
            decided_at: at(2),
            attributes: None,
        });
        pinned(
            decided,
            "DecisionRecorded",
            json!({"DecisionRecorded": {"repo": "npm",
            "item_id": "a-1", "action": "publish", "decision": "quarantine", "rule_id": "scan",
            "reason": "scan not clean", "policy_id": "gate", "version": 3,
            "input_digest": "sha256:ab", "digests": ["sha256:0123456789"], "decided_by": "svc",
            "decided_at": "1970-01-01T00:00:02Z"}}),
        );
        let opened = ArtifactEvent::QuarantineOpened(QuarantineOpened {
            policy_id: "gate".into(),
            version: 3,
            rule_id: None,
            reason: "default".into(),
            attributes: json!({"q": 1}),
            opened_by: "svc".into(),
            opened_at: at(2),
        });
        pinned(
            opened,
            "QuarantineOpened",
            json!({"QuarantineOpened": {"policy_id": "gate",
            "version": 3, "rule_id": null, "reason": "default", "attributes": {"q": 1},
            "opened_by": "svc", "opened_at": "1970-01-01T00:00:02Z"}}),
        );
        let joined = ArtifactEvent::QuarantineJoined(QuarantineJoined {
            policy_id: "gate".into(),
            version: 3,
            rule_id: Some("scan".into()),
            reason: "r".into(),
            attributes: json!({}),
            joined_at: at(3),
        });
        pinned(
            joined,
            "QuarantineJoined",
            json!({"QuarantineJoined": {"policy_id": "gate",
            "version": 3, "rule_id": "scan", "reason": "r", "attributes": {},
            "joined_at": "1970-01-01T00:00:03Z"}}),
        );
        let resolved = || CaseResolved {
            reason: "checked".into(),
            resolved_by: "alice".into(),
            resolved_at: at(4),
        };
        let body = json!({"reason": "checked", "resolved_by": "alice",
            "resolved_at": "1970-01-01T00:00:04Z"});
        pinned(
            ArtifactEvent::QuarantineReleased(resolved()),
            "QuarantineReleased",
            json!({"QuarantineReleased": body}),
        );
        pinned(
            ArtifactEvent::QuarantineRejected(resolved()),
            "QuarantineRejected",
            json!({"QuarantineRejected": body}),
        );
    }
}

#[test]
fn access_events_are_stored_as_pinned() {
    use gatehouse_events::access::{
        AccessEvent, Role, RoleGranted, RoleRevoked, TokenIssued, TokenRevoked,
    };
    let cases = [
        (
            AccessEvent::RoleGranted(RoleGranted {
                user: "bob".into(),
                role: Role::Approver,
                reason: "on call this week".into(),
                granted_by: "alice".into(),
                granted_at: at(1_700_000_000),
            }),
            json!({"RoleGranted": {"user": "bob", "role": "approver",
                "reason": "on call this week", "granted_by": "alice",
                "granted_at": "2023-11-14T22:13:20Z"}}),
        ),
        (
            AccessEvent::RoleRevoked(RoleRevoked {
                user: "bob".into(),
                role: Role::Delegate,
                reason: String::new(),
                revoked_by: "alice".into(),
                revoked_at: at(1_700_000_060),
            }),
            json!({"RoleRevoked": {"user": "bob", "role": "delegate", "reason": "",
                "revoked_by": "alice", "revoked_at": "2023-11-14T22:14:20Z"}}),
        ),
        (
            AccessEvent::TokenIssued(TokenIssued {
                token_id: "9f2c4e1a0b7d3c55".into(),
                user: "carol".into(),
                name: "laptop".into(),
                secret_sha256: "ab".repeat(32),
                issued_by: "alice".into(),
                issued_at: at(1_700_000_000),
            }),
            json!({"TokenIssued": {"token_id": "9f2c4e1a0b7d3c55", "user": "carol",
                "name": "laptop", "secret_sha256": "ab".repeat(32), "issued_by": "alice",
                "issued_at": "2023-11-14T22:13:20Z"}}),
        ),
        (
            AccessEvent::TokenRevoked(TokenRevoked {
                token_id: "9f2c4e1a0b7d3c55".into(),
                reason: "laptop lost".into(),
                revoked_by: "alice".into(),
                revoked_at: at(1_700_000_060),
            }),
            json!({"TokenRevoked": {"token_id": "9f2c4e1a0b7d3c55", "reason": "laptop lost",
                "revoked_by": "alice", "revoked_at": "2023-11-14T22:14:20Z"}}),
        ),
    ];
    for (event, pinned) in cases {
        assert_eq!(serde_json::to_value(&event).unwrap(), pinned);
        let read: AccessEvent = serde_json::from_value(pinned.clone()).unwrap();
        assert_eq!(read, event);
        assert_eq!(
            pinned.as_object().unwrap().keys().next().unwrap(),
            event.event_type()
        );
    }
}

mod flags {
    use super::at;
    use gatehouse_events::flag::{
        Bucketing, FlagChanged, FlagCreated, FlagEvent, FlagType, FlagValuesUpdated, GlobalEvent,
        Rollout, RolloutSet, SafeModeChanged, Strategy, TriggeredBy,
    };
    use serde_json::{json, Value};

    fn assert_flag_stored_as(event: FlagEvent, pinned: Value) {
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            pinned,
            "{}",
            event.event_type()
        );
        let read: FlagEvent = serde_json::from_value(pinned.clone()).unwrap();
        assert_eq!(read, event);
        assert_eq!(
            pinned.as_object().unwrap().keys().next().unwrap(),
            event.event_type()
        );
        assert_eq!(event.event_version(), "1.0");
    }

    #[test]
    fn flag_events_are_stored_as_pinned() {
        assert_flag_stored_as(
            FlagEvent::FlagCreated(FlagCreated {
                flag: "ranker.policy".into(),
                description: "d".into(),
                flag_type: FlagType::Json,
                schema: Some(json!({"type": "object"})),
                on_value: json!({"v": 1}),
                off_value: json!({"v": 0}),
                reason: "new".into(),
                actor: "alice".into(),
                at: at(0),
            }),
            json!({"FlagCreated": {"flag": "ranker.policy", "description": "d", "type": "json",
                "schema": {"type": "object"}, "on_value": {"v": 1}, "off_value": {"v": 0},
                "reason": "new", "actor": "alice", "at": "1970-01-01T00:00:00Z"}}),
        );
        assert_flag_stored_as(
            FlagEvent::FlagValuesUpdated(FlagValuesUpdated {
                schema: None,
                on_value: json!(true),
                off_value: json!(false),
                reason: "r".into(),
                actor: "alice".into(),
                at: at(0),
            }),
            json!({"FlagValuesUpdated": {"on_value": true, "off_value": false, "reason": "r",
                "actor": "alice", "at": "1970-01-01T00:00:00Z"}}),
        );
        let changed = FlagChanged {
            reason: "r".into(),
            actor: "olga".into(),
            at: at(0),
        };
        let changed_json = json!({"reason": "r", "actor": "olga", "at": "1970-01-01T00:00:00Z"});
        assert_flag_stored_as(
            FlagEvent::FlagArchived(changed.clone()),
            json!({"FlagArchived": changed_json}),
        );
        assert_flag_stored_as(
            FlagEvent::FlagEmergencyStopped(changed.clone()),
            json!({"FlagEmergencyStopped": changed_json}),
        );
        assert_flag_stored_as(
            FlagEvent::FlagResumed(changed),
            json!({"FlagResumed": changed_json}),
        );
        assert_flag_stored_as(
            FlagEvent::RolloutSet(RolloutSet {
                previous: Rollout::default(),
                rollout: Rollout {
                    percentage: 5.25,
                    strategy: Strategy::Percentage,
                    exclude: vec!["u1".into()],
                    stickiness: Some("tenant".into()),
                    bucketing: Bucketing::Unleash,
                    ..Rollout::default()
                },
                reason: "ramp".into(),
                triggered_by: TriggeredBy::Manual,
                actor: "olga".into(),
                at: at(0),
            }),
            json!({"RolloutSet": {
                "previous": {"percentage": 0.0, "strategy": "percentage", "bucketing": "default"},
                "rollout": {"percentage": 5.25, "strategy": "percentage", "exclude": ["u1"],
                            "stickiness": "tenant", "bucketing": "unleash"},
                "reason": "ramp", "triggered_by": "manual", "actor": "olga",
                "at": "1970-01-01T00:00:00Z"}}),
        );
    }

    #[test]
    fn safe_mode_changed_is_stored_as_pinned() {
        let event = GlobalEvent::SafeModeChanged(SafeModeChanged {
            on: true,
            reason: "incident".into(),
            actor: "olga".into(),
            at: at(0),
        });
        let pinned = json!({"SafeModeChanged": {"on": true, "reason": "incident", "actor": "olga",
            "at": "1970-01-01T00:00:00Z"}});
        assert_eq!(serde_json::to_value(&event).unwrap(), pinned);
        assert_eq!(
            serde_json::from_value::<GlobalEvent>(pinned).unwrap(),
            event
        );
    }
}

mod category {
    use super::at;
    use gatehouse_events::category::{
        CategorisationRule, CategorisationRules, Category, CategoryEvent, CategoryRulesActivated,
        CategoryRulesDrafted,
    };
    use serde_json::{json, Value};

    fn assert_category_stored_as(event: CategoryEvent, pinned: Value) {
        assert_eq!(serde_json::to_value(&event).unwrap(), pinned);
        assert_eq!(
            serde_json::from_value::<CategoryEvent>(pinned.clone()).unwrap(),
            event
        );
        assert_eq!(
            pinned.as_object().unwrap().keys().next().unwrap(),
            event.event_type()
        );
        assert_eq!(event.event_version(), "1.0");
    }

    #[test]
    fn category_rules_drafted_is_stored_as_pinned() {
        let event = CategoryEvent::RulesDrafted(CategoryRulesDrafted {
            version: 1,
            document: CategorisationRules {
                attributes: serde_json::from_value(json!({"stars": "int"})).unwrap(),
                rules: vec![CategorisationRule {
                    id: "big".into(),
                    condition: "stars > 10".into(),
                    category: Category::Large,
                    priority: "20".into(),
                }],
                default_category: Category::Small,
                default_priority: 90,
            },
            reason: "seed".into(),
            actor: "ana".into(),
            at: at(0),
        });
        let pinned = json!({"CategoryRulesDrafted": {"version": 1, "document": {
            "attributes": {"stars": "int"},
            "rules": [{"id": "big", "condition": "stars > 10", "category": "large", "priority": "20"}],
            "default_category": "small", "default_priority": 90},
            "reason": "seed", "actor": "ana", "at": "1970-01-01T00:00:00Z"}});
        assert_category_stored_as(event, pinned);
    }

    #[test]
    fn category_rules_activated_is_stored_as_pinned() {
        let event = CategoryEvent::RulesActivated(CategoryRulesActivated {
            version: 2,
            previous: Some(1),
            reason: "go".into(),
            actor: "olga".into(),
            at: at(0),
        });
        let pinned = json!({"CategoryRulesActivated": {"version": 2, "previous": 1,
            "reason": "go", "actor": "olga", "at": "1970-01-01T00:00:00Z"}});
        assert_category_stored_as(event, pinned);
    }
}
