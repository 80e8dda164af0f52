//! Commands over NATS: exactly-once effects, idempotency, conflicts and bad input.

use gatehouse::client::ClientError;
use gatehouse_events::envelope::{CommandAccepted, RejectionCode};
use gatehouse_events::subjects;
use serde_json::json;

use crate::fixtures::{create_policy, draft};
use crate::helpers::spawn_app;

#[tokio::test]
async fn a_command_produces_one_event_one_stream_message_and_one_audit_row() {
    let app = spawn_app().await;
    let done = app
        .client
        .command(
            "policy",
            "create",
            &app.sender("alice"),
            create_policy("media"),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            done.aggregate.as_str(),
            done.aggregate_id.as_str(),
            done.sequence
        ),
        ("policy", "media", 1)
    );
    assert!(!done.duplicate);
    app.audit_caught_up().await;
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM audit_log").await, 1);
    assert_eq!(app.stream_messages().await, 1);
    let actor: String = app
        .db
        .query_one("SELECT actor FROM audit_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(actor, "alice");
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_command_id_returns_the_original_reply_and_records_nothing() {
    let app = spawn_app().await;
    let sender = app.sender("alice");
    app.client
        .command(
            "policy",
            "create",
            &app.sender("alice"),
            create_policy("media"),
        )
        .await
        .unwrap();
    let first = app
        .client
        .command("policy", "draft", &sender, draft("media", 0.4, "v1"))
        .await
        .unwrap();
    let again = app
        .client
        .command("policy", "draft", &sender, draft("media", 0.4, "v1"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.sequence, &again.detail),
        (first.sequence, &first.detail)
    );
    assert_eq!(again.events, first.events);
    assert_eq!(app.count("SELECT count(*) FROM events").await, 2);
    // A create repeated after it succeeded is answered from the log too, not `already_exists`.
    let create_sender = app.sender("alice");
    app.client
        .command("policy", "create", &create_sender, create_policy("other"))
        .await
        .unwrap();
    let repeated = app
        .client
        .command("policy", "create", &create_sender, create_policy("other"))
        .await
        .unwrap();
    assert!(repeated.duplicate);
    app.audit_caught_up().await;
    assert_eq!(app.count("SELECT count(*) FROM audit_log").await, 3);
    assert_eq!(app.stream_messages().await, 3);
    app.stop().await;
}

#[tokio::test]
async fn a_command_id_reused_for_a_different_request_is_an_idempotency_conflict() {
    let app = spawn_app().await;
    let sender = app.sender("alice");
    app.client
        .command(
            "policy",
            "create",
            &app.sender("alice"),
            create_policy("media"),
        )
        .await
        .unwrap();
    app.client
        .command("policy", "draft", &sender, draft("media", 0.4, "v1"))
        .await
        .unwrap();
    let err = app
        .client
        .command("policy", "draft", &sender, draft("media", 0.5, "v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Rejected(r) if r.code == RejectionCode::IdempotencyConflict),
        "{err:?}"
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_drafts_leave_a_gap_free_history() {
    let app = spawn_app().await;
    app.client
        .command(
            "policy",
            "create",
            &app.sender("alice"),
            create_policy("media"),
        )
        .await
        .unwrap();
    let drafts = (0..8).map(|i| {
        let client = app.client.clone();
        let sender = app.sender("bob");
        async move {
            client
                .command(
                    "policy",
                    "draft",
                    &sender,
                    draft("media", 0.1 + i as f64 / 100.0, "race"),
                )
                .await
        }
    });
    let results: Vec<Result<CommandAccepted, ClientError>> =
        futures::future::join_all(drafts).await;
    let mut versions: Vec<u64> = results
        .into_iter()
        .map(|r| r.unwrap().detail["version"].as_u64().unwrap())
        .collect();
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
    let seqs: Vec<i64> = app
        .db
        .query(
            "SELECT sequence FROM events WHERE aggregate_id = 'media' ORDER BY sequence",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<i64>>());
    app.stop().await;
}

#[tokio::test]
async fn concurrent_creates_of_one_policy_have_exactly_one_winner() {
    let app = spawn_app().await;
    let creates = (0..4).map(|_| {
        let client = app.client.clone();
        let sender = app.sender("alice");
        async move {
            client
                .command("policy", "create", &sender, create_policy("media"))
                .await
        }
    });
    let results = futures::future::join_all(creates).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let lost = results
        .iter()
        .filter(|r| matches!(r, Err(ClientError::Rejected(e)) if e.code == RejectionCode::AlreadyExists))
        .count();
    assert_eq!((won, lost), (1, 3), "{results:?}");
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_retries_of_one_command_record_it_once() {
    let app = spawn_app().await;
    app.client
        .command(
            "policy",
            "create",
            &app.sender("alice"),
            create_policy("media"),
        )
        .await
        .unwrap();
    let sender = app.sender("bob");
    let retries = (0..6).map(|_| {
        let (client, sender) = (app.client.clone(), sender.clone());
        async move {
            client
                .command("policy", "draft", &sender, draft("media", 0.4, "once"))
                .await
        }
    });
    let results = futures::future::join_all(retries).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(d) if d.sequence == 2)),
        "{results:?}"
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 2);
    app.stop().await;
}

/// Sends raw bytes as a command; returns the rejection code and field.
async fn rejected(
    app: &crate::helpers::TestApp,
    command: &str,
    body: Vec<u8>,
) -> (RejectionCode, Option<String>) {
    let subject = subjects::command(&app.settings.namespace, "policy", command);
    match app
        .client
        .send_raw::<serde_json::Value>(&subject, body)
        .await
    {
        Err(ClientError::Rejected(r)) => (r.code, r.field),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn request(command: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"command_id": uuid::Uuid::new_v4().to_string(), "actor": "eve", "command": command}))
        .unwrap()
}

#[tokio::test]
async fn every_bad_input_gets_its_code_and_persists_nothing() {
    let app = spawn_app().await;
    app.client
        .command(
            "policy",
            "create",
            &app.sender("alice"),
            create_policy("media"),
        )
        .await
        .unwrap();
    let good_rules = crate::fixtures::rules(0.4);
    let cases: Vec<(&str, Vec<u8>, RejectionCode, Option<&str>)> = vec![
        (
            "draft",
            b"{not json".to_vec(),
            RejectionCode::BadRequest,
            None,
        ),
        ("draft", b"".to_vec(), RejectionCode::BadRequest, None),
        (
            "draft",
            request(json!({"policy_id": "media", "rules": good_rules, "notes": "x", "colour": 1})),
            RejectionCode::BadRequest,
            Some("command.colour"),
        ),
        (
            "draft",
            request(json!({"policy_id": "media", "notes": "x"})),
            RejectionCode::BadRequest,
            Some("command.rules"),
        ),
        (
            "draft",
            request(json!({"policy_id": "media", "rules": good_rules})),
            RejectionCode::BadRequest,
            Some("command.notes"),
        ),
        (
            "draft",
            serde_json::to_vec(&json!({"actor": "eve", "command": {}})).unwrap(),
            RejectionCode::BadRequest,
            Some("command_id"),
        ),
        (
            "draft",
            serde_json::to_vec(&json!({"command_id": "c-no-actor", "command": {}})).unwrap(),
            RejectionCode::BadRequest,
            Some("actor"),
        ),
        (
            "draft",
            serde_json::to_vec(&json!({"command_id": "c-no-command", "actor": "eve"})).unwrap(),
            RejectionCode::BadRequest,
            Some("command"),
        ),
        (
            "draft",
            serde_json::to_vec(&json!({"command_id": "", "actor": "eve", "command": {}})).unwrap(),
            RejectionCode::BadRequest,
            Some("command_id"),
        ),
        (
            "draft",
            request(json!({"policy_id": "media", "rules": good_rules, "notes": "x".repeat(5000)})),
            RejectionCode::BadRequest,
            Some("command.notes"),
        ),
        (
            "draft",
            vec![b' '; 300 * 1024],
            RejectionCode::BadRequest,
            None,
        ),
        (
            "create",
            request(json!({"policy_id": "Bad Id", "name": "x", "attributes": {}})),
            RejectionCode::BadRequest,
            Some("command.policy_id"),
        ),
        (
            "create",
            request(json!({"policy_id": "media", "name": "x", "attributes": {}})),
            RejectionCode::AlreadyExists,
            Some("command.policy_id"),
        ),
        (
            "draft",
            request(json!({"policy_id": "nope", "rules": good_rules, "notes": "x"})),
            RejectionCode::NotFound,
            Some("command.policy_id"),
        ),
        (
            "draft",
            request(
                json!({"policy_id": "media", "notes": "x", "rules": {"rules": [{"id": "r", "condition": "quality <", "decision": "deny", "reason": "r"}], "default_decision": "allow", "score": "1.0"}}),
            ),
            RejectionCode::InvalidRules,
            Some("command.rules.rules[0].condition"),
        ),
        (
            "draft",
            request(
                json!({"policy_id": "media", "notes": "x", "rules": {"rules": [{"id": "r", "condition": "colour == 'red'", "decision": "deny", "reason": "r"}], "default_decision": "allow", "score": "1.0"}}),
            ),
            RejectionCode::InvalidRules,
            Some("command.rules.rules[0].condition"),
        ),
        (
            "restore",
            request(json!({"policy_id": "media", "version": 9})),
            RejectionCode::VersionNotFound,
            Some("command.version"),
        ),
    ];
    for (command, body, code, field) in cases {
        let (got_code, got_field) = rejected(&app, command, body).await;
        assert_eq!((got_code, got_field.as_deref()), (code, field), "{command}");
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM command_log").await, 1);
    // The gateway keeps serving.
    app.client
        .command(
            "policy",
            "draft",
            &app.sender("alice"),
            draft("media", 0.4, "after"),
        )
        .await
        .unwrap();
    app.stop().await;
}

/// Postgres cannot store U+0000: a request holding one is the sender's error, never an outage
/// (`unavailable` would have a conforming client retry it forever).
#[tokio::test]
async fn a_nul_character_anywhere_in_a_command_is_a_bad_request_naming_the_field() {
    let app = spawn_app().await;
    app.policy_with_versions("media", &[0.4]).await;
    let mut nul_reason = crate::fixtures::rules(0.4);
    nul_reason["rules"][0]["reason"] = json!("low\u{0}");
    let cases = [
        (
            "draft",
            json!({"policy_id": "media", "rules": crate::fixtures::rules(0.5), "notes": "a\u{0}b"}),
            "command.notes",
        ),
        (
            "draft",
            json!({"policy_id": "media", "rules": nul_reason, "notes": "x"}),
            "command.rules.rules[0].reason",
        ),
        (
            "create",
            json!({"policy_id": "other", "name": "\u{0}", "attributes": {}}),
            "command.name",
        ),
        (
            "create",
            json!({"policy_id": "other", "name": "n", "description": "d\u{0}", "attributes": {}}),
            "command.description",
        ),
        (
            "complete_run",
            json!({"run_id": "media\u{0}:1", "epoch": 1}),
            "command.run_id",
        ),
        (
            "fail_run",
            json!({"run_id": "media:1", "epoch": 1, "reason": "\u{0}"}),
            "command.reason",
        ),
        (
            "promote",
            json!({"run_id": "media:1\u{0}"}),
            "command.run_id",
        ),
    ];
    let events = app.count("SELECT count(*) FROM events").await;
    for (command, body, field) in cases {
        let (code, got) = rejected(&app, command, request(body)).await;
        assert_eq!(
            (code, got.as_deref()),
            (RejectionCode::BadRequest, Some(field)),
            "{command}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, events);
    app.stop().await;
}

/// The request hash the gateway stored before it was versioned: SHA-256 of the subject, a
/// newline and the canonical command JSON, in lowercase hex.
fn legacy_request_hash(subject: &str, command: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(subject.as_bytes());
    hasher.update(b"\n");
    hasher.update(serde_json::to_vec(command).unwrap());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_command_logged_with_the_legacy_request_hash_is_still_recognised() {
    let app = spawn_app().await;
    let sender = app.sender("alice");
    let create = create_policy("media");
    let first = app
        .client
        .command("policy", "create", &sender, create.clone())
        .await
        .unwrap();
    let stored: String = app
        .db
        .query_one("SELECT request_hash FROM command_log", &[])
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("v2:"), "{stored}");
    // A row written by a gateway from before the versioned hash.
    let subject = subjects::command(&app.settings.namespace, "policy", "create");
    let legacy = legacy_request_hash(&subject, &serde_json::to_value(&create).unwrap());
    app.db
        .execute("UPDATE command_log SET request_hash = $1", &[&legacy])
        .await
        .unwrap();

    let again = app
        .client
        .command("policy", "create", &sender, create.clone())
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    let mut changed = create;
    changed.name = "Another name".into();
    match app
        .client
        .command("policy", "create", &sender, changed)
        .await
    {
        Err(ClientError::Rejected(r)) => assert_eq!(r.code, RejectionCode::IdempotencyConflict),
        other => panic!("expected idempotency_conflict, got {other:?}"),
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn the_gateway_is_discoverable_through_the_services_api() {
    let app = spawn_app().await;
    // Every gateway of every running test answers INFO: gather replies and find ours.
    let nats = app.client.nats();
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await.unwrap();
    nats.publish_with_reply("$SRV.INFO.gatehouse", inbox, "".into())
        .await
        .unwrap();
    let draft = subjects::command(&app.settings.namespace, "policy", "draft");
    let found = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(reply) = futures::StreamExt::next(&mut replies).await {
            let info: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
            assert_eq!(info["name"], "gatehouse");
            let ours = info["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["subject"] == draft.as_str());
            if ours {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true));
    app.stop().await;
}
