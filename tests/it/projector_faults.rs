//! The projectors facing events that are not plain, in-order contract events — poison, a
//! message that is no event at all, an event ahead of its aggregate, a type the model does not
//! read — and a rebuild racing live writes.
//!
//! Events the gateway would never write go straight into the test database's `events` table:
//! its trigger copies them to the outbox and the real relay publishes them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use gatehouse_events::policy::{self, PolicyCreated, PolicyEvent, PolicyVersionDrafted};
use gatehouse_events::{metadata, subjects};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::fixtures::{create_policy, draft, rules};
use crate::helpers::{eventually, spawn_app, TestApp};

const DEADLINE: Duration = Duration::from_secs(30);

/// Stores a `policy` event as the command side would, bypassing the aggregate.
async fn store(app: &TestApp, policy_id: &str, sequence: i64, event_type: &str, payload: Value) {
    let meta = json!({
        metadata::ACTOR: "alice",
        metadata::CORRELATION_ID: format!("c-{policy_id}-{sequence}"),
    });
    app.db
        .execute(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                 payload, metadata)
             VALUES ($1, $2, $3, $4, '1.0', $5, $6)",
            &[
                &policy::AGGREGATE,
                &policy_id,
                &sequence,
                &event_type,
                &payload,
                &meta,
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("store {policy_id}:{sequence}: {e}"));
}

fn created(policy_id: &str) -> Value {
    serde_json::to_value(PolicyEvent::PolicyCreated(PolicyCreated {
        policy_id: policy_id.into(),
        name: format!("Policy {policy_id}"),
        description: "stored by the test".into(),
        attributes: create_policy(policy_id).attributes,
        created_by: "alice".into(),
        created_at: Utc::now(),
        require_second_approver: false,
    }))
    .unwrap()
}

fn drafted(version: u32) -> Value {
    serde_json::to_value(PolicyEvent::PolicyVersionDrafted(PolicyVersionDrafted {
        version,
        rules: serde_json::from_value(rules(0.5)).unwrap(),
        notes: format!("v{version}"),
        author: "bob".into(),
        restored_from: None,
        rules_hash: format!("h{version}"),
        drafted_at: Utc::now(),
    }))
    .unwrap()
}

fn jetstream(app: &TestApp) -> async_nats::jetstream::Context {
    gatehouse::broker::jetstream(app.client.nats())
}

/// Every dead letter of the app's namespace, in stream order: its subject and its reason.
async fn dead_letters(app: &TestApp) -> Vec<(String, String)> {
    let name = subjects::dead_letter_stream(&app.settings.namespace);
    let Ok(stream) = jetstream(app).get_stream(&name).await else {
        return Vec::new();
    };
    let state = stream
        .get_info()
        .await
        .expect("dead-letter stream info")
        .state;
    if state.messages == 0 {
        return Vec::new();
    }
    let mut letters = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        let letter = stream.get_raw_message(seq).await.expect("a dead letter");
        let reason = letter
            .headers
            .get(metadata::HEADER_DLQ_REASON)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        letters.push((letter.subject.to_string(), reason));
    }
    letters
}

/// The subject `model`'s projector dead-letters on.
fn dead_letter_subject(app: &TestApp, model: &str) -> String {
    let ns = &app.settings.namespace;
    subjects::dead_letter(ns, &subjects::projector_consumer(ns, model))
}

async fn wait_for_dead_letters(app: &TestApp, count: usize) -> Vec<(String, String)> {
    eventually(DEADLINE, || async {
        dead_letters(app).await.len() >= count
    })
    .await
    .unwrap_or_else(|_| panic!("expected {count} dead letters"));
    dead_letters(app).await
}

