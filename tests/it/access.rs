//! Roles: every operation declares the role it needs; a user of the `CLIENTS` account without
//! it gets `forbidden`, nothing is persisted in the aggregates, and the denial is recorded
//! (`denials`, `audit.denials`). The matrix iterates `api::operations()`, so a
//! new operation is covered without touching this file.

use gatehouse::api::{self, Grants, Kind, Operation, Role};
use gatehouse::client::{Client, ClientError};
use gatehouse_events::access::{GrantRole, ListRoles, RevokeRole, UserRoles};
use gatehouse_events::audit::{Denial, DenialsQuery};
use gatehouse_events::envelope::{Rejection, RejectionCode, Reply};
use gatehouse_events::subjects;

use crate::helpers::{spawn_app_with, spawn_app_with_users, TestApp};

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
    (op.role == role || op.role == Role::Authenticated) && role != Role::Internal
}

#[tokio::test]
async fn every_role_may_call_exactly_its_operations_and_nothing_else_is_persisted() {
    for role in Role::GRANTABLE {
        let grants = Grants::parse(&format!("bob={role}")).unwrap();
        let app = spawn_app_with(|s| s.grants = grants).await;
        let bob = app.client_as("bob").await;
        let seeded = app.count("SELECT count(*) FROM events").await;
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
        // Only the seeded grant is stored.
        assert_eq!(seeded, 1);
        assert_eq!(app.count("SELECT count(*) FROM events").await, 1, "{role}");
        assert_eq!(app.count("SELECT count(*) FROM command_log").await, 1);
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
async fn the_service_user_cannot_complete_fail_or_promote_a_run_or_grant_a_role() {
    let app = spawn_app_with_users().await;
    let svc = app.client_as("svc").await;
    let seeded = app.count("SELECT count(*) FROM events").await;
    for name in [
        "policy.complete_run",
        "policy.fail_run",
        "policy.promote",
        "access.grant",
        "access.revoke",
    ] {
        let op = api::operation(Kind::Command, name).unwrap();
        let error = call(&app, &svc, "svc", op).await.expect("refused");
        assert_eq!(error.code, RejectionCode::Forbidden, "{name}");
    }
    // Not even with a well-formed grant of a role to itself.
    let err = svc
        .command(
            "access",
            "grant",
            &app.sender("svc"),
            GrantRole {
                user: "svc".into(),
                role: "admin".into(),
                reason: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Rejected(r) if r.code == RejectionCode::Forbidden),
        "{err:?}"
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, seeded);
    app.stop().await;
}

#[tokio::test]
async fn gatehouses_own_connection_may_call_every_operation() {
    let app = spawn_app_with_users().await;
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
    let app = spawn_app_with_users().await;
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
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE aggregate_type = 'policy'")
            .await,
        0
    );
    app.stop().await;
}

fn grant(user: &str, role: &str) -> GrantRole {
    GrantRole {
        user: user.into(),
        role: role.into(),
        reason: "walk-through".into(),
    }
}

fn revoke(user: &str, role: &str) -> RevokeRole {
    RevokeRole {
        user: user.into(),
        role: role.into(),
        reason: String::new(),
    }
}

fn rejection(err: ClientError) -> Rejection {
    match err {
        ClientError::Rejected(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

async fn roles_of(client: &Client, user: &str) -> Vec<String> {
    let q = ListRoles {
        user: Some(user.into()),
    };
    let users: Vec<UserRoles> = client.query("access", "roles", &q).await.unwrap();
    users
        .iter()
        .flat_map(|u| u.roles.iter().map(|g| g.role.to_string()))
        .collect()
}

#[tokio::test]
async fn a_grant_holds_for_the_next_request_and_a_revocation_takes_it_back() {
    let app = spawn_app_with_users().await;
    let (alice, bob) = (app.client_as("alice").await, app.client_as("bob").await);
    let create = |id: &str| crate::fixtures::create_policy(id);
    let refused = bob
        .command("policy", "create", &app.sender("bob"), create("media"))
        .await
        .unwrap_err();
    assert_eq!(rejection(refused).code, RejectionCode::Forbidden);

    alice
        .command(
            "access",
            "grant",
            &app.sender("alice"),
            grant("bob", "author"),
        )
        .await
        .unwrap();
    // No projection to wait for: the very next request meets the grant.
    bob.command("policy", "create", &app.sender("bob"), create("media"))
        .await
        .unwrap();
    assert_eq!(roles_of(&bob, "bob").await, ["viewer", "author"]);

    alice
        .command(
            "access",
            "revoke",
            &app.sender("alice"),
            revoke("bob", "author"),
        )
        .await
        .unwrap();
    let refused = bob
        .command("policy", "create", &app.sender("bob"), create("music"))
        .await
        .unwrap_err();
    assert_eq!(rejection(refused).code, RejectionCode::Forbidden);
    assert_eq!(roles_of(&bob, "bob").await, ["viewer"]);

    // Both changes are in the audit log, by alice.
    app.audit_caught_up().await;
    let q = gatehouse_events::audit::AuditLogQuery {
        aggregate: Some("access".into()),
        actor: Some("alice".into()),
        ..Default::default()
    };
    let rows: Vec<gatehouse_events::audit::AuditEntry> =
        alice.query("audit", "log", &q).await.unwrap();
    let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(types, ["RoleGranted", "RoleRevoked"]);
    assert_eq!(rows[0].payload["RoleGranted"]["user"], "bob");
    app.stop().await;
}

#[tokio::test]
async fn grants_that_change_nothing_or_name_no_role_are_refused_and_change_nothing() {
    let app = spawn_app_with_users().await;
    let alice = app.client_as("alice").await;
    let before = app.count("SELECT count(*) FROM events").await;
    let cases = [
        (
            "grant",
            grant("bob", "viewer"),
            RejectionCode::Unchanged,
            "command.role",
        ),
        (
            "grant",
            grant("bob", "root"),
            RejectionCode::BadRequest,
            "command.role",
        ),
        (
            "grant",
            grant("bob", "internal"),
            RejectionCode::BadRequest,
            "command.role",
        ),
        (
            "grant",
            grant("bob smith", "viewer"),
            RejectionCode::BadRequest,
            "command.user",
        ),
        (
            "revoke",
            grant("bob", "approver"),
            RejectionCode::Unchanged,
            "command.role",
        ),
        // alice is the only admin.
        (
            "revoke",
            grant("alice", "admin"),
            RejectionCode::InvalidState,
            "command.user",
        ),
    ];
    for (name, command, code, field) in cases {
        let what = format!("{name} {} {}", command.user, command.role);
        let err = alice
            .command("access", name, &app.sender("alice"), command)
            .await
            .unwrap_err();
        let r = rejection(err);
        assert_eq!(
            (r.code, r.field.as_deref()),
            (code, Some(field)),
            "{what}: {}",
            r.message
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, before);
    app.stop().await;
}

#[tokio::test]
async fn the_first_admin_comes_from_the_environment_only_while_nobody_is_admin() {
    let mut app = spawn_app_with(|s| {
        s.grants = Grants::parse("bob=viewer").unwrap();
        s.admin_user = Some("alice".into());
    })
    .await;
    let alice = app.client_as("alice").await;
    assert_eq!(roles_of(&app.client, "alice").await, ["admin"]);
    // alice holds admin (no viewer): she grants, and hands admin over to bob.
    alice
        .command(
            "access",
            "grant",
            &app.sender("alice"),
            grant("bob", "admin"),
        )
        .await
        .unwrap();
    alice
        .command(
            "access",
            "revoke",
            &app.sender("alice"),
            revoke("alice", "admin"),
        )
        .await
        .unwrap();
    // A restart does not make alice admin again: bob is.
    app.gateway.take().expect("a gateway").stop().await;
    app.start_gateway();
    let bob = app.client_as("bob").await;
    crate::helpers::eventually(std::time::Duration::from_secs(20), || async {
        let q = ListRoles::default();
        bob.query::<_, Vec<UserRoles>>("access", "roles", &q)
            .await
            .is_ok()
    })
    .await
    .unwrap();
    assert_eq!(roles_of(&bob, "alice").await, Vec::<String>::new());
    assert_eq!(roles_of(&bob, "bob").await, ["viewer", "admin"]);
    let refused = alice
        .command(
            "access",
            "grant",
            &app.sender("alice"),
            grant("alice", "viewer"),
        )
        .await
        .unwrap_err();
    assert_eq!(rejection(refused).code, RejectionCode::Forbidden);
    app.stop().await;
}
