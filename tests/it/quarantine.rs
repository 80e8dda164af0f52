//! Publish and promote decisions with quarantine, end to end on the real broker and Postgres:
//! the decision matrix, fail-closed (unbound, no active version, past the budget), release and
//! reject, blocked reads, auto-release on a promotion and the public catalog.

use std::time::Duration;

use gatehouse::client::ClientError;
use gatehouse_events::artifact::{CanRead, ReadAllowed};
use gatehouse_events::catalog::{PublicCatalogPage, PublicCatalogQuery};
use gatehouse_events::decision::{
    Action, DecisionEntry, DecisionReply, EvaluateDecision, ListDecisions,
};
use gatehouse_events::envelope::{Rejection, RejectionCode, WaitFor};
use gatehouse_events::policy::{CreatePolicy, DraftVersion};
use gatehouse_events::quarantine::{
    CaseDetail, CasePage, CaseStatus, GetCase, ListCases, ResolveCase,
};
use gatehouse_events::repo::{BindRepo, GetRepo, RepoSummary};
use gatehouse_events::rules::Decision;
use gatehouse_events::run::PromoteRun;
use serde_json::{json, Map, Value};

use crate::helpers::{eventually, spawn_app, spawn_app_with_users, TestApp};
use crate::runs::{insert_items, item_id, prepare, wait_status};

const DEADLINE: Duration = Duration::from_secs(60);

/// The gate policy: the fixture catalog's attributes plus `action` and `repo`.
fn create_gate(policy_id: &str) -> CreatePolicy {
    serde_json::from_value(json!({
        "policy_id": policy_id,
        "name": "Publishing gate",
        "attributes": {
            "kind": "string", "quality": "double", "tags": "list<string>",
            "scan": {"status": "string", "critical": "int"},
            "action": "string", "repo": "string"
        }
    }))
    .unwrap()
}

/// v1 quarantines unclean scans; v2 (`lenient`) lets `suspicious` scans through. With
/// `host_rules`, rules also read `action` and `repo` (which catalog items, evaluated by runs,
/// lack: such a policy decides for hosts only).
fn gate_rules(lenient: bool, host_rules: bool) -> Value {
    let scan = if lenient {
        "scan.status != \"clean\" && scan.status != \"suspicious\""
    } else {
        "scan.status != \"clean\""
    };
    let mut rules = vec![
        json!({"id": "critical", "condition": "scan.critical > 0", "decision": "deny", "reason": "critical findings"}),
        json!({"id": "scan", "condition": scan, "decision": "quarantine", "reason": "scan not clean"}),
    ];
    if host_rules {
        rules.push(
            json!({"id": "promote-bar", "condition": "action == \"promote\" && quality < 0.8",
            "decision": "deny", "reason": "promotion needs quality 0.8"}),
        );
        rules.push(
            json!({"id": "internal", "condition": "repo == \"internal\" && kind == \"secret\"",
            "decision": "deny", "reason": "no secrets in internal"}),
        );
    }
    rules.push(json!({"id": "low-quality", "condition": "quality < 0.5", "decision": "deny", "reason": "low quality"}));
    rules.push(json!({"id": "banned", "condition": "\"banned\" in tags", "decision": "deny", "reason": "banned tag"}));
    json!({"rules": rules, "default_decision": "allow", "score": "quality * 10.0"})
}

async fn draft(app: &TestApp, policy_id: &str, lenient: bool) {
    draft_rules(app, policy_id, lenient, true).await
}

async fn draft_rules(app: &TestApp, policy_id: &str, lenient: bool, host_rules: bool) {
    let draft = DraftVersion {
        policy_id: policy_id.into(),
        rules: serde_json::from_value(gate_rules(lenient, host_rules)).unwrap(),
        notes: if lenient { "lenient" } else { "strict" }.into(),
    };
    app.client
        .command("policy", "draft", &app.sender("bob"), draft)
        .await
        .expect("draft");
}

/// Prepares `version` of `policy_id`, waits for its success and promotes it.
async fn promote(app: &TestApp, policy_id: &str, version: u32) {
    let run_id = prepare(app, policy_id, version, 50).await;
    wait_status(app, &run_id, "success").await;
    let promote = PromoteRun {
        run_id,
        coverage_threshold: None,
        max_errors: Some(1_000),
    };
    app.client
        .command("policy", "promote", &app.sender("dave"), promote)
        .await
        .expect("promote");
    let sql = format!(
        "SELECT count(*) FROM policies WHERE policy_id = '{policy_id}' AND active_version = {version}"
    );
    eventually(DEADLINE, || async { app.count(&sql).await == 1 })
        .await
        .expect("the promotion is projected");
}

