//! The seed routes over a real port (`/admin/catalog-policies/...`, `/admin/catalog-policy-runs/...`,
//! `/v1/repos/{repoKey}/...`): each answers what its operation answers, with the status the one
//! mapping gives; a retried write is the same command over HTTP and NATS.

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse_events::envelope::CommandAccepted;
use gatehouse_events::run::PrepareRun;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app_with_users, TestApp};
use crate::http_client::{bearer, exchange, issue, request, serve};
use crate::quarantine::{attributes, gate};
use crate::runs::{create, insert_items, wait_status};

const DEADLINE: Duration = Duration::from_secs(60);

/// A caller of the API: its address and a user's token.
struct Caller {
    addr: SocketAddr,
    auth: String,
}

impl Caller {
    async fn get(&self, path: &str) -> (u16, Value) {
        let headers = [("Authorization", self.auth.as_str())];
        request(self.addr, "GET", path, &headers, b"").await
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        let headers = [
            ("Authorization", self.auth.as_str()),
            ("Idempotency-Key", key),
        ];
        let body = serde_json::to_vec(&body).unwrap();
        request(self.addr, "POST", path, &headers, &body).await
    }
}

async fn caller(app: &TestApp, addr: SocketAddr, user: &str) -> Caller {
    let (_, token) = issue(app, user).await;
    Caller {
        addr,
        auth: bearer(&token),
    }
}

fn code(body: &Value) -> Option<&str> {
    body["code"].as_str()
}

#[tokio::test]
async fn the_run_routes_prepare_read_list_diff_promote_and_cancel_through_the_operations() {
    let mut app = spawn_app_with_users().await;
    app.start_worker();
    let (addr, stop) = serve(&app).await;
    let alice = caller(&app, addr, "alice").await;
    // 30 items: item 29 does not fit the schema, an error that blocks promotion by default.
    create(&app, "media", &[0.5]).await;
    insert_items(&app, 30).await;

    let prepare = json!({"version": 1, "batch_size": 10});
    let headers = [
        ("Authorization", alice.auth.as_str()),
        ("Idempotency-Key", "prepare-media-1"),
    ];
    let body = serde_json::to_vec(&prepare).unwrap();
    let path = "/admin/catalog-policies/media/prepare";
    let (status, head, prepared) = exchange(addr, "POST", path, &headers, &body).await;
    assert_eq!(status, 202, "{prepared}");
    let run_id = prepared["run_id"].as_str().expect("the run id").to_owned();
    assert_eq!(prepared["duplicate"], false);
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("location: /admin/catalog-policy-runs/{run_id}")),
        "{head}"
    );

    // The same write again over HTTP, then over NATS: the first outcome, one run.
    let (status, again) = alice.post(path, "prepare-media-1", prepare.clone()).await;
    assert_eq!((status, &again["run_id"]), (202, &json!(run_id)), "{again}");
    assert_eq!(again["duplicate"], true);
    let sender = gatehouse::client::Sender {
        actor: "alice".into(),
        command_id: "prepare-media-1".into(),
        correlation_id: None,
    };
    let over_nats: CommandAccepted = app
        .client
        .command(
            "policy",
            "prepare",
            &sender,
            PrepareRun {
                policy_id: "media".into(),
                version: 1,
                batch_size: Some(10),
                coverage_threshold: None,
                max_errors: None,
            },
        )
        .await
        .unwrap();
    assert!(over_nats.duplicate);
    assert_eq!(over_nats.detail["run_id"], json!(run_id));
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'RunPrepared'")
            .await,
        1
    );
    // A body naming another policy than the path; a version that does not exist.
    let (status, e) = alice
        .post(path, "p2", json!({"version": 1, "policy_id": "books"}))
        .await;
    assert_eq!(
        (status, e["field"].as_str()),
        (400, Some("policy_id")),
        "{e}"
    );

    wait_status(&app, &run_id, "success").await;
    let (status, e) = alice.post(path, "p3", json!({"version": 9})).await;
    assert_eq!((status, code(&e)), (404, Some("version_not_found")), "{e}");
    let runs = "/admin/catalog-policy-runs";
    let (status, run) = alice.get(&format!("{runs}/{run_id}")).await;
    assert_eq!(
        (status, run["status"].as_str()),
        (200, Some("success")),
        "{run}"
    );
    let (status, e) = alice.get(&format!("{runs}/media:99")).await;
    assert_eq!((status, code(&e)), (404, Some("not_found")), "{e}");

    let (status, list) = alice
        .get(&format!(
            "{runs}?status=success&policyId=media&limit=5&offset=0"
        ))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let (status, list) = alice.get(&format!("{runs}?policyId=books")).await;
    assert_eq!((status, list), (200, json!([])));
    for (query, parameter) in [
        ("limit=-1", "limit"),
        ("offset=x", "offset"),
        ("status=done", "status"),
        ("policy=media", "policy"),
    ] {
        let (status, e) = alice.get(&format!("{runs}?{query}")).await;
        assert_eq!(
            (status, e["field"].as_str()),
            (400, Some(parameter)),
            "{query}: {e}"
        );
    }

    let (status, diff) = alice.get(&format!("{runs}/{run_id}/diff")).await;
    assert_eq!(
        (status, diff["run_id"].as_str()),
        (200, Some(run_id.as_str())),
        "{diff}"
    );

    // Blocked by the error: 400 with every reason; allowed with a budget for it.
    let promote = format!("{runs}/{run_id}/promote");
    let (status, e) = alice.post(&promote, "promote-1", json!({})).await;
    assert_eq!((status, code(&e)), (400, Some("not_ready")), "{e}");
    let reasons = e["details"].as_array().expect("the blocking reasons");
    assert!(reasons.iter().any(|r| r["condition"] == "errors"), "{e}");
    let (status, promoted) = alice
        .post(&promote, "promote-2", json!({"max_errors": 5}))
        .await;
    assert_eq!(
        (status, promoted["duplicate"].as_bool()),
        (200, Some(false)),
        "{promoted}"
    );

    // A finished run cannot be cancelled; an unknown one is not found.
    let (status, e) = alice
        .post(&format!("{runs}/{run_id}/cancel"), "c1", json!({}))
        .await;
    assert_eq!((status, code(&e)), (409, Some("invalid_state")), "{e}");
    let (status, e) = alice
        .post(&format!("{runs}/media:99/cancel"), "c2", json!({}))
        .await;
    assert_eq!(status, 404, "{e}");

    stop.cancel();
    app.stop().await;
}

