//! Operations: `gatehouse doctor` on a whole system (every role running), naming an altered
//! consumer and a dead letter; `/metrics`, `/readyz` and the request timeout over a real port.

use std::time::Duration;

use gatehouse::ops::doctor::{self, Options, Report, Thresholds};
use gatehouse::ops::expected::RoleSettings;
use gatehouse_events::subjects;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::fixtures::create_policy;
use crate::helpers::{env, eventually, spawn_app_with_users, TestApp};
use crate::http_client::{authorization, send, serve, serve_within};

/// Every role of `gatehouse up` on `app`'s namespace: the ones spawn_app starts, plus the
/// worker, releaser, indexer, categoriser and flag monitor.
async fn whole_system() -> (TestApp, CancellationToken) {
    let mut app = spawn_app_with_users().await;
    app.start_worker();
    app.start_releaser();
    app.start_indexer(Default::default());
    let stop = CancellationToken::new();
    let s = app.settings.clone();
    tokio::spawn(gatehouse::category::categoriser::run(
        s.clone(),
        stop.clone(),
    ));
    tokio::spawn(gatehouse::flag::monitor::run(s, stop.clone()));
    (app, stop)
}

fn options(app: &TestApp, journey: bool) -> Options {
    Options {
        roles: RoleSettings {
            projector_ack_wait: app.projector_settings.ack_wait,
            worker_ack_wait: gatehouse::worker::WorkerSettings::default().ack_wait,
            indexer_max_deliver: gatehouse::catalog::indexer::IndexerSettings::default()
                .max_deliver,
        },
        thresholds: Thresholds::default(),
        journey_actor: journey.then(|| "alice".to_owned()),
        journey_deadline: Duration::from_secs(60),
        client_user: Some(("bob".into(), env("GATEHOUSE_BOB_PASSWORD"))),
    }
}

/// Runs the doctor until `done` holds for its report (the roles create their consumers as
/// they start), then returns that report; the last report if it never does.
async fn doctor_until(app: &TestApp, options: &Options, done: impl Fn(&Report) -> bool) -> Report {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = doctor::run(&app.settings, options).await;
        if done(&report) || tokio::time::Instant::now() >= until {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn failed<'a>(report: &'a Report, name: &str) -> Option<&'a str> {
    report
        .checks
        .iter()
        .find(|c| !c.ok && c.name == name)
        .map(|c| c.detail.as_str())
}

#[tokio::test]
async fn the_doctor_passes_on_a_fresh_system_and_its_journey_leaves_no_items() {
    let (app, stop) = whole_system().await;
    let quick = options(&app, false);
    let report = doctor_until(&app, &quick, |r| r.ok).await;
    assert!(report.ok, "{}", report.text());
    let report = doctor::run(&app.settings, &options(&app, true)).await;
    assert!(report.ok, "{}", report.text());
    for step in [
        "create", "draft", "import", "prepare", "run", "promote", "read", "clean up",
    ] {
        let name = format!("journey: {step}");
        assert!(
            report.checks.iter().any(|c| c.name == name),
            "{name}: {}",
            report.text()
        );
    }
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name == "permissions: client account"
                && c.detail.starts_with("bob cannot read stream")),
        "{}",
        report.text()
    );
    eventually(Duration::from_secs(30), || async {
        app.count("SELECT count(*) FROM catalog_items WHERE NOT deleted")
            .await
            == 0
    })
    .await
    .expect("the journey's scratch items are deleted");
    stop.cancel();
    app.stop().await;
}

