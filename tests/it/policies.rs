//! Versioned policies end to end: create, draft, restore, history, diff, audit and replay.

use std::time::Duration;

use gatehouse::client::ClientError;
use gatehouse_events::audit::{AuditEntry, AuditLogQuery, Replay, ReplayQuery};
use gatehouse_events::envelope::RejectionCode;
use gatehouse_events::policy::{
    DiffVersions, GetPolicy, GetVersion, ListVersions, PolicyDiff, PolicySummary, PolicyVersion,
    RestoreVersion, RuleChange, VersionSummary,
};

use crate::fixtures::{create_policy, draft};
use crate::helpers::{eventually, spawn_app, TestApp};

async fn summary(app: &TestApp, id: &str) -> Result<PolicySummary, ClientError> {
    app.client
        .query(
            "policy",
            "get",
            &GetPolicy {
                policy_id: id.into(),
            },
        )
        .await
}

/// Waits until the policy read model reflects `sequence`.
async fn caught_up(app: &TestApp, id: &str, sequence: u64) {
    eventually(Duration::from_secs(20), || async {
        summary(app, id).await.is_ok_and(|p| p.sequence >= sequence)
    })
    .await
    .expect("policy read model caught up");
}

#[tokio::test]
async fn versions_history_diff_and_restore_work_end_to_end() {
    let app = spawn_app().await;
    let c = &app.client;
    c.command(
        "policy",
        "create",
        &app.sender("alice"),
        create_policy("media"),
    )
    .await
    .unwrap();
    c.command(
        "policy",
        "draft",
        &app.sender("bob"),
        draft("media", 0.4, "first"),
    )
    .await
    .unwrap();
    c.command(
        "policy",
        "draft",
        &app.sender("carol"),
        draft("media", 0.6, "stricter"),
    )
    .await
    .unwrap();
    let restore = RestoreVersion {
        policy_id: "media".into(),
        version: 1,
        notes: "too strict".into(),
    };
    let restored = c
        .command("policy", "restore", &app.sender("bob"), restore.clone())
        .await
        .unwrap();
    assert_eq!(restored.detail["version"], 3);
    caught_up(&app, "media", 4).await;

    let p = summary(&app, "media").await.unwrap();
    assert_eq!((p.latest_version, p.active_version), (3, None));

    let versions: Vec<VersionSummary> = c
        .query(
            "policy",
            "versions",
            &ListVersions {
                policy_id: "media".into(),
                limit: None,
                offset: None,
            },
        )
        .await
        .unwrap();
    let listed: Vec<(u32, &str, Option<u32>)> = versions
        .iter()
        .map(|v| (v.version, v.author.as_str(), v.restored_from))
        .collect();
    assert_eq!(
        listed,
        vec![(3, "bob", Some(1)), (2, "carol", None), (1, "bob", None)]
    );
    assert_eq!(versions[0].rules_hash, versions[2].rules_hash);

    let v2: PolicyVersion = c
        .query(
            "policy",
            "version",
            &GetVersion {
                policy_id: "media".into(),
                version: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(v2.rules.rules[1].condition, "quality < 0.6");

    let diff: PolicyDiff = c
        .query(
            "policy",
            "diff",
            &DiffVersions {
                policy_id: "media".into(),
                from: 1,
                to: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(diff.rules.len(), 1);
    assert!(
        matches!(&diff.rules[0], RuleChange::Modified { id, condition: Some(_), .. } if id == "low-quality")
    );
    assert_eq!(diff.unchanged, vec!["scan".to_owned(), "banned".to_owned()]);

    // Restoring version 1 again is identical to the latest (3): rejected, nothing recorded.
    let again = c
        .command("policy", "restore", &app.sender("bob"), restore)
        .await
        .unwrap_err();
    assert!(matches!(again, ClientError::Rejected(r) if r.code == RejectionCode::Unchanged));
    assert_eq!(app.count("SELECT count(*) FROM events").await, 4);
    app.stop().await;
}

#[tokio::test]
async fn queries_name_what_is_missing() {
    let app = spawn_app().await;
    let err = summary(&app, "ghost").await.unwrap_err();
    assert!(matches!(err, ClientError::Rejected(r) if r.code == RejectionCode::NotFound));
    app.client
        .command(
            "policy",
            "create",
            &app.sender("alice"),
            create_policy("media"),
        )
        .await
        .unwrap();
    caught_up(&app, "media", 1).await;
    let q = DiffVersions {
        policy_id: "media".into(),
        from: 1,
        to: 2,
    };
    let err = app
        .client
        .query::<_, PolicyDiff>("policy", "diff", &q)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Rejected(r) if r.code == RejectionCode::VersionNotFound && r.field.as_deref() == Some("from"))
    );
    app.stop().await;
}

#[tokio::test]
async fn the_audit_log_filters_and_replay_answers_as_of_a_time() {
    let app = spawn_app().await;
    let c = &app.client;
    c.command(
        "policy",
        "create",
        &app.sender("alice"),
        create_policy("media"),
    )
    .await
    .unwrap();
    c.command(
        "policy",
        "draft",
        &app.sender("bob"),
        draft("media", 0.4, "first"),
    )
    .await
    .unwrap();
    app.audit_caught_up().await;
    let cut: chrono::DateTime<chrono::Utc> = app
        .db
        .query_one("SELECT max(recorded_at) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    eventually(Duration::from_secs(5), || async {
        let now: chrono::DateTime<chrono::Utc> =
            app.db.query_one("SELECT now()", &[]).await.unwrap().get(0);
        now > cut
    })
    .await
    .unwrap();
    c.command(
        "policy",
        "draft",
        &app.sender("bob"),
        draft("media", 0.6, "second"),
    )
    .await
    .unwrap();
    app.audit_caught_up().await;

    let by_bob: Vec<AuditEntry> = c
        .query(
            "audit",
            "log",
            &AuditLogQuery {
                actor: Some("bob".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_bob.len(), 2);
    assert!(by_bob
        .iter()
        .all(|e| e.event_type == "PolicyVersionDrafted" && !e.command_id.is_empty()));
    let created: Vec<AuditEntry> = c
        .query(
            "audit",
            "log",
            &AuditLogQuery {
                event_type: Some("PolicyCreated".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].correlation_id, created[0].command_id);
    let until_cut: Vec<AuditEntry> = c
        .query(
            "audit",
            "log",
            &AuditLogQuery {
                until: Some(cut + chrono::Duration::microseconds(1)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(until_cut.len(), 2);

    let full: Replay = c
        .query(
            "audit",
            "replay",
            &ReplayQuery {
                aggregate: "policy".into(),
                aggregate_id: "media".into(),
                as_of: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(full.events.len(), 3);
    assert_eq!(full.state["latest_version"], 2);
    let then: Replay = c
        .query(
            "audit",
            "replay",
            &ReplayQuery {
                aggregate: "policy".into(),
                aggregate_id: "media".into(),
                as_of: Some(cut),
            },
        )
        .await
        .unwrap();
    assert_eq!(then.events.len(), 2);
    assert_eq!(then.state["latest_version"], 1);
    app.stop().await;
}

/// Read-your-writes: a query that names the sequence a command reply carried answers from a
/// read model that reflects it, waiting (bounded) for the projector.
#[tokio::test]
async fn a_query_waits_for_the_sequence_of_a_command_it_names() {
    let mut app = spawn_app().await;
    app.policy_with_versions("media", &[0.4]).await;
    // With the projector stopped, the read model cannot catch up on its own.
    app.projector.take().unwrap().stop().await;
    let done = app
        .client
        .command(
            "policy",
            "draft",
            &app.sender("bob"),
            draft("media", 0.5, "v2"),
        )
        .await
        .unwrap();
    let query = |timeout_ms: u64| {
        serde_json::json!({"policy_id": "media", "wait_for": {
            "aggregate": "policy", "aggregate_id": "media", "sequence": done.sequence,
            "timeout_ms": timeout_ms}})
    };
    let behind = app
        .client
        .query::<_, Vec<VersionSummary>>("policy", "versions", &query(200))
        .await;
    match behind {
        Err(ClientError::Rejected(r)) => assert_eq!(r.code, RejectionCode::NotCaughtUp),
        other => panic!("expected not_caught_up, got {other:?}"),
    }

    let waiting = {
        let client = app.client.clone();
        let query = query(20_000);
        tokio::spawn(async move {
            client
                .query::<_, Vec<VersionSummary>>("policy", "versions", &query)
                .await
        })
    };
    app.start_projector();
    let versions = waiting
        .await
        .unwrap()
        .expect("the versions, once caught up");
    assert_eq!(versions[0].version, 2);
    app.stop().await;
}

/// What the CLI does after a command: `Client::wait_for` returns once queries show it.
#[tokio::test]
async fn the_client_waits_until_queries_show_its_command() {
    let mut app = spawn_app().await;
    app.policy_with_versions("media", &[0.4]).await;
    app.projector.take().unwrap().stop().await;
    let done = app
        .client
        .command(
            "policy",
            "draft",
            &app.sender("bob"),
            draft("media", 0.5, "v2"),
        )
        .await
        .unwrap();
    let waiting = {
        let (client, done) = (app.client.clone(), done.clone());
        tokio::spawn(async move { client.wait_for(&done).await })
    };
    app.start_projector();
    waiting.await.unwrap().expect("queries show the draft");
    let q = ListVersions {
        policy_id: "media".into(),
        limit: None,
        offset: None,
    };
    let versions: Vec<VersionSummary> = app.client.query("policy", "versions", &q).await.unwrap();
    assert_eq!(versions[0].version, 2);
    let wait = gatehouse_events::envelope::WaitFor::after(&done);
    let typed: Vec<VersionSummary> = app
        .client
        .query_after("policy", "versions", &q, &wait)
        .await
        .unwrap();
    assert_eq!(typed, versions);
    app.stop().await;
}