#[tokio::test]
async fn a_running_run_is_cancelled_over_its_route() {
    let app = spawn_app_with_users().await;
    // No worker: the run stays running until cancelled.
    let (addr, stop) = serve(&app).await;
    let alice = caller(&app, addr, "alice").await;
    create(&app, "media", &[0.5]).await;
    insert_items(&app, 20).await;
    let (status, prepared) = alice
        .post(
            "/admin/catalog-policies/media/prepare",
            "prepare-1",
            json!({"version": 1}),
        )
        .await;
    assert_eq!(status, 202, "{prepared}");
    let run_id = prepared["run_id"].as_str().unwrap().to_owned();
    let cancel = format!("/admin/catalog-policy-runs/{run_id}/cancel");
    let (status, cancelled) = alice.post(&cancel, "cancel-1", Value::Null).await;
    assert_eq!(status, 400, "a body that is no object: {cancelled}");
    let (status, cancelled) = alice.post(&cancel, "cancel-1", json!({})).await;
    assert_eq!(status, 200, "{cancelled}");
    wait_status(&app, &run_id, "cancelled").await;
    stop.cancel();
    app.stop().await;
}

#[tokio::test]
async fn the_repo_routes_decide_quarantine_block_reads_and_resolve_cases() {
    let app = spawn_app_with_users().await;
    gate(&app).await;
    let (addr, stop) = serve(&app).await;
    let alice = caller(&app, addr, "alice").await;
    let svc = caller(&app, addr, "svc").await;
    let bob = caller(&app, addr, "bob").await;
    let digest = format!("sha256:{}", "ab".repeat(32));
    let evaluate = json!({
        "item_id": "left-pad", "action": "publish",
        "attributes": attributes(0.9, "suspicious", 0), "digests": [digest],
    });
    let evaluations = "/v1/repos/npm/policy/evaluations";

    // Decisions are a service's: bob, a viewer, is refused.
    let (status, e) = bob.post(evaluations, "eval-1", evaluate.clone()).await;
    assert_eq!((status, code(&e)), (403, Some("forbidden")), "{e}");
    let (status, decided) = svc.post(evaluations, "eval-1", evaluate.clone()).await;
    assert_eq!(
        (status, decided["decision"].as_str()),
        (200, Some("quarantine")),
        "{decided}"
    );
    let (status, e) = svc
        .post("/v1/repos/pypi/policy/evaluations", "e2", evaluate)
        .await;
    assert!(
        status == 404 || status == 503,
        "an unbound repo fails closed: {status} {e}"
    );

    // The case, listed and read; the blob refused while it is open.
    let case = "/v1/repos/npm/quarantine/left-pad";
    eventually(DEADLINE, || async { alice.get(case).await.0 == 200 })
        .await
        .expect("the case is projected");
    let (_, detail) = alice.get(case).await;
    assert_eq!(detail["status"], "quarantined", "{detail}");
    let (status, page) = alice
        .get("/v1/repos/npm/quarantine?status=quarantined")
        .await;
    assert_eq!((status, &page["total"]), (200, &json!(1)), "{page}");
    let (status, page) = alice
        .get("/v1/repos/npm/quarantine?status=released&limit=10")
        .await;
    assert_eq!((status, &page["total"]), (200, &json!(0)), "{page}");
    let (status, e) = alice.get("/v1/repos/npm/quarantine?status=open").await;
    assert_eq!((status, e["field"].as_str()), (400, Some("status")), "{e}");
    let (status, e) = alice.get("/v1/repos/npm/quarantine/nothing").await;
    assert_eq!((status, code(&e)), (404, Some("not_found")), "{e}");
    let blob = format!("/v1/repos/npm/blobs/{digest}");
    let (status, e) = svc.get(&blob).await;
    assert_eq!((status, code(&e)), (423, Some("quarantined_blob")), "{e}");

    // A reason is required; released once, the blob reads again; rejected after: 409.
    let (status, e) = alice
        .post(&format!("{case}/release"), "r0", json!({}))
        .await;
    assert_eq!((status, code(&e)), (400, Some("bad_request")), "{e}");
    let (status, released) = alice
        .post(
            &format!("{case}/release"),
            "r1",
            json!({"reason": "scanned by hand"}),
        )
        .await;
    assert_eq!(status, 200, "{released}");
    let (status, again) = alice
        .post(
            &format!("{case}/release"),
            "r1",
            json!({"reason": "scanned by hand"}),
        )
        .await;
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &json!(true)),
        "{again}"
    );
    eventually(DEADLINE, || async { svc.get(&blob).await.0 == 200 })
        .await
        .expect("the released blob reads");
    let (_, allowed) = svc.get(&blob).await;
    assert_eq!(
        (&allowed["allowed"], &allowed["case"]),
        (&json!(true), &json!("released"))
    );
    let (status, e) = alice
        .post(
            &format!("{case}/reject"),
            "j1",
            json!({"reason": "too late"}),
        )
        .await;
    assert_eq!((status, code(&e)), (409, Some("invalid_state")), "{e}");
    let (status, e) = alice
        .post(
            "/v1/repos/npm/quarantine/nothing/reject",
            "j2",
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!((status, code(&e)), (404, Some("not_found")), "{e}");

    stop.cancel();
    app.stop().await;
}

