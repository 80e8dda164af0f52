//! The outbox relay killed at the worst moment loses and duplicates nothing.

use std::sync::Arc;
use std::time::Duration;

use gatehouse::relay::{Hook, Hooks};
use tokio::sync::{mpsc, Mutex};
use tokio_postgres::NoTls;

use crate::fixtures::{create_policy, draft};
use crate::helpers::{eventually, spawn_app_with};

#[tokio::test]
async fn a_relay_killed_between_publish_and_mark_duplicates_nothing() {
    // A short dedupe window: the restarted relay must not rely on JetStream's dedupe.
    let mut app = spawn_app_with(|s| s.events_duplicate_window = Duration::from_secs(1)).await;
    app.relay.take().unwrap().kill().await;
    let (published, mut paused) = mpsc::channel::<()>(1);
    let hook: Hook = Arc::new(move || {
        let published = published.clone();
        Box::pin(async move {
            let _ = published.send(()).await;
            std::future::pending::<()>().await
        })
    });
    app.start_relay(Hooks {
        after_publish: Some(hook),
        ..Hooks::default()
    });

    app.client
        .command(
            "policy",
            "create",
            &app.sender("alice"),
            create_policy("media"),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), paused.recv())
        .await
        .expect("relay published")
        .unwrap();
    app.relay.take().unwrap().kill().await;
    assert_eq!(app.stream_messages().await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM event_outbox WHERE published_at IS NULL")
            .await,
        1
    );

    app.client
        .command(
            "policy",
            "draft",
            &app.sender("bob"),
            draft("media", 0.4, "v1"),
        )
        .await
        .unwrap();
    app.client
        .command(
            "policy",
            "draft",
            &app.sender("bob"),
            draft("media", 0.5, "v2"),
        )
        .await
        .unwrap();
    // Let the dedupe window pass: only reconciliation can now prevent a second copy.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.start_relay(Hooks::default());
    eventually(Duration::from_secs(20), || async {
        app.count("SELECT count(*) FROM event_outbox WHERE published_at IS NULL")
            .await
            == 0
    })
    .await
    .expect("every row published");
    assert_eq!(app.stream_messages().await, 3);
    app.audit_caught_up().await;
    app.stop().await;
}

#[tokio::test]
async fn a_standby_relay_takes_over_when_the_active_one_dies() {
    let mut app = spawn_app_with(|_| {}).await;
    let first = app.relay.take().unwrap();
    app.start_relay(Hooks::default());
    let standby = app.relay.take().unwrap();
    app.client
        .command(
            "policy",
            "create",
            &app.sender("alice"),
            create_policy("media"),
        )
        .await
        .unwrap();
    app.audit_caught_up().await;
    // Whichever was active, killing the first leaves one relay, which must keep publishing.
    first.kill().await;
    app.relay = Some(standby);
    app.client
        .command(
            "policy",
            "draft",
            &app.sender("bob"),
            draft("media", 0.4, "v1"),
        )
        .await
        .unwrap();
    app.audit_caught_up().await;
    assert_eq!(app.stream_messages().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn an_event_held_back_by_an_open_transaction_is_published_when_it_ends_without_a_new_commit()
{
    let mut app = spawn_app_with(|_| {}).await;
    app.relay.take().unwrap().kill().await;
    // An older transaction that writes no event, open across the command's commit.
    let (blocker, connection) = tokio_postgres::connect(&app.settings.database_url, NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    blocker
        .batch_execute("BEGIN; SELECT pg_current_xact_id();")
        .await
        .unwrap();
    // Once armed, the relay's hook ends that transaction at the worst moment: after a batch
    // read found the row still fenced, before the relay decides how long to pause.
    let armed: Arc<Mutex<Option<tokio_postgres::Client>>> = Arc::default();
    let (ended, mut blocker_ended) = mpsc::channel::<()>(1);
    let hook: Hook = {
        let armed = armed.clone();
        Arc::new(move || {
            let armed = armed.clone();
            let ended = ended.clone();
            Box::pin(async move {
                if let Some(blocker) = armed.lock().await.take() {
                    blocker.batch_execute("COMMIT").await.unwrap();
                    let _ = ended.send(()).await;
                }
            })
        })
    };
    // Idle polls an hour apart: only the relay's own look-again can publish the event.
    app.start_relay(Hooks {
        idle_poll: Some(Duration::from_secs(3600)),
        after_short_batch: Some(hook),
        ..Hooks::default()
    });
    app.policy_with_versions("media", &[]).await;
    // The fence holds it back (a row is published only once every older transaction ended);
    // the commit's NOTIFY has woken the relay already, and nothing else will commit.
    assert_eq!(
        app.count("SELECT count(*) FROM event_outbox WHERE published_at IS NULL")
            .await,
        1
    );
    *armed.lock().await = Some(blocker);
    tokio::time::timeout(Duration::from_secs(20), blocker_ended.recv())
        .await
        .expect("the relay reached its hook");
    eventually(Duration::from_secs(20), || async {
        app.stream_messages().await == 1
    })
    .await
    .expect("published once the older transaction ended, with no other commit to wake the relay");
    app.stop().await;
}
