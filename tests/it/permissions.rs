//! The users of `nats.conf`: `svc` may send commands and queries (answered by its roles) and
//! publish catalog changes; `subscriber` may only consume.

use std::time::Duration;

use gatehouse::client::{Client, ClientError};
use gatehouse_events::envelope::RejectionCode;
use gatehouse_events::subjects;

use crate::fixtures::create_policy;
use crate::helpers::{connect_as, env, spawn_app};

#[tokio::test]
async fn svc_may_send_commands_but_not_publish_events_or_delete_streams() {
    let app = spawn_app().await;
    let svc = connect_as("svc", "GATEHOUSE_SVC_PASSWORD", None).await;
    let client = Client::new(
        svc.clone(),
        app.settings.namespace.clone(),
        Duration::from_secs(10),
    );
    // NATS lets svc send a command; Gatehouse answers it (svc holds no `author` role).
    let err = client
        .command(
            "policy",
            "create",
            &app.sender("svc"),
            create_policy("media"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Rejected(r) if r.code == RejectionCode::Forbidden),
        "{err:?}"
    );

    // Publishing onto the events stream is denied: nothing is stored.
    let js = async_nats::jetstream::new(svc.clone());
    let subject = subjects::event(&app.settings.namespace, "policy", "media", "PolicyCreated");
    let ack = tokio::time::timeout(Duration::from_secs(3), async {
        js.publish(subject, "forged".into()).await?.await
    })
    .await;
    assert!(!matches!(ack, Ok(Ok(_))), "svc could publish an event");
    let stream = js.delete_stream(subjects::events_stream(&app.settings.namespace));
    assert!(tokio::time::timeout(Duration::from_secs(3), stream)
        .await
        .map_or(true, |r| r.is_err()));
    app.audit_caught_up().await;
    assert_eq!(app.stream_messages().await, 0);
    // Queries reach Gatehouse, which answers them by svc's roles (none here).
    let q = gatehouse_events::policy::ListPolicies::default();
    let err = client
        .query::<_, serde_json::Value>("policy", "list", &q)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Rejected(r) if r.code == RejectionCode::Forbidden),
        "{err:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_service_publishes_catalog_changes_through_the_import_and_a_person_may_not() {
    let app = spawn_app().await;
    let ns = &app.settings.namespace;
    let change = |id: &str| {
        serde_json::to_vec(&serde_json::json!({
            "op": "upsert", "id": id, "status": "ready", "attributes": {"quality": 0.9}
        }))
        .unwrap()
    };
    // svc is a user of CLIENTS, which has no JetStream of its own: the catalog stream in
    // GATEHOUSE stores what arrives through the import, and the PubAck comes back the same way.
    let svc = connect_as("svc", "GATEHOUSE_SVC_PASSWORD", None).await;
    // A loaded machine (the whole suite at once) may take seconds to acknowledge.
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(30))
        .build(svc);
    let ack = js
        .publish(
            subjects::catalog_item(ns, "song-1"),
            change("song-1").into(),
        )
        .await
        .unwrap()
        .await
        .expect("a PubAck from the catalog stream");
    assert_eq!(ack.stream, subjects::catalog_stream(ns));
    crate::helpers::eventually(Duration::from_secs(20), || async {
        let q = gatehouse_events::catalog::GetItem {
            item_id: "song-1".into(),
        };
        app.client
            .query::<_, gatehouse_events::catalog::CatalogItem>("catalog", "get", &q)
            .await
            .is_ok()
    })
    .await
    .unwrap();
    // bob (a person) may not publish into the catalog.
    let bob = connect_as("bob", "GATEHOUSE_BOB_PASSWORD", None).await;
    let js = async_nats::jetstream::new(bob);
    let ack = tokio::time::timeout(Duration::from_secs(3), async {
        js.publish(
            subjects::catalog_item(ns, "song-2"),
            change("song-2").into(),
        )
        .await?
        .await
    })
    .await;
    assert!(
        !matches!(ack, Ok(Ok(_))),
        "bob could publish into the catalog"
    );
    app.stop().await;
}

#[tokio::test]
async fn subscriber_may_not_send_commands() {
    let app = spawn_app().await;
    let sub = connect_as(
        "subscriber",
        "GATEHOUSE_SUBSCRIBER_PASSWORD",
        Some("_INBOX_subscriber"),
    )
    .await;
    let client = Client::new(sub, app.settings.namespace.clone(), Duration::from_secs(2));
    let err = client
        .command(
            "policy",
            "create",
            &app.sender("mallory"),
            create_policy("media"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::TimedOut(_) | ClientError::Transport(_)),
        "{err:?}"
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn the_service_user_may_not_delete_streams_and_a_finished_test_leaves_none_behind() {
    let app = spawn_app().await;
    app.policy_with_versions("media", &[]).await;
    app.audit_caught_up().await;
    let gatehouse = connect_as("gatehouse", "GATEHOUSE_NATS_PASSWORD", None).await;
    let js = gatehouse::broker::jetstream(&gatehouse);
    let events = subjects::events_stream(&app.settings.namespace);
    assert!(
        js.delete_stream(&events).await.is_err(),
        "the service's user deleted the event log"
    );
    let streams = subjects::namespace_streams(&app.settings.namespace);
    assert!(js.get_stream(&events).await.is_ok());
    env("NATS_ADMIN_USER"); // the harness deletes the streams as this user
    app.stop().await;
    for name in streams {
        let gone = js.get_stream(&name).await.err().map(|e| e.kind());
        assert!(
            matches!(
                gone,
                Some(async_nats::jetstream::context::GetStreamErrorKind::JetStream(ref e))
                    if e.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
            ),
            "stream {name} is left behind: {gone:?}"
        );
    }
}