#[tokio::test]
async fn the_seed_routes_need_a_token_and_answer_other_methods_with_the_json_error() {
    let app = spawn_app_with_users().await;
    let (addr, stop) = serve(&app).await;
    let (status, e) = request(addr, "GET", "/admin/catalog-policy-runs", &[], b"").await;
    assert_eq!((status, code(&e)), (401, Some("unauthenticated")), "{e}");
    // Who asks is settled before what is asked.
    let (status, e) = request(addr, "GET", "/admin/catalog-policy-runs?limit=-1", &[], b"").await;
    assert_eq!((status, code(&e)), (401, Some("unauthenticated")), "{e}");
    let alice = caller(&app, addr, "alice").await;
    let headers = [("Authorization", alice.auth.as_str())];
    let (status, e) = request(addr, "DELETE", "/admin/catalog-policy-runs", &headers, b"").await;
    assert_eq!((status, code(&e)), (404, Some("not_found")), "{e}");
    let (status, e) = request(addr, "GET", "/v1/commands/policy.create", &headers, b"").await;
    assert_eq!((status, code(&e)), (404, Some("not_found")), "{e}");
    stop.cancel();
    app.stop().await;
}

#[tokio::test]
async fn a_wait_for_naming_an_event_never_recorded_is_a_bad_request_not_a_retry() {
    let app = spawn_app_with_users().await;
    let (addr, stop) = serve(&app).await;
    let alice = caller(&app, addr, "alice").await;
    let headers = [("Authorization", alice.auth.as_str())];
    let query = |id: &str| {
        serde_json::to_vec(&json!({"limit": 5, "wait_for": {
            "aggregate": "policy", "aggregate_id": id, "sequence": 1, "timeout_ms": 0}}))
        .unwrap()
    };
    let (status, e) = request(
        addr,
        "POST",
        "/v1/queries/audit.log",
        &headers,
        &query("nope"),
    )
    .await;
    assert_eq!(
        (status, e["field"].as_str()),
        (400, Some("wait_for.sequence")),
        "{e}"
    );
    stop.cancel();
    app.stop().await;
}
