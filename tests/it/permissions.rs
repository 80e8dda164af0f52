//! The users of `nats.conf`: `svc` may only send commands (and is answered by its roles); `subscriber` may only consume.

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
    // Queries are not commands: svc may not send them.
    let q = gatehouse_events::policy::ListPolicies::default();
    let err = client
        .query::<_, serde_json::Value>("policy", "list", &q)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::TimedOut(_) | ClientError::NoResponders(_) | ClientError::Transport(_)
        ),
        "{err:?}"
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
