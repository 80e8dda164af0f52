//! Roles: every operation declares the role it needs; a user of the `CLIENTS` account without
//! it gets `forbidden`, nothing is persisted in the aggregates, and the denial is recorded
//! (`denials`, `audit.denials`). The matrix iterates `api::operations()`, so a
//! new operation is covered without touching this file.

use gatehouse::api::{self, Grants, Kind, Operation, Role};
use gatehouse::client::{Client, ClientError};
use gatehouse_events::audit::{Denial, DenialsQuery};
use gatehouse_events::envelope::{Rejection, RejectionCode, Reply};
use gatehouse_events::subjects;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

/// Sends `op` as the user behind `client` (acting as `actor`) with a body that names no
/// aggregate: allowed operations then fail for domain or parsing reasons, never `forbidden`.
async fn call(app: &TestApp, client: &Client, actor: &str, op: &Operation) -> Option<Rejection> {
    let (context, name) = op.name.split_once('.').expect("<context>.<name>");
    let ns = &app.settings.namespace;
    let (subject, body) = match op.kind {
        Kind::Command => (
            subjects::command(ns, context, name),
            serde_json::json!({
                "command_id": uuid::Uuid::new_v4().to_string(),
                "actor": actor,
                "command": {},
            }),
        ),
        Kind::Query => (subjects::query(ns, context, name), serde_json::json!({})),
    };
    let reply = client
        .nats()
        .request(subject, serde_json::to_vec(&body).unwrap().into())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", op.name));
    let reply: Reply<serde_json::Value> = serde_json::from_slice(&reply.payload).unwrap();
    reply.error
}

fn allowed(role: Role, op: &Operation) -> bool {
    op.role == role && role != Role::Internal
}

#[tokio::test]
async fn every_role_may_call_exactly_its_operations_and_nothing_else_is_persisted() {
    for role in Role::GRANTABLE {
        let grants = Grants::parse(&format!("bob={role}")).unwrap();
        let app = spawn_app_with(|s| s.grants = grants).await;
        let bob = app.client_as("bob").await;
        let mut forbidden = Vec::new();
        for op in api::operations() {
            let error = call(&app, &bob, "bob", op).await;
            let code = error.as_ref().map(|e| e.code);
            if allowed(role, op) {
                assert_ne!(code, Some(RejectionCode::Forbidden), "{role} × {}", op.name);
            } else {
                let error = error.unwrap_or_else(|| panic!("{role} × {}: accepted", op.name));
                assert_eq!(error.code, RejectionCode::Forbidden, "{role} × {}", op.name);
                assert!(
                    error.message.contains(op.role.as_str()),
                    "{}",
                    error.message
                );
                forbidden.push((op.name.to_owned(), op.role.as_str().to_owned()));
            }
        }
        assert_eq!(app.count("SELECT count(*) FROM events").await, 0, "{role}");
        assert_eq!(app.count("SELECT count(*) FROM command_log").await, 0);
        // Each refusal is recorded once, in order: who, what, which role.
        let denials: Vec<(String, String, String, String)> = app
            .db
            .query(
                "SELECT \"user\", account, operation, missing_role FROM denials ORDER BY position",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let expected: Vec<_> = forbidden
            .into_iter()
            .map(|(op, missing)| ("bob".to_owned(), "CLIENTS".to_owned(), op, missing))
            .collect();
        assert_eq!(denials, expected, "{role}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_user_holding_every_role_still_cannot_send_gatehouses_own_commands() {
    let all = Role::GRANTABLE.map(Role::as_str).join("+");
    let grants = Grants::parse(&format!("bob={all}")).unwrap();
    let app = spawn_app_with(|s| s.grants = grants).await;
    let bob = app.client_as("bob").await;
    for op in api::operations().filter(|op| op.role == Role::Internal) {
        let error = call(&app, &bob, "bob", op).await.expect("refused");
        assert_eq!(error.code, RejectionCode::Forbidden, "{}", op.name);
    }
    app.stop().await;
}

#[tokio::test]
async fn the_service_user_cannot_complete_fail_or_promote_a_run() {
    let app = spawn_app().await;
    let svc = app.client_as("svc").await;
    for name in ["policy.complete_run", "policy.fail_run", "policy.promote"] {
        let op = api::operation(Kind::Command, name).unwrap();
        let error = call(&app, &svc, "svc", op).await.expect("refused");
        assert_eq!(error.code, RejectionCode::Forbidden, "{name}");
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn gatehouses_own_connection_may_call_every_operation() {
    let app = spawn_app().await;
    for op in api::operations() {
        let error = call(&app, &app.client, "gatehouse", op).await;
        assert_ne!(
            error.map(|e| e.code),
            Some(RejectionCode::Forbidden),
            "{}",
            op.name
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM denials").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_denial_is_answered_with_the_missing_role_and_listed_by_audit_denials() {
    let app = spawn_app().await;
    let bob = app.client_as("bob").await;
    let err = bob
        .command(
            "policy",
            "create",
            &app.sender("bob"),
            crate::fixtures::create_policy("media"),
        )
        .await
        .unwrap_err();
    let ClientError::Rejected(rejection) = err else {
        panic!("expected forbidden, got {err:?}")
    };
    assert_eq!(rejection.code, RejectionCode::Forbidden);
    assert!(
        rejection.message.contains("`author`"),
        "{}",
        rejection.message
    );
    // bob is a viewer: he may read the denials, his own included.
    let q = DenialsQuery {
        user: Some("bob".into()),
        ..Default::default()
    };
    let denials: Vec<Denial> = bob.query("audit", "denials", &q).await.unwrap();
    assert_eq!(denials.len(), 1, "{denials:?}");
    let denial = &denials[0];
    assert_eq!(
        (denial.user.as_str(), denial.account.as_str()),
        ("bob", "CLIENTS")
    );
    assert_eq!(
        (denial.operation.as_str(), denial.missing_role.as_str()),
        ("policy.create", "author")
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
    app.stop().await;
}
