//! Projectors killed mid-batch apply each event once; rebuilds equal the live read models.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_projections::{Hook, Hooks};
use tokio::sync::mpsc;

use crate::fixtures::{create_policy, draft};
use crate::helpers::{spawn_app, TestApp};

/// A hook that reports it was reached, then holds the projector there forever.
fn pause_here() -> (Hook, mpsc::Receiver<()>) {
    let (reached, rx) = mpsc::channel::<()>(1);
    let hook: Hook = Arc::new(move || {
        let reached = reached.clone();
        Box::pin(async move {
            let _ = reached.send(()).await;
            std::future::pending::<()>().await
        })
    });
    (hook, rx)
}

async fn record_some_history(app: &TestApp) {
    for id in ["media", "docs"] {
        app.client
            .command("policy", "create", &app.sender("alice"), create_policy(id))
            .await
            .unwrap();
        for i in 0..3 {
            let d = draft(id, 0.3 + i as f64 / 10.0, &format!("v{}", i + 1));
            app.client
                .command("policy", "draft", &app.sender("bob"), d)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_projector_killed_before_commit_applies_each_event_once() {
    let (hook, mut reached) = pause_here();
    let mut app = spawn_app().await;
    app.projector.take().unwrap().kill().await;
    app.projector_settings.hooks = Hooks {
        before_commit: Some(hook),
        ..Hooks::default()
    };
    app.start_projector();
    record_some_history(&app).await;
    tokio::time::timeout(Duration::from_secs(20), reached.recv())
        .await
        .expect("projector reached the hook");
    app.projector.take().unwrap().kill().await;
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log").await,
        0,
        "nothing committed before the kill"
    );
    app.projector_settings.hooks = Hooks::default();
    app.start_projector();
    app.audit_caught_up().await;
    assert_each_event_applied_once(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_projector_killed_after_commit_before_ack_applies_each_event_once() {
    let (hook, mut reached) = pause_here();
    let mut app = spawn_app().await;
    app.projector.take().unwrap().kill().await;
    app.projector_settings.hooks = Hooks {
        after_commit_before_ack: Some(hook),
        ..Hooks::default()
    };
    app.start_projector();
    record_some_history(&app).await;
    tokio::time::timeout(Duration::from_secs(20), reached.recv())
        .await
        .expect("projector reached the hook");
    app.projector.take().unwrap().kill().await;
    // Either read model's projector may be the first to reach the shared hook.
    assert!(
        app.count("SELECT count(*) FROM projector_checkpoints WHERE last_stream_seq > 0")
            .await
            > 0,
        "the batch committed before the kill"
    );
    app.projector_settings.hooks = Hooks::default();
    app.start_projector();
    app.audit_caught_up().await;
    assert_each_event_applied_once(&app).await;
    app.stop().await;
}

async fn assert_each_event_applied_once(app: &TestApp) {
    let events = app.count("SELECT count(*) FROM events").await;
    assert_eq!(events, 8);
    assert_eq!(app.count("SELECT count(*) FROM audit_log").await, events);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_log a JOIN events e ON e.global_position = a.position"
        )
        .await,
        events
    );
    crate::helpers::eventually(Duration::from_secs(20), || async {
        app.count("SELECT count(*) FROM policy_versions").await == 6
            && app
                .count("SELECT coalesce(sum(latest_version), 0) FROM policies")
                .await
                == 6
    })
    .await
    .expect("policy read model caught up");
}

/// Every row of `table`, as JSON, in a stable order.
async fn dump(app: &TestApp, table: &str, order: &str) -> Vec<serde_json::Value> {
    let sql = format!("SELECT to_jsonb(t) FROM {table} t ORDER BY {order}");
    app.db
        .query(sql.as_str(), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_rebuilt_read_model_equals_the_live_one() {
    let app = spawn_app().await;
    record_some_history(&app).await;
    app.audit_caught_up().await;
    crate::helpers::eventually(Duration::from_secs(20), || async {
        app.count("SELECT count(*) FROM policy_versions").await == 6
    })
    .await
    .unwrap();
    let pg = gatehouse::db::pool(&app.settings.database_url, 2).unwrap();
    for (model, tables) in [
        ("audit", vec![("audit_log", "position")]),
        (
            "policies",
            vec![
                ("policies", "policy_id"),
                ("policy_versions", "policy_id, version"),
            ],
        ),
    ] {
        let live: Vec<_> =
            futures::future::join_all(tables.iter().map(|(t, o)| dump(&app, t, o))).await;
        let read_model = gatehouse_projections::read_model(model).unwrap();
        let report = gatehouse_projections::rebuild(read_model.as_ref(), &pg, 3)
            .await
            .unwrap();
        assert!(report.to_string().contains(model), "{report}");
        let rebuilt: Vec<_> =
            futures::future::join_all(tables.iter().map(|(t, o)| dump(&app, t, o))).await;
        assert_eq!(rebuilt, live, "{model}");
        assert!(!rebuilt[0].is_empty());
    }
    // The live projector keeps working on the swapped-in tables.
    app.client
        .command(
            "policy",
            "draft",
            &app.sender("bob"),
            draft("media", 0.9, "after rebuild"),
        )
        .await
        .unwrap();
    app.audit_caught_up().await;
    app.stop().await;
}
