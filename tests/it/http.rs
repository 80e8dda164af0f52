//! The HTTP API over a real port: the same operations, payloads and codes as NATS, statuses
//! mapped in one place, bearer tokens, `Idempotency-Key` shared with NATS, JSON error bodies.

use gatehouse_events::access::RevokeToken;
use serde_json::{json, Value};

use crate::fixtures::create_policy;
use crate::helpers::spawn_app_with_users;
use crate::http_client::{bearer, create_role_streams, issue, request, serve};

#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let app = spawn_app_with_users().await;
    let (addr, stop) = serve(&app).await;
    assert_eq!(request(addr, "GET", "/healthz", &[], b"").await.0, 200);
    create_role_streams(&app).await;
    let (status, body) = request(addr, "GET", "/readyz", &[], b"").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    stop.cancel();
    app.stop().await;
}

#[tokio::test]
async fn a_command_over_http_is_recorded_as_the_tokens_user_and_is_the_same_command_over_nats() {
    let app = spawn_app_with_users().await;
    let (addr, stop) = serve(&app).await;
    let (_, alice) = issue(&app, "alice").await;
    let auth = bearer(&alice);
    let body = serde_json::to_vec(&create_policy("media")).unwrap();
    let headers = [
        ("Authorization", auth.as_str()),
        ("Idempotency-Key", "create-media-1"),
    ];
    let (status, first) =
        request(addr, "POST", "/v1/commands/policy.create", &headers, &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["duplicate"], false);
    let actor: String = app
        .db
        .query_one(
            "SELECT metadata->>'actor' FROM events WHERE aggregate_type = 'policy'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(actor, "alice");
    // A retry over HTTP, and the same command id over NATS: the first outcome, once.
    let (status, again) =
        request(addr, "POST", "/v1/commands/policy.create", &headers, &body).await;
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &json!(true)),
        "{again}"
    );
    let sender = gatehouse::client::Sender {
        actor: "alice".into(),
        command_id: "create-media-1".into(),
        correlation_id: None,
    };
    let over_nats: gatehouse_events::envelope::CommandAccepted = app
        .client
        .command("policy", "create", &sender, create_policy("media"))
        .await
        .unwrap();
    assert!(over_nats.duplicate);
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE aggregate_type = 'policy'")
            .await,
        1
    );
    // A query that reads its write (the read model may lag), and a refusal with its status
    // and JSON body.
    let get = serde_json::to_vec(&json!({"policy_id": "media", "wait_for": {
        "aggregate": "policy", "aggregate_id": "media", "sequence": first["sequence"]}}))
    .unwrap();
    let auth_only = [("Authorization", auth.as_str())];
    let (status, policy) = request(addr, "POST", "/v1/queries/policy.get", &auth_only, &get).await;
    assert_eq!(
        (status, policy["policy_id"].as_str()),
        (200, Some("media")),
        "{policy}"
    );
    let missing = serde_json::to_vec(&json!({"policy_id": "nope"})).unwrap();
    let (status, error) =
        request(addr, "POST", "/v1/queries/policy.get", &auth_only, &missing).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("not_found")),
        "{error}"
    );
    stop.cancel();
    app.stop().await;
}

#[tokio::test]
async fn refusals_are_json_with_their_status() {
    let app = spawn_app_with_users().await;
    let (addr, stop) = serve(&app).await;
    let (bob_id, bob) = issue(&app, "bob").await;
    let (_, alice) = issue(&app, "alice").await;
    let body = serde_json::to_vec(&create_policy("media")).unwrap();
    let create = "/v1/commands/policy.create";
    let code = |v: &Value| v["code"].as_str().map(str::to_owned);
    // No token, an unknown one.
    let (status, e) = request(addr, "POST", create, &[("Idempotency-Key", "k")], &body).await;
    assert_eq!(
        (status, code(&e)),
        (401, Some("unauthenticated".into())),
        "{e}"
    );
    let forged = [
        ("Authorization", "Bearer gh_0000.ffff"),
        ("Idempotency-Key", "k"),
    ];
    let (status, e) = request(addr, "POST", create, &forged, &body).await;
    assert_eq!(
        (status, code(&e)),
        (401, Some("unauthenticated".into())),
        "{e}"
    );
    // bob is a viewer: forbidden, naming the role.
    let auth = bearer(&bob);
    let bob_headers = [("Authorization", auth.as_str()), ("Idempotency-Key", "k")];
    let (status, e) = request(addr, "POST", create, &bob_headers, &body).await;
    assert_eq!((status, code(&e)), (403, Some("forbidden".into())), "{e}");
    assert!(e["message"].as_str().unwrap().contains("`author`"), "{e}");
    // No Idempotency-Key; a body that is no JSON; one too large; a bad field.
    let auth = bearer(&alice);
    let alice_only = [("Authorization", auth.as_str())];
    let (status, e) = request(addr, "POST", create, &alice_only, &body).await;
    assert_eq!(
        (status, e["field"].as_str()),
        (400, Some("Idempotency-Key")),
        "{e}"
    );
    let alice_headers = [("Authorization", auth.as_str()), ("Idempotency-Key", "k2")];
    let (status, e) = request(addr, "POST", create, &alice_headers, b"{not json").await;
    assert_eq!((status, code(&e)), (400, Some("bad_request".into())), "{e}");
    let huge = vec![b' '; 300 * 1024];
    let (status, e) = request(addr, "POST", create, &alice_headers, &huge).await;
    assert_eq!((status, code(&e)), (400, Some("bad_request".into())), "{e}");
    let mut bad = create_policy("media");
    bad.name = String::new();
    let bad = serde_json::to_vec(&bad).unwrap();
    let (status, e) = request(addr, "POST", create, &alice_headers, &bad).await;
    assert_eq!(
        (status, e["field"].as_str()),
        (400, Some("command.name")),
        "{e}"
    );
    // Unknown routes and operations.
    let (status, e) = request(addr, "GET", "/nowhere", &alice_only, b"").await;
    assert_eq!((status, code(&e)), (404, Some("not_found".into())), "{e}");
    let (status, e) = request(
        addr,
        "POST",
        "/v1/commands/policy.nope",
        &alice_headers,
        &body,
    )
    .await;
    assert_eq!((status, code(&e)), (404, Some("not_found".into())), "{e}");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE aggregate_type = 'policy'")
            .await,
        0
    );
    // A revoked token authenticates nobody from the next request on.
    app.client
        .command(
            "access",
            "revoke_token",
            &app.sender("alice"),
            RevokeToken {
                token_id: bob_id,
                reason: "left".into(),
            },
        )
        .await
        .unwrap();
    let get = [("Authorization", bearer(&bob))];
    let get: Vec<(&str, &str)> = get.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, e) = request(addr, "POST", "/v1/queries/policy.list", &get, b"").await;
    assert_eq!(
        (status, code(&e)),
        (401, Some("unauthenticated".into())),
        "{e}"
    );
    stop.cancel();
    app.stop().await;
}
