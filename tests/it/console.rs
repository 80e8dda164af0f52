//! The web console end to end: a real Gatehouse (every role in-process against the real
//! nats-server and Postgres) serving the HTTP API and the console, driven in headless Chromium
//! by `tests/console/e2e.mjs` (playwright-core, installed by `scripts/test.d/console.sh`).
//! The script signs in, creates a policy, drafts, prepares, promotes, releases, moves and
//! stops a rollout, reads the audit view, and checks that a viewer is offered no write.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use gatehouse_events::subjects;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fixtures::{create_policy, draft};
use crate::helpers::{eventually, spawn_app_with_users, TestApp};
use crate::http_client::{bearer, issue, request, send, serve};

/// Items in the catalog the runs evaluate: enough batches for the progress bar to move.
const ITEMS: u64 = 2000;

/// What the host system publishes: `ITEMS` ready items, qualities spread over 0.05–0.95,
/// every fiftieth from the eighth (`m-00007`, ...) with a scan that is not clean.
async fn import_catalog(app: &TestApp) {
    let js = gatehouse::broker::jetstream(app.client.nats());
    gatehouse::broker::ensure_catalog_stream(&js, &app.settings)
        .await
        .unwrap();
    let mut acks = Vec::new();
    for i in 0..ITEMS {
        let id = format!("m-{i:05}");
        let scan = if i % 50 == 7 { "infected" } else { "clean" };
        let body = json!({"op": "upsert", "id": id, "status": "ready", "attributes": {
            "kind": "video", "quality": (i % 10) as f64 / 10.0 + 0.05,
            "scan": {"status": scan, "critical": 0}}});
        let subject = subjects::catalog_item(&app.settings.namespace, &id);
        acks.push(
            js.publish(subject, serde_json::to_vec(&body).unwrap().into())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
    eventually(Duration::from_secs(60), || async {
        app.count("SELECT count(*) FROM catalog_items").await == ITEMS as i64
    })
    .await
    .expect("the catalog projector caught up");
}

fn console_dir() -> PathBuf {
    // Read at run time: a test binary may be reused from another checkout.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("run with cargo test");
    PathBuf::from(manifest).join("console")
}

#[tokio::test]
async fn the_console_works_end_to_end_in_headless_chromium() {
    let dir = console_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run the tests with scripts/test.sh \
         (scripts/test.d/console.sh installs it and Chromium)",
        dir.display()
    );
    let mut app = spawn_app_with_users().await;
    let (addr, stop) = serve(&app).await;
    let (_, alice) = issue(&app, "alice").await;
    let (_, bob) = issue(&app, "bob").await;
    import_catalog(&app).await;

    let mut child = tokio::process::Command::new("node")
        .arg(dir.join("e2e.mjs"))
        .env("GATEHOUSE_URL", format!("http://{addr}"))
        .env("ALICE_TOKEN", &alice)
        .env("BOB_TOKEN", &bob)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node (scripts/test.d/console.sh installs it)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut steps = Vec::new();
    let script = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("e2e: {line}");
            if line == "gatehouse:start-worker" {
                app.start_worker();
            }
            steps.push(line);
        }
        child.wait().await.unwrap()
    };
    let status = tokio::time::timeout(Duration::from_secs(300), script)
        .await
        .expect("the console script finished within 5 minutes");
    assert!(
        status.success(),
        "the console script failed (its stderr above says at which step): {status}"
    );
    assert_eq!(
        steps.last().map(String::as_str),
        Some("console e2e: ok"),
        "{steps:?}"
    );
    stop.cancel();
    app.stop().await;
}

/// `GET path` (with `token` as a bearer): the status, the head and the body as text.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let answer = send(addr, "GET", path, &headers, b"").await;
    (answer.status, answer.head, answer.text)
}

/// `POST /v1/queries/access.whoami` with `token`: the status and the body.
async fn whoami(addr: SocketAddr, token: &str) -> (u16, Value) {
    let auth = bearer(token);
    request(
        addr,
        "POST",
        "/v1/queries/access.whoami",
        &[("Authorization", auth.as_str())],
        b"{}",
    )
    .await
}

#[tokio::test]
async fn the_console_is_served_and_a_runs_events_need_a_token_and_end_with_the_run() {
    let app = spawn_app_with_users().await;
    let (addr, stop) = serve(&app).await;
    let (_, alice) = issue(&app, "alice").await;

    let (status, head, _) = get(addr, "/", None).await;
    assert!(
        status / 100 == 3 && head.contains("location: /console"),
        "{head}"
    );
    let (status, head, body) = get(addr, "/console/policies/media", None).await;
    assert_eq!(status, 200);
    assert!(head.contains("text/html") && head.contains("content-security-policy"));
    assert!(body.contains("/console/assets/app.js"), "{body}");
    let (status, head, _) = get(addr, "/console/assets/api.js", None).await;
    assert_eq!(status, 200);
    assert!(head.contains("text/javascript"), "{head}");
    let (status, _, body) = get(addr, "/console/assets/nope.js", None).await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "not_found"
    );

    // Anyone with a token learns who they are and their roles, even holding none.
    let (_, nobody) = issue(&app, "mallory").await;
    for (user, token, roles) in [("alice", &alice, 6), ("mallory", &nobody, 0)] {
        let (status, me) = whoami(addr, token).await;
        assert_eq!(status, 200, "{me}");
        assert_eq!(me["user"], user);
        assert_eq!(me["roles"].as_array().unwrap().len(), roles, "{me}");
    }

    let (status, _, body) = get(addr, "/v1/runs/media:1/events", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "unauthenticated"
    );
    let (status, _, body) = get(addr, "/v1/runs/media:1/events", Some(&alice)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "not_found"
    );

    // An empty catalog: the run succeeds at once, so its stream sends `end` and closes.
    let c = &app.client;
    c.command(
        "policy",
        "create",
        &app.sender("alice"),
        create_policy("media"),
    )
    .await
    .unwrap();
    c.command(
        "policy",
        "draft",
        &app.sender("alice"),
        draft("media", 0.3, "v1"),
    )
    .await
    .unwrap();
    let prepare = json!({"policy_id": "media", "version": 1});
    c.command("policy", "prepare", &app.sender("alice"), prepare)
        .await
        .unwrap();
    // The runs read model may lag the command: poll until the route finds the run.
    eventually(Duration::from_secs(30), || async {
        get(addr, "/v1/runs/media%3A1/events", Some(&alice)).await.0 == 200
    })
    .await
    .expect("the run is readable");
    let (_, head, body) = get(addr, "/v1/runs/media%3A1/events", Some(&alice)).await;
    assert!(head.contains("text/event-stream"), "{head}");
    assert!(body.contains("event: end"), "{body}");
    assert!(body.contains("\"status\":\"success\""), "{body}");
    stop.cancel();
    app.stop().await;
}