#[tokio::test]
async fn the_doctor_names_an_altered_consumer_and_a_dead_letter() {
    let (app, stop) = whole_system().await;
    let quick = options(&app, false);
    let report = doctor_until(&app, &quick, |r| r.ok).await;
    assert!(report.ok, "{}", report.text());
    let ns = &app.settings.namespace;
    let js = gatehouse::broker::jetstream(app.client.nats());
    // An operator "fixes" the audit projector's ack wait by hand.
    let audit = subjects::projector_consumer(ns, "audit");
    let stream = js.get_stream(subjects::events_stream(ns)).await.unwrap();
    let mut config = stream.consumer_info(&audit).await.unwrap().config.clone();
    config.ack_wait = Duration::from_secs(45);
    stream.update_consumer(config).await.unwrap();
    // A promotion that is no event record: the notifier parks it.
    js.publish(
        subjects::event(ns, "policy", "junk", "PolicyPromoted"),
        "not an event record".into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let dlq = subjects::dead_letter(ns, &subjects::projector_consumer(ns, "notifier"));
    let report = doctor_until(&app, &quick, |r| failed(r, "dead letters").is_some()).await;
    eprintln!("{}", report.text());
    assert!(!report.ok);
    let altered = failed(&report, &format!("consumer {audit}")).unwrap_or_default();
    assert!(
        altered.contains("ack_wait is 45s, expected 2s"),
        "{}",
        report.text()
    );
    let letters = failed(&report, "dead letters").unwrap_or_default();
    assert!(
        letters.contains(&format!("1 on {dlq}")),
        "{}",
        report.text()
    );
    assert!(report.text().ends_with(" checks failed\n"));
    stop.cancel();
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_operations_by_outcome_and_read_the_consumers() {
    let app = spawn_app_with_users().await;
    let (addr, stop) = serve(&app).await;
    let auth = authorization(&app, "alice").await;
    let body = serde_json::to_vec(&create_policy("media")).unwrap();
    let headers = [
        ("Authorization", auth.as_str()),
        ("Idempotency-Key", "ops-1"),
    ];
    assert_eq!(
        send(addr, "POST", "/v1/commands/policy.create", &headers, &body)
            .await
            .status,
        200
    );
    let missing = serde_json::to_vec(&json!({"policy_id": "nope"})).unwrap();
    assert_eq!(
        send(addr, "POST", "/v1/queries/policy.get", &headers, &missing)
            .await
            .status,
        404
    );
    let metrics = send(addr, "GET", "/metrics", &[], b"").await;
    let content_type = metrics
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let text = metrics.text;
    assert_eq!(metrics.status, 200, "{text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for line in [
        "gatehouse_operations_total{kind=\"command\",operation=\"policy.create\",outcome=\"ok\"}".to_owned(),
        "gatehouse_operations_total{kind=\"query\",operation=\"policy.get\",outcome=\"not_found\"}".to_owned(),
        "gatehouse_operation_duration_seconds_count{kind=\"command\",operation=\"policy.create\",outcome=\"ok\"}".to_owned(),
        "gatehouse_scrape_up{source=\"nats\"} 1".to_owned(),
        "gatehouse_scrape_up{source=\"postgres\"} 1".to_owned(),
        "gatehouse_relay_unpublished_events ".to_owned(),
        format!(
            "gatehouse_consumer_pending_messages{{consumer=\"{}\",stream=\"{}\"}}",
            subjects::projector_consumer(&app.settings.namespace, "audit"),
            subjects::events_stream(&app.settings.namespace)
        ),
    ] {
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
    stop.cancel();
    app.stop().await;
}

#[tokio::test]
async fn readiness_names_the_missing_streams_and_a_slow_request_times_out_as_json() {
    let app = spawn_app_with_users().await;
    // A process expecting another namespace's streams, which nobody created.
    let mut elsewhere = app.settings.clone();
    elsewhere.namespace = format!("{}_x", app.settings.namespace);
    let (addr, stop) = serve_within(&app, &elsewhere, Duration::from_millis(300)).await;
    let ready = send(addr, "GET", "/readyz", &[], b"").await;
    let error: Value = serde_json::from_str(&ready.text).unwrap();
    assert_eq!(
        (ready.status, error["code"].as_str()),
        (503, Some("unavailable")),
        "{error}"
    );
    let events = subjects::events_stream(&elsewhere.namespace);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains(&format!("stream {events}: missing")),
        "{error}"
    );
    assert!(
        error["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["check"] == format!("stream {events}")),
        "{error}"
    );
    // A query waiting for a sequence nobody wrote outlasts the 300 ms timeout.
    let auth = authorization(&app, "alice").await;
    let query = json!({"policy_id": "media", "wait_for": {
        "aggregate": "policy", "aggregate_id": "media", "sequence": 99, "timeout_ms": 5000}});
    let slow = send(
        addr,
        "POST",
        "/v1/queries/policy.get",
        &[("Authorization", auth.as_str())],
        &serde_json::to_vec(&query).unwrap(),
    )
    .await;
    let content_type = slow
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let error = slow.json;
    assert_eq!(
        (slow.status, error["code"].as_str()),
        (503, Some("unavailable")),
        "{}",
        slow.text
    );
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("GATEHOUSE_HTTP_TIMEOUT_MS"),
        "{error}"
    );
    stop.cancel();
    app.stop().await;
}