/// `(last_sequence, latest_version, active_version)` of a policy row, if it exists.
async fn policy_row(app: &TestApp, policy_id: &str) -> Option<(i64, i32, Option<i32>)> {
    app.db
        .query_opt(
            "SELECT last_sequence, latest_version, active_version FROM policies WHERE policy_id = $1",
            &[&policy_id],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

async fn wait_for_sequence(app: &TestApp, policy_id: &str, sequence: i64) {
    eventually(DEADLINE, || async {
        policy_row(app, policy_id).await.map(|r| r.0) == Some(sequence)
    })
    .await
    .unwrap_or_else(|_| panic!("{policy_id} never reached sequence {sequence}"));
}

/// Every row of the tables of `models`, as JSON, in a stable order.
async fn read_models(app: &TestApp, models: &[&str]) -> Vec<(&'static str, Vec<Value>)> {
    let mut tables = Vec::new();
    for &model in models {
        for &table in gatehouse_projections::read_model(model).unwrap().tables() {
            let sql = format!("SELECT to_jsonb(t) FROM {table} t ORDER BY to_jsonb(t)::text");
            let rows = app.db.query(sql.as_str(), &[]).await.unwrap();
            tables.push((table, rows.iter().map(|r| r.get(0)).collect()));
        }
    }
    tables
}

async fn rebuild(app: &TestApp, model: &str, batch: usize) -> gatehouse_projections::RebuildReport {
    let pool = gatehouse::db::pool(&app.settings.database_url, 2).unwrap();
    let model = gatehouse_projections::read_model(model).unwrap();
    gatehouse_projections::rebuild(model.as_ref(), &pool, batch)
        .await
        .unwrap()
}

/// Waits until the policies model holds every stored `policy` event.
async fn policies_caught_up(app: &TestApp) {
    eventually(DEADLINE, || async {
        let stored = app
            .count("SELECT count(*) FROM events WHERE aggregate_type = 'policy'")
            .await;
        stored
            == app
                .count("SELECT coalesce(sum(last_sequence), 0)::bigint FROM policies")
                .await
    })
    .await
    .expect("the policies read model did not catch up");
}

#[tokio::test]
async fn a_rebuild_under_concurrent_writes_equals_the_live_model() {
    let mut app = spawn_app().await;
    let ids: Vec<String> = (0..8).map(|i| format!("load-{i}")).collect();
    for id in &ids {
        app.client
            .command("policy", "create", &app.sender("alice"), create_policy(id))
            .await
            .unwrap();
    }
    let drafts = AtomicUsize::new(0);
    let rebuilt = CancellationToken::new();
    // Drafts round-robin from before the rebuilds start until after both have swapped.
    let writer = async {
        while !rebuilt.is_cancelled() {
            let n = drafts.load(Ordering::SeqCst);
            let d = draft(&ids[n % ids.len()], 0.001 * n as f64, &format!("d{n}"));
            app.client
                .command("policy", "draft", &app.sender("bob"), d)
                .await
                .unwrap();
            drafts.fetch_add(1, Ordering::SeqCst);
        }
    };
    let rebuilds = async {
        eventually(DEADLINE, || async {
            drafts.load(Ordering::SeqCst) >= ids.len()
        })
        .await
        .expect("the writer got going");
        rebuild(&app, "audit", 20).await;
        rebuild(&app, "policies", 20).await;
        rebuilt.cancel();
    };
    tokio::join!(writer, rebuilds);
    // The live projector goes on writing to the swapped-in tables.
    app.client
        .command(
            "policy",
            "draft",
            &app.sender("bob"),
            draft(&ids[0], 0.9, "after the rebuilds"),
        )
        .await
        .unwrap();
    let drafts = drafts.load(Ordering::SeqCst) as i64 + 1;
    app.audit_caught_up().await;
    policies_caught_up(&app).await;
    assert_eq!(
        app.count("SELECT count(*) FROM policy_versions").await,
        drafts
    );

    let live = read_models(&app, &["audit", "policies"]).await;
    let projector = app.projector.take().unwrap();
    projector.stop.cancel();
    projector.task.await.unwrap();
    rebuild(&app, "audit", 64).await;
    rebuild(&app, "policies", 64).await;
    assert_eq!(read_models(&app, &["audit", "policies"]).await, live);
    app.stop().await;
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_with_its_reason_and_later_events_still_apply() {
    let app = spawn_app().await;
    store(
        &app,
        "broken",
        1,
        "PolicyCreated",
        json!({"PolicyCreated": {"bogus": 1}}),
    )
    .await;
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
        .command(
            "policy",
            "draft",
            &app.sender("bob"),
            draft("media", 0.4, "v1"),
        )
        .await
        .unwrap();

    wait_for_sequence(&app, "media", 2).await;
    let letters = wait_for_dead_letters(&app, 1).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let (subject, reason) = &letters[0];
    assert_eq!(subject, &dead_letter_subject(&app, "policies"));
    assert!(reason.contains("undecodable PolicyCreated"), "{reason}");
    assert_eq!(policy_row(&app, "broken").await, None);
    assert_eq!(policy_row(&app, "media").await, Some((2, 1, None)));
    app.stop().await;
}

#[tokio::test]
async fn a_message_that_is_not_an_event_record_is_dead_lettered_by_every_projector() {
    let app = spawn_app().await;
    let subject = subjects::event(
        &app.settings.namespace,
        policy::AGGREGATE,
        "ghost",
        "PolicyCreated",
    );
    jetstream(&app)
        .publish(subject, "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let mut letters = wait_for_dead_letters(&app, 2).await;
    letters.sort();
    let subjects: Vec<_> = letters.iter().map(|(s, _)| s.clone()).collect();
    let mut expected = vec![
        dead_letter_subject(&app, "audit"),
        dead_letter_subject(&app, "policies"),
    ];
    expected.sort();
    assert_eq!(subjects, expected);
    for (_, reason) in &letters {
        assert!(reason.contains("undecodable event record"), "{reason}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_event_after_a_dead_lettered_one_is_retried_without_limit_and_never_dead_lettered() {
    let mut app = spawn_app().await;
    // Short NAK delays, so many deliveries happen quickly.
    app.projector.take().unwrap().kill().await;
    app.projector_settings.max_retry_delay = Duration::from_millis(200);
    app.start_projector();
    store(
        &app,
        "broken",
        1,
        "PolicyCreated",
        json!({"PolicyCreated": {"bogus": 1}}),
    )
    .await;
    store(&app, "broken", 2, "PolicyVersionDrafted", drafted(1)).await;

    // The draft is ahead of its aggregate for good: retried (the projector degraded), never
    // parked — twice as many deliveries as the old budget of ten allowed.
    let consumer = subjects::projector_consumer(&app.settings.namespace, "policies");
    let stream = jetstream(&app)
        .get_stream(subjects::events_stream(&app.settings.namespace))
        .await
        .expect("events stream");
    eventually(Duration::from_secs(60), || async {
        // The restarted projector creates its consumer when it starts.
        let Ok(mut c) = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&consumer)
            .await
        else {
            return false;
        };
        c.info()
            .await
            .is_ok_and(|info| info.delivered.consumer_sequence >= 21)
    })
    .await
    .expect("the draft is delivered again and again");
    let letters = dead_letters(&app).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let degraded = app.projector_settings.health.degraded();
    assert_eq!(degraded.len(), 1, "{degraded:?}");
    assert!(
        degraded[0].reason.contains("expected sequence 1, got 2"),
        "{degraded:?}"
    );
    assert_eq!(policy_row(&app, "broken").await, None);
    app.stop().await;
}

#[tokio::test]
async fn a_rebuild_skips_what_the_projector_dead_lettered_and_equals_the_live_model() {
    let app = spawn_app().await;
    store(
        &app,
        "broken",
        1,
        "PolicyCreated",
        json!({"PolicyCreated": {"bogus": 1}}),
    )
    .await;
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
        .command(
            "policy",
            "draft",
            &app.sender("bob"),
            draft("media", 0.4, "v1"),
        )
        .await
        .unwrap();
    wait_for_sequence(&app, "media", 2).await;
    wait_for_dead_letters(&app, 1).await;

    let live = read_models(&app, &["policies"]).await;
    let report = rebuild(&app, "policies", 500).await;
    assert_eq!(report.skipped, 1, "{report}");
    assert_eq!(read_models(&app, &["policies"]).await, live);
    app.stop().await;
}

#[tokio::test]
async fn an_event_ahead_of_its_policy_waits_for_the_missing_one_then_both_apply() {
    let app = spawn_app().await;
    let ns = &app.settings.namespace;
    store(&app, "late", 2, "PolicyVersionDrafted", drafted(1)).await;

    // The policies projector has refused the draft at least once: it came back.
    let consumer = subjects::projector_consumer(ns, "policies");
    eventually(DEADLINE, || async {
        let Ok(stream) = jetstream(&app)
            .get_stream(subjects::events_stream(ns))
            .await
        else {
            return false;
        };
        match stream.consumer_info(&consumer).await {
            Ok(info) => info.delivered.consumer_sequence >= 2,
            Err(_) => false,
        }
    })
    .await
    .expect("the draft was redelivered");
    assert_eq!(policy_row(&app, "late").await, None);

    store(&app, "late", 1, "PolicyCreated", created("late")).await;
    wait_for_sequence(&app, "late", 2).await;
    assert_eq!(policy_row(&app, "late").await, Some((2, 1, None)));
    assert_eq!(
        app.count("SELECT count(*) FROM policy_versions WHERE policy_id = 'late'")
            .await,
        1
    );
    // The checkpoint passes the draft that was NAK'd before the creation.
    eventually(DEADLINE, || async {
        app.count(
            "SELECT coalesce(max(last_stream_seq), 0) FROM projector_checkpoints
             WHERE projector = 'policies'",
        )
        .await
            == 2
    })
    .await
    .expect("the checkpoint covers both events");
    assert!(dead_letters(&app).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_event_type_the_policies_model_does_not_read_lets_the_next_event_apply() {
    let app = spawn_app().await;
    store(&app, "renamed", 1, "PolicyCreated", created("renamed")).await;
    store(
        &app,
        "renamed",
        2,
        "PolicyRenamed",
        json!({"PolicyRenamed": {"name": "New name"}}),
    )
    .await;
    store(&app, "renamed", 3, "PolicyVersionDrafted", drafted(1)).await;

    wait_for_sequence(&app, "renamed", 3).await;
    assert_eq!(policy_row(&app, "renamed").await, Some((3, 1, None)));
    assert!(dead_letters(&app).await.is_empty());
    app.stop().await;
}