async fn bind(
    app: &TestApp,
    repo: &str,
    policy_id: &str,
    budget_ms: Option<u32>,
    auto_release: bool,
) {
    let bind = BindRepo {
        repo: repo.into(),
        policy_id: policy_id.into(),
        budget_ms,
        auto_release: Some(auto_release),
    };
    app.client
        .command("repo", "bind", &app.sender("alice"), bind)
        .await
        .expect("bind");
}

/// The gate policy with version 1 active, repo `npm` bound to it.
pub(crate) async fn gate(app: &TestApp) {
    gate_with(app, true).await
}

async fn gate_with(app: &TestApp, host_rules: bool) {
    app.client
        .command(
            "policy",
            "create",
            &app.sender("alice"),
            create_gate("gate"),
        )
        .await
        .expect("create");
    draft_rules(app, "gate", false, host_rules).await;
    promote(app, "gate", 1).await;
    bind(app, "npm", "gate", None, true).await;
}

pub(crate) fn attributes(quality: f64, scan: &str, critical: i64) -> Map<String, Value> {
    let Value::Object(m) = json!({"kind": "lib", "quality": quality, "tags": [],
        "scan": {"status": scan, "critical": critical}})
    else {
        unreachable!()
    };
    m
}

pub(crate) fn evaluate(
    repo: &str,
    item: &str,
    action: Action,
    attrs: Option<Map<String, Value>>,
) -> EvaluateDecision {
    EvaluateDecision {
        repo: repo.into(),
        item_id: item.into(),
        action,
        attributes: attrs,
        digests: vec![format!("sha256:{:0>16}", hex(item))],
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

pub(crate) async fn decide(
    app: &TestApp,
    cmd: EvaluateDecision,
) -> Result<DecisionReply, Rejection> {
    match app
        .client
        .command_reply("decision", "evaluate", &app.sender("svc"), cmd)
        .await
    {
        Ok(reply) => Ok(reply),
        Err(ClientError::Rejected(r)) => Err(r),
        Err(e) => panic!("decision.evaluate: {e}"),
    }
}

pub(crate) async fn resolve(
    app: &TestApp,
    name: &str,
    actor: &str,
    repo: &str,
    item: &str,
    reason: &str,
) -> Result<(), Rejection> {
    let cmd = ResolveCase {
        repo: repo.into(),
        item_id: item.into(),
        reason: reason.into(),
    };
    match app
        .client
        .command("quarantine", name, &app.sender(actor), cmd)
        .await
    {
        Ok(_) => Ok(()),
        Err(ClientError::Rejected(r)) => Err(r),
        Err(e) => panic!("quarantine.{name}: {e}"),
    }
}

pub(crate) async fn can_read(
    app: &TestApp,
    repo: &str,
    item: Option<&str>,
    digest: Option<String>,
) -> Result<ReadAllowed, Rejection> {
    let q = CanRead {
        repo: repo.into(),
        item_id: item.map(Into::into),
        digest,
    };
    match app.client.query("artifact", "can_read", &q).await {
        Ok(a) => Ok(a),
        Err(ClientError::Rejected(r)) => Err(r),
        Err(e) => panic!("artifact.can_read: {e}"),
    }
}

async fn case(app: &TestApp, repo: &str, item: &str, after: &DecisionReply) -> CaseDetail {
    let q = GetCase {
        repo: repo.into(),
        item_id: item.into(),
    };
    app.client
        .query_after("quarantine", "get", &q, &WaitFor::after(&after.recorded))
        .await
        .expect("quarantine.get")
}

async fn events(app: &TestApp, aggregate: &str) -> i64 {
    app.count(&format!(
        "SELECT count(*) FROM events WHERE aggregate_type = '{aggregate}'"
    ))
    .await
}

#[tokio::test]
async fn the_decision_matrix_records_every_decision_with_its_provenance() {
    let app = spawn_app().await;
    gate(&app).await;
    let cases = [
        // (item, action, attributes, decision, rule)
        (
            "ok",
            Action::Publish,
            attributes(0.9, "clean", 0),
            Decision::Allow,
            None,
        ),
        (
            "ok",
            Action::Promote,
            attributes(0.9, "clean", 0),
            Decision::Allow,
            None,
        ),
        (
            "crit",
            Action::Publish,
            attributes(0.9, "clean", 2),
            Decision::Deny,
            Some("critical"),
        ),
        (
            "crit",
            Action::Promote,
            attributes(0.9, "clean", 2),
            Decision::Deny,
            Some("critical"),
        ),
        (
            "dirty",
            Action::Publish,
            attributes(0.9, "infected", 0),
            Decision::Quarantine,
            Some("scan"),
        ),
        (
            "dirty2",
            Action::Promote,
            attributes(0.9, "infected", 0),
            Decision::Quarantine,
            Some("scan"),
        ),
        // The rule reads `action`: publishing at 0.6 is allowed, promoting it is not.
        (
            "mid",
            Action::Publish,
            attributes(0.6, "clean", 0),
            Decision::Allow,
            None,
        ),
        (
            "mid",
            Action::Promote,
            attributes(0.6, "clean", 0),
            Decision::Deny,
            Some("promote-bar"),
        ),
    ];
    let mut last = None;
    for (item, action, attrs, decision, rule) in cases {
        let reply = decide(&app, evaluate("npm", item, action, Some(attrs.clone())))
            .await
            .unwrap_or_else(|r| panic!("{item} {action}: {r}"));
        let o = &reply.outcome;
        assert_eq!(
            (o.decision, o.rule_id.as_deref()),
            (decision, rule),
            "{item} {action}"
        );
        assert_eq!((o.policy_id.as_str(), o.version), ("gate", 1));
        assert_eq!(o.action, action);
        let evaluated = gatehouse::decision::evaluate::input_attributes("npm", action, attrs);
        assert_eq!(
            o.input_digest,
            gatehouse::decision::evaluate::input_digest(
                "npm",
                item,
                action,
                &Value::Object(evaluated)
            ),
            "the digest is of the evaluated input"
        );
        assert_eq!(reply.recorded.aggregate, "artifact");
        assert_eq!(reply.recorded.aggregate_id, format!("npm:{item}"));
        let quarantined = decision == Decision::Quarantine;
        assert_eq!(
            o.case,
            quarantined.then_some(CaseStatus::Quarantined),
            "{item}"
        );
        assert_eq!(o.case_opened, quarantined);
        last = Some(reply);
    }
    // Queryable by repo, item and action, newest first.
    let wait = WaitFor::after(&last.unwrap().recorded);
    let all: Vec<DecisionEntry> = app
        .client
        .query_after(
            "decision",
            "list",
            &ListDecisions {
                repo: "npm".into(),
                ..Default::default()
            },
            &wait,
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 8);
    assert!(
        all.windows(2).all(|w| w[0].position > w[1].position),
        "newest first"
    );
    assert_eq!(
        (all[0].item_id.as_str(), all[0].action),
        ("mid", Action::Promote)
    );
    let q = ListDecisions {
        repo: "npm".into(),
        item_id: Some("mid".into()),
        action: Some(Action::Promote),
        ..Default::default()
    };
    let mid: Vec<DecisionEntry> = app
        .client
        .query_after("decision", "list", &q, &wait)
        .await
        .unwrap();
    assert_eq!(mid.len(), 1);
    assert_eq!(
        (mid[0].decision, mid[0].decided_by.as_str()),
        (Decision::Deny, "svc")
    );
    assert_eq!(mid[0].digests, vec![format!("sha256:{:0>16}", hex("mid"))]);
    // A retry with the same command id answers the recorded decision.
    let sender = app.sender("svc");
    let first: DecisionReply = app
        .client
        .command_reply(
            "decision",
            "evaluate",
            &sender,
            evaluate(
                "npm",
                "again",
                Action::Publish,
                Some(attributes(0.9, "clean", 0)),
            ),
        )
        .await
        .unwrap();
    let again: DecisionReply = app
        .client
        .command_reply(
            "decision",
            "evaluate",
            &sender,
            evaluate(
                "npm",
                "again",
                Action::Publish,
                Some(attributes(0.9, "clean", 0)),
            ),
        )
        .await
        .unwrap();
    assert!(again.recorded.duplicate);
    assert_eq!(again.outcome, first.outcome);
    app.stop().await;
}

#[tokio::test]
async fn an_unbound_repo_or_a_policy_without_an_active_version_fails_closed() {
    let app = spawn_app().await;
    app.client
        .command(
            "policy",
            "create",
            &app.sender("alice"),
            create_gate("gate"),
        )
        .await
        .unwrap();
    draft(&app, "gate", false).await;
    let ok = || Some(attributes(0.9, "clean", 0));
    let r = decide(&app, evaluate("npm", "a", Action::Publish, ok()))
        .await
        .unwrap_err();
    assert_eq!(r.code, RejectionCode::PolicyUnavailable, "{r}");
    assert!(r.message.contains("bound to no policy"), "{r}");
    // Bound, but version 1 is drafted, not active.
    bind(&app, "npm", "gate", None, true).await;
    let r = decide(&app, evaluate("npm", "a", Action::Publish, ok()))
        .await
        .unwrap_err();
    assert_eq!(r.code, RejectionCode::PolicyUnavailable, "{r}");
    assert!(r.message.contains("no active version"), "{r}");
    promote(&app, "gate", 1).await;
    // An item that does not fit the schema: an evaluation error, never allow.
    let mut bad = attributes(0.9, "clean", 0);
    bad.insert("quality".into(), json!("high"));
    let r = decide(&app, evaluate("npm", "a", Action::Publish, Some(bad)))
        .await
        .unwrap_err();
    assert_eq!(r.code, RejectionCode::PolicyUnavailable, "{r}");
    // Not in the catalog and no attributes: nothing to evaluate.
    let r = decide(&app, evaluate("npm", "a", Action::Publish, None))
        .await
        .unwrap_err();
    assert_eq!(r.code, RejectionCode::NotFound, "{r}");
    assert_eq!(
        events(&app, "artifact").await,
        0,
        "a refused decision records nothing"
    );
    let reply = decide(&app, evaluate("npm", "a", Action::Publish, ok()))
        .await
        .unwrap();
    assert_eq!(reply.outcome.decision, Decision::Allow);
    app.stop().await;
}

#[tokio::test]
async fn a_decision_past_the_budget_fails_closed_and_records_only_the_timeout() {
    let app = spawn_app().await;
    gate(&app).await;
    bind(&app, "slow", "gate", Some(100), true).await;
    app.db
        .execute(
            "INSERT INTO catalog_items (item_id, status, deleted, attributes, updated_at, stream_seq)
             VALUES ('pkg-1', 'ready', false, $1, now(), 1)",
            &[&Value::Object(attributes(0.9, "clean", 0))],
        )
        .await
        .unwrap();
    let before = app.count("SELECT count(*) FROM events").await;
    // A slowed store, for real: the catalog table is locked, so reading the item's attributes
    // (within the budget) waits past it.
    let (locker, conn) = tokio_postgres::connect(&app.settings.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    locker
        .batch_execute("BEGIN; LOCK TABLE catalog_items IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let r = decide(&app, evaluate("slow", "pkg-1", Action::Publish, None))
        .await
        .unwrap_err();
    let took = started.elapsed();
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(r.code, RejectionCode::PolicyTimeout, "{r}");
    assert_eq!(r.details[0]["fail_closed"], true);
    assert_eq!(r.details[0]["budget_ms"], 100);
    assert!(
        took < Duration::from_secs(5),
        "answered at the budget, not when the lock went: {took:?}"
    );
    // Only the timeout is recorded: on the repo, as the `policy.timeout` audit record.
    assert_eq!(app.count("SELECT count(*) FROM events").await, before + 1);
    let row = app
        .db
        .query_one(
            "SELECT aggregate_type, aggregate_id, event_type, metadata ->> 'command_type', payload
               FROM events ORDER BY global_position DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "repo");
    assert_eq!(row.get::<_, String>(1), "slow");
    assert_eq!(row.get::<_, String>(2), "PolicyTimedOut");
    assert_eq!(row.get::<_, String>(3), "policy.timeout");
    let payload: Value = row.get(4);
    assert_eq!(payload["PolicyTimedOut"]["item_id"], "pkg-1");
    assert_eq!(payload["PolicyTimedOut"]["action"], "publish");
    assert_eq!(events(&app, "artifact").await, 0, "no decision, no case");
    app.audit_caught_up().await;
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE event_type = 'PolicyTimedOut' AND aggregate_id = 'slow'").await,
        1
    );
    eventually(DEADLINE, || async {
        let r: Result<RepoSummary, _> = app
            .client
            .query(
                "repo",
                "get",
                &GetRepo {
                    repo: "slow".into(),
                },
            )
            .await;
        r.is_ok_and(|r| r.timeouts == 1)
    })
    .await
    .expect("the repo counts its timeout");
    assert_eq!(app.count("SELECT count(*) FROM decisions").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM quarantine_cases").await, 0);
    // With the store back, the same request decides.
    let reply = decide(&app, evaluate("slow", "pkg-1", Action::Publish, None))
        .await
        .unwrap();
    assert_eq!(reply.outcome.decision, Decision::Allow);
    app.stop().await;
}

#[tokio::test]
async fn a_case_is_released_or_rejected_once_by_an_approver_with_a_reason() {
    // svc holds its development role, `service`: not `approver`.
    let app = spawn_app_with_users().await;
    gate(&app).await;
    let dirty = || Some(attributes(0.9, "infected", 0));
    let first = decide(&app, evaluate("npm", "a", Action::Publish, dirty()))
        .await
        .unwrap();
    assert!(first.outcome.case_opened);
    // A second quarantine decision joins the open case.
    let second = decide(&app, evaluate("npm", "a", Action::Promote, dirty()))
        .await
        .unwrap();
    assert!(!second.outcome.case_opened);
    assert_eq!(second.outcome.case, Some(CaseStatus::Quarantined));
    let detail = case(&app, "npm", "a", &second).await;
    assert_eq!(
        (detail.case.status, detail.case.decisions),
        (CaseStatus::Quarantined, 2)
    );
    assert_eq!(detail.history.len(), 2);
    assert_eq!(
        detail.history[0].action,
        Action::Promote,
        "history newest first"
    );

    // Only an approver resolves it; svc (a service) is forbidden.
    let svc = app.client_as("svc").await;
    let cmd = ResolveCase {
        repo: "npm".into(),
        item_id: "a".into(),
        reason: "fine".into(),
    };
    match svc
        .command("quarantine", "release", &app.sender("svc"), cmd)
        .await
    {
        Err(ClientError::Rejected(r)) => assert_eq!(r.code, RejectionCode::Forbidden, "{r}"),
        other => panic!("svc released a case: {other:?}"),
    }
    let r = resolve(&app, "release", "alice", "npm", "a", " ")
        .await
        .unwrap_err();
    assert_eq!(
        (r.code, r.field.as_deref()),
        (RejectionCode::BadRequest, Some("command.reason"))
    );
    resolve(
        &app,
        "release",
        "alice",
        "npm",
        "a",
        "false positive, rescanned",
    )
    .await
    .unwrap();
    for again in ["release", "reject"] {
        let r = resolve(&app, again, "bob", "npm", "a", "again")
            .await
            .unwrap_err();
        assert_eq!(r.code, RejectionCode::InvalidState, "{r}");
        assert!(
            r.message.contains("already released") && r.message.contains("alice"),
            "{r}"
        );
        assert_eq!(r.details[0]["status"], "released");
        assert_eq!(r.details[0]["resolved_by"], "alice");
    }
    // A later quarantine decision is recorded but does not reopen the case.
    let later = decide(&app, evaluate("npm", "a", Action::Publish, dirty()))
        .await
        .unwrap();
    assert_eq!(later.outcome.case, Some(CaseStatus::Released));

    decide(&app, evaluate("npm", "b", Action::Publish, dirty()))
        .await
        .unwrap();
    resolve(&app, "reject", "alice", "npm", "b", "malware confirmed")
        .await
        .unwrap();
    let r = resolve(&app, "release", "bob", "npm", "b", "oops")
        .await
        .unwrap_err();
    assert!(
        r.message.contains("already rejected") && r.message.contains("alice"),
        "{r}"
    );
    let r = resolve(&app, "release", "alice", "npm", "nocase", "why")
        .await
        .unwrap_err();
    assert_eq!(r.code, RejectionCode::NotFound, "{r}");

    let last = decide(&app, evaluate("npm", "c", Action::Publish, dirty()))
        .await
        .unwrap();
    let wait = WaitFor::after(&last.recorded);
    let list = |status: Option<&str>| ListCases {
        repo: Some("npm".into()),
        status: status.map(Into::into),
        limit: Some(2),
        offset: None,
    };
    let page: CasePage = app
        .client
        .query_after("quarantine", "list", &list(None), &wait)
        .await
        .unwrap();
    assert_eq!((page.cases.len(), page.total), (2, 3));
    for (status, item) in [("quarantined", "c"), ("released", "a"), ("rejected", "b")] {
        let page: CasePage = app
            .client
            .query_after("quarantine", "list", &list(Some(status)), &wait)
            .await
            .unwrap();
        let items: Vec<_> = page.cases.iter().map(|c| c.item_id.as_str()).collect();
        assert_eq!(items, [item], "{status}");
    }
    match app
        .client
        .query::<_, CasePage>("quarantine", "list", &list(Some("open")))
        .await
    {
        Err(ClientError::Rejected(r)) => {
            assert_eq!(r.code, RejectionCode::BadRequest);
            assert!(r.message.contains("quarantined, released, rejected"), "{r}");
        }
        other => panic!("an unknown status was accepted: {other:?}"),
    }
    app.stop().await;
}

#[tokio::test]
async fn reads_are_refused_while_quarantined_or_rejected_and_allowed_after_release() {
    let app = spawn_app().await;
    gate(&app).await;
    let digest = |item: &str| Some(format!("sha256:{:0>16}", hex(item)));
    // Never decided: nothing blocks it.
    assert!(
        can_read(&app, "npm", Some("x"), None)
            .await
            .unwrap()
            .allowed
    );
    let reply = decide(
        &app,
        evaluate(
            "npm",
            "x",
            Action::Publish,
            Some(attributes(0.9, "infected", 0)),
        ),
    )
    .await
    .unwrap();
    // Blocked at once (the case is read from the event store, not a lagging read model).
    let r = can_read(&app, "npm", Some("x"), None).await.unwrap_err();
    assert_eq!(r.code, RejectionCode::QuarantinedBlob, "{r}");
    assert_eq!(r.details[0]["status"], "quarantined");
    // By digest, once the decision is projected.
    let q = CanRead {
        repo: "npm".into(),
        item_id: None,
        digest: digest("x"),
    };
    match app
        .client
        .query_after::<_, ReadAllowed>("artifact", "can_read", &q, &WaitFor::after(&reply.recorded))
        .await
    {
        Err(ClientError::Rejected(r)) => assert_eq!(r.code, RejectionCode::QuarantinedBlob),
        other => panic!("a quarantined digest was readable: {other:?}"),
    }
    // Another repo's item of the same id is not blocked.
    bind(&app, "pypi", "gate", None, true).await;
    assert!(
        can_read(&app, "pypi", Some("x"), None)
            .await
            .unwrap()
            .allowed
    );

    resolve(&app, "release", "alice", "npm", "x", "reviewed")
        .await
        .unwrap();
    let allowed = can_read(&app, "npm", Some("x"), None).await.unwrap();
    assert_eq!(
        (allowed.allowed, allowed.case),
        (true, Some(CaseStatus::Released))
    );
    let by_digest = can_read(&app, "npm", None, digest("x")).await.unwrap();
    assert_eq!(by_digest.item_ids, ["x"]);

    decide(
        &app,
        evaluate(
            "npm",
            "y",
            Action::Publish,
            Some(attributes(0.9, "infected", 0)),
        ),
    )
    .await
    .unwrap();
    resolve(&app, "reject", "alice", "npm", "y", "malware")
        .await
        .unwrap();
    let r = can_read(&app, "npm", Some("y"), None).await.unwrap_err();
    assert_eq!(r.code, RejectionCode::QuarantinedBlob);
    assert_eq!(r.details[0]["status"], "rejected");
    assert_eq!(r.details[0]["resolved_by"], "alice");
    let r = can_read(&app, "npm", Some("y"), digest("y"))
        .await
        .unwrap_err();
    assert_eq!(r.code, RejectionCode::BadRequest, "item and digest at once");
    app.stop().await;
}

#[tokio::test]
async fn a_promoted_version_that_allows_a_quarantined_item_releases_it_automatically() {
    let mut app = spawn_app().await;
    app.start_releaser();
    gate(&app).await;
    bind(&app, "manual", "gate", None, false).await;
    let suspicious = || Some(attributes(0.9, "suspicious", 0));
    decide(&app, evaluate("npm", "s", Action::Publish, suspicious()))
        .await
        .unwrap();
    decide(&app, evaluate("manual", "s", Action::Publish, suspicious()))
        .await
        .unwrap();
    // Still not clean under the lenient version: stays quarantined.
    decide(
        &app,
        evaluate(
            "npm",
            "i",
            Action::Publish,
            Some(attributes(0.9, "infected", 0)),
        ),
    )
    .await
    .unwrap();

    draft(&app, "gate", true).await;
    promote(&app, "gate", 2).await;
    eventually(DEADLINE, || async {
        can_read(&app, "npm", Some("s"), None).await.is_ok()
    })
    .await
    .expect("the case was released automatically");
    let row = app
        .db
        .query_one(
            "SELECT payload, metadata ->> 'actor' FROM events
              WHERE aggregate_id = 'npm:s' AND event_type = 'QuarantineReleased'",
            &[],
        )
        .await
        .unwrap();
    let released: Value = row.get(0);
    assert_eq!(row.get::<_, String>(1), "gatehouse");
    assert_eq!(released["QuarantineReleased"]["resolved_by"], "gatehouse");
    let reason = released["QuarantineReleased"]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("version 2"), "{reason}");
    // Auto-release off keeps the case for a person; an item the new version still
    // quarantines stays quarantined.
    assert_eq!(
        can_read(&app, "manual", Some("s"), None)
            .await
            .unwrap_err()
            .code,
        RejectionCode::QuarantinedBlob
    );
    assert_eq!(
        can_read(&app, "npm", Some("i"), None)
            .await
            .unwrap_err()
            .code,
        RejectionCode::QuarantinedBlob
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'QuarantineReleased'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn the_public_catalog_never_serves_an_item_with_an_open_or_rejected_case() {
    let mut app = spawn_app().await;
    app.start_worker();
    // Items m-000001..m-000030 of the shared fixture: m-000013 and m-000026 have an infected
    // scan (quarantine), m-000029 does not fit the schema.
    insert_items(&app, 30).await;
    gate_with(&app, false).await;
    let public = || async {
        let q = PublicCatalogQuery {
            policy_id: "gate".into(),
            after: None,
            limit: Some(1_000),
        };
        let page: PublicCatalogPage = app.client.query("catalog", "public", &q).await.unwrap();
        page.items
    };
    let ids = |items: &[gatehouse_events::catalog::PublicItem]| -> Vec<String> {
        items.iter().map(|i| i.item_id.clone()).collect()
    };
    let before = ids(&public().await);
    let (open, rejected, waived) = (item_id(5), item_id(15), item_id(13));
    assert!(before.contains(&open) && before.contains(&rejected));
    assert!(!before.contains(&waived), "quarantined by the version");
    // A publish decision quarantines two allowed items (their scan changed), and the catalog's
    // quarantined item (attributes from the catalog).
    let infected = || Some(attributes(0.9, "infected", 0));
    decide(&app, evaluate("npm", &open, Action::Publish, infected()))
        .await
        .unwrap();
    decide(
        &app,
        evaluate("npm", &rejected, Action::Publish, infected()),
    )
    .await
    .unwrap();
    let w = decide(&app, evaluate("npm", &waived, Action::Publish, None))
        .await
        .unwrap();
    assert_eq!(w.outcome.decision, Decision::Quarantine);
    resolve(&app, "reject", "alice", "npm", &rejected, "malware")
        .await
        .unwrap();
    resolve(&app, "release", "alice", "npm", &waived, "false positive")
        .await
        .unwrap();
    eventually(DEADLINE, || async {
        let items = public().await;
        let now = ids(&items);
        !now.contains(&open) && !now.contains(&rejected) && now.contains(&waived)
    })
    .await
    .expect("open and rejected cases held back, the released one served");
    let items = public().await;
    let served = items.iter().find(|i| i.item_id == waived).unwrap();
    let waiver = served.waiver.as_ref().expect("served as a waiver");
    assert_eq!(
        (waiver.repo.as_str(), waiver.released_by.as_str()),
        ("npm", "alice")
    );
    assert_eq!(waiver.reason, "false positive");
    assert!(items
        .iter()
        .filter(|i| i.item_id != waived)
        .all(|i| i.waiver.is_none()));
    assert_eq!(items.len(), before.len() - 2 + 1);
    app.stop().await;
}

#[tokio::test]
async fn the_demo_script_runs_against_a_running_system() {
    let mut app = spawn_app().await;
    app.start_worker();
    app.start_indexer(gatehouse::catalog::indexer::IndexerSettings::default());
    let me = std::env::current_exe().expect("the test binary");
    let bin = me
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("gatehouse");
    // At run time: a test binary reused from another checkout of the same target dir would
    // carry that checkout's compile-time path.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("../scripts/demo-quarantine.sh");
    let s = &app.settings;
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .env("GATEHOUSE_BIN", &bin)
        .env("DEMO_ID", "t")
        .env("NATS_URL", &s.nats_url)
        .env("DATABASE_URL", &s.database_url)
        .env("GATEHOUSE_NAMESPACE", &s.namespace)
        .output()
        .await
        .expect("run scripts/demo-quarantine.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.trim_end().ends_with("demo ok"), "{stdout}");
    assert!(stdout.contains("error [quarantined_blob]"), "{stdout}");
    app.stop().await;
}

/// Every row of the `quarantine` read model's tables, in a stable order.
async fn quarantine_model(app: &TestApp) -> Vec<(&'static str, Vec<Value>)> {
    let mut tables = Vec::new();
    for &table in gatehouse_projections::read_model("quarantine")
        .unwrap()
        .tables()
    {
        let sql = format!("SELECT to_jsonb(t) FROM {table} t ORDER BY to_jsonb(t)::text");
        let rows = app.db.query(sql.as_str(), &[]).await.unwrap();
        tables.push((table, rows.iter().map(|r| r.get(0)).collect()));
    }
    tables
}

#[tokio::test]
async fn the_quarantine_model_rebuilt_from_the_event_store_equals_the_live_one() {
    let app = spawn_app().await;
    gate(&app).await;
    bind(&app, "slow", "gate", Some(2_000), false).await;
    for (item, scan) in [("a", "clean"), ("b", "infected"), ("c", "suspicious")] {
        decide(
            &app,
            evaluate("npm", item, Action::Publish, Some(attributes(0.9, scan, 0))),
        )
        .await
        .unwrap();
    }
    decide(
        &app,
        evaluate(
            "npm",
            "b",
            Action::Promote,
            Some(attributes(0.9, "infected", 0)),
        ),
    )
    .await
    .unwrap();
    resolve(&app, "release", "alice", "npm", "b", "ok")
        .await
        .unwrap();
    resolve(&app, "reject", "alice", "npm", "c", "no")
        .await
        .unwrap();
    let artifacts = "SELECT count(*) FROM events WHERE aggregate_type IN ('repo', 'artifact')";
    let stored = app.count(artifacts).await;
    eventually(DEADLINE, || async {
        app.count("SELECT coalesce(sum(last_sequence), 0)::bigint FROM repos")
            .await
            + app
                .count("SELECT coalesce(sum(last_sequence), 0)::bigint FROM artifacts")
                .await
            == stored
    })
    .await
    .expect("the quarantine model caught up");
    let live = quarantine_model(&app).await;
    assert_eq!(live[2].1.len(), 4, "four decisions");
    let pool = gatehouse::db::pool(&app.settings.database_url, 2).unwrap();
    let model = gatehouse_projections::read_model("quarantine").unwrap();
    gatehouse_projections::rebuild(model.as_ref(), &pool, 3)
        .await
        .unwrap();
    assert_eq!(quarantine_model(&app).await, live);
    app.stop().await;
}

#[tokio::test]
async fn a_rule_slower_than_the_budget_fails_closed_and_records_only_the_timeout() {
    let app = spawn_app().await;
    let create: CreatePolicy = serde_json::from_value(json!({
        "policy_id": "heavy", "name": "Heavy", "attributes": {"tags": "list<string>"}
    }))
    .unwrap();
    app.client
        .command("policy", "create", &app.sender("alice"), create)
        .await
        .unwrap();
    let draft = DraftVersion {
        policy_id: "heavy".into(),
        rules: serde_json::from_value(json!({
            "rules": [{"id": "pairs", "condition": "tags.all(t, tags.all(u, t + u != \"x\"))",
                       "decision": "deny", "reason": "every pair checked"}],
            "default_decision": "allow", "score": "1.0"
        }))
        .unwrap(),
        notes: "quadratic on purpose".into(),
    };
    app.client
        .command("policy", "draft", &app.sender("bob"), draft)
        .await
        .unwrap();
    promote(&app, "heavy", 1).await;
    bind(&app, "npm", "heavy", Some(50), true).await;
    let before = app.count("SELECT count(*) FROM events").await;
    let tags: Vec<String> = (0..1_000).map(|i| format!("t{i}")).collect();
    let Value::Object(attrs) = json!({"tags": tags}) else {
        unreachable!()
    };
    let started = std::time::Instant::now();
    let r = decide(&app, evaluate("npm", "big", Action::Publish, Some(attrs)))
        .await
        .unwrap_err();
    assert_eq!(r.code, RejectionCode::PolicyTimeout, "{r}");
    assert_eq!(r.details[0]["budget_ms"], 50);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, before + 1);
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'PolicyTimedOut'")
            .await,
        1
    );
    assert_eq!(events(&app, "artifact").await, 0);
    app.stop().await;
}
