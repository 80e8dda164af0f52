//! The actor comes from authentication: a `CLIENTS` user's requests are recorded as that user,
//! whatever the envelope or a forged `Nats-Request-Info` header claims; a delegate's events
//! record both the delegate and the person.

use std::time::Duration;

use async_nats::{HeaderMap, Request};
use gatehouse::client::{Client, ClientError};
use gatehouse_events::envelope::{CommandAccepted, CommandRequest, RejectionCode, Reply};
use gatehouse_events::subjects;

use crate::fixtures::create_policy;
use crate::helpers::{spawn_app_with, spawn_app_with_users, TestApp};
use gatehouse::api::Grants;

/// The `actor` and `delegated_by` stored with the events of `policy_id`.
async fn recorded(app: &TestApp, policy_id: &str) -> Vec<(String, Option<String>)> {
    app.db
        .query(
            "SELECT metadata->>'actor', metadata->>'delegated_by' FROM events
             WHERE aggregate_id = $1 ORDER BY sequence",
            &[&policy_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn actor_mismatch(err: ClientError) -> String {
    match err {
        ClientError::Rejected(r) if r.code == RejectionCode::ActorMismatch => {
            assert_eq!(r.field.as_deref(), Some("actor"));
            r.message
        }
        other => panic!("expected actor_mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_user_claiming_to_be_someone_else_is_refused_and_nothing_is_recorded() {
    let app = spawn_app_with_users().await;
    let alice = app.client_as("alice").await;
    let err = alice
        .command(
            "policy",
            "create",
            &app.sender("bob"),
            create_policy("media"),
        )
        .await
        .unwrap_err();
    let message = actor_mismatch(err);
    assert!(message.contains("`alice`"), "{message}");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE aggregate_type = 'policy'")
            .await,
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM command_log WHERE command_id NOT LIKE 'seed:%'")
            .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn the_authenticated_user_is_recorded_as_the_actor() {
    let app = spawn_app_with_users().await;
    let alice = app.client_as("alice").await;
    alice
        .command(
            "policy",
            "create",
            &app.sender("alice"),
            create_policy("media"),
        )
        .await
        .unwrap();
    assert_eq!(recorded(&app, "media").await, [("alice".to_owned(), None)]);
    // Queries pass through the same import.
    let q = gatehouse_events::policy::ListPolicies::default();
    alice
        .query::<_, serde_json::Value>("policy", "list", &q)
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_delegates_command_records_the_person_and_the_delegate() {
    // carol is a person the delegate authenticated (no NATS user of her own).
    let grants = Grants::parse("console=delegate+author,carol=author").unwrap();
    let app = spawn_app_with(|s| s.grants = grants).await;
    let console = app.client_as("console").await;
    console
        .command(
            "policy",
            "create",
            &app.sender("carol"),
            create_policy("media"),
        )
        .await
        .unwrap();
    assert_eq!(
        recorded(&app, "media").await,
        [("carol".to_owned(), Some("console".to_owned()))]
    );
    // Acting as itself, a delegate is recorded alone.
    console
        .command(
            "policy",
            "draft",
            &app.sender("console"),
            crate::fixtures::draft("media", 0.5, "v1"),
        )
        .await
        .unwrap();
    assert_eq!(
        recorded(&app, "media").await[1],
        ("console".to_owned(), None)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_delegate_acting_for_a_person_needs_the_persons_role_not_its_own() {
    // The development grants: console holds viewer and delegate; bob is a viewer; alice an
    // author.
    let app = spawn_app_with_users().await;
    let console = app.client_as("console").await;
    let err = console
        .command(
            "policy",
            "create",
            &app.sender("bob"),
            create_policy("media"),
        )
        .await
        .unwrap_err();
    let ClientError::Rejected(rejection) = err else {
        panic!("expected forbidden, got {err:?}")
    };
    assert_eq!(rejection.code, RejectionCode::Forbidden);
    assert!(rejection.message.contains("`bob`"), "{}", rejection.message);
    let denial: (String, Option<String>, String) = {
        let row = app
            .db
            .query_one(
                "SELECT \"user\", delegated_by, missing_role FROM denials",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(
        denial,
        (
            "bob".to_owned(),
            Some("console".to_owned()),
            "author".to_owned()
        )
    );
    // For alice, who is an author, the same command is accepted though console is not one.
    console
        .command(
            "policy",
            "create",
            &app.sender("alice"),
            create_policy("media"),
        )
        .await
        .unwrap();
    assert_eq!(
        recorded(&app, "media").await,
        [("alice".to_owned(), Some("console".to_owned()))]
    );
    // The audit log shows both.
    app.audit_caught_up().await;
    let q = gatehouse_events::audit::AuditLogQuery {
        aggregate: Some("policy".into()),
        ..Default::default()
    };
    let rows: Vec<gatehouse_events::audit::AuditEntry> =
        app.client.query("audit", "log", &q).await.unwrap();
    assert_eq!(
        (rows[0].actor.as_str(), rows[0].delegated_by.as_deref()),
        ("alice", Some("console"))
    );
    app.stop().await;
}

/// Sends `create` as `bob` through `client` with the header `name: value` set by the client.
async fn create_with_header(
    app: &TestApp,
    client: &Client,
    name: &str,
    value: &str,
) -> Reply<CommandAccepted> {
    let body = CommandRequest {
        command_id: uuid::Uuid::new_v4().to_string(),
        actor: "bob".to_owned(),
        correlation_id: None,
        causation_id: None,
        command: create_policy("media"),
    };
    let mut headers = HeaderMap::new();
    headers.insert(name, value);
    let request = Request::new()
        .headers(headers)
        .payload(serde_json::to_vec(&body).unwrap().into())
        .timeout(Some(Duration::from_secs(10)));
    let subject = subjects::command(&app.settings.namespace, "policy", "create");
    let reply = client.nats().send_request(subject, request).await.unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

#[tokio::test]
async fn a_request_info_header_set_by_the_client_is_not_trusted() {
    let app = spawn_app_with_users().await;
    let alice = app.client_as("alice").await;
    let forged = r#"{"acc":"CLIENTS","user":"bob"}"#;
    for name in [
        "Nats-Request-Info",
        "nats-request-info",
        "NATS-REQUEST-INFO",
    ] {
        let reply = create_with_header(&app, &alice, name, forged).await;
        let error = reply
            .error
            .unwrap_or_else(|| panic!("{name}: accepted as bob"));
        assert_eq!(
            error.code,
            RejectionCode::ActorMismatch,
            "{name}: {error:?}"
        );
    }
    // Nor can it pass for a request from inside Gatehouse's account.
    let internal = r#"{"acc":"GATEHOUSE"}"#;
    let reply = create_with_header(&app, &alice, "Nats-Request-Info", internal).await;
    assert_eq!(reply.error.unwrap().code, RejectionCode::ActorMismatch);
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE aggregate_type = 'policy'")
            .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn service_discovery_answers_across_the_import() {
    let app = spawn_app_with_users().await;
    let alice = app.client_as("alice").await;
    let reply = alice
        .nats()
        .request(format!("$SRV.PING.{}", subjects::SERVICE_NAME), "".into())
        .await
        .expect("a $SRV.PING reply");
    let ping: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(ping["name"], subjects::SERVICE_NAME);
    app.stop().await;
}
