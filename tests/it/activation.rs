//! Two-phase activation end to end: import → Prepare → run succeeds with exact counters →
//! Promote → public catalog; a second version's diff equals a direct recount; the external
//! subscriber receives one `policy.promoted` per promotion, in order.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use gatehouse::client::{Client, ClientError};
use gatehouse_events::catalog::{PublicCatalogPage, PublicCatalogQuery};
use gatehouse_events::envelope::RejectionCode;
use gatehouse_events::run::{
    DiffRun, GetRun, PolicyPromotedNotice, PrepareRun, PromoteRun, RunDiff, RunStatus, RunView,
};
use gatehouse_events::subjects;
use serde_json::json;

use crate::fixtures::draft;
use crate::helpers::{env, eventually, spawn_app, TestApp};

/// A deterministic item: (id, attributes, expected outcome under `fixtures::rules(threshold)`).
fn item(i: u64, threshold: f64) -> (String, serde_json::Value, &'static str) {
    let quality = ((i * 7919) % 1000) as f64 / 1000.0;
    let clean = !i.is_multiple_of(17);
    let banned = i.is_multiple_of(23);
    let tags = if banned {
        json!(["news", "banned"])
    } else {
        json!(["news"])
    };
    let attributes = json!({
        "kind": if i.is_multiple_of(3) { "video" } else { "image" },
        "quality": quality,
        "tags": tags,
        "scan": {"status": if clean { "clean" } else { "infected" }, "critical": 0}
    });
    let outcome = if !clean {
        "quarantine"
    } else if quality < threshold || banned {
        "deny"
    } else {
        "allow"
    };
    (format!("m-{i:05}"), attributes, outcome)
}

/// Publishes `n` ready items to the catalog stream and waits until the catalog table has them.
async fn import(app: &TestApp, n: u64) {
    let items = (0..n).map(|i| {
        let (id, attributes, _) = item(i, 0.4);
        (id, attributes)
    });
    publish_ready(app, items).await;
}

/// Publishes each `(id, attributes)` as a ready item and waits until the catalog table holds
/// as many more items.
async fn publish_ready(
    app: &TestApp,
    items: impl IntoIterator<Item = (String, serde_json::Value)>,
) {
    let js = gatehouse::broker::jetstream(app.client.nats());
    gatehouse::broker::ensure_catalog_stream(&js, &app.settings)
        .await
        .unwrap();
    let want = app.count("SELECT count(*) FROM catalog_items").await;
    let mut published = 0;
    let mut acks = Vec::new();
    for (id, attributes) in items {
        let body = json!({"op": "upsert", "id": id, "status": "ready", "attributes": attributes});
        let subject = subjects::catalog_item(&app.settings.namespace, &id);
        acks.push(
            js.publish(subject, serde_json::to_vec(&body).unwrap().into())
                .await
                .unwrap(),
        );
        published += 1;
        if acks.len() >= 1000 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let want = want + published;
    eventually(Duration::from_secs(60), || async {
        app.count("SELECT count(*) FROM catalog_items").await == want
    })
    .await
    .expect("the catalog projector caught up");
}

async fn run_view(app: &TestApp, run_id: &str) -> Result<RunView, ClientError> {
    app.client
        .query(
            "run",
            "get",
            &GetRun {
                run_id: run_id.into(),
            },
        )
        .await
}

async fn wait_for_status(app: &TestApp, run_id: &str, status: RunStatus) -> RunView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let view = run_view(app, run_id).await.ok();
        match view {
            Some(v) if v.status == status => return v,
            other if tokio::time::Instant::now() >= deadline => {
                panic!("run {run_id} never reached {status:?}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn prepare(app: &TestApp, version: u32) -> String {
    let body = PrepareRun {
        policy_id: "media".into(),
        version,
        batch_size: Some(500),
        coverage_threshold: None,
        max_errors: None,
    };
    let done = app
        .client
        .command("policy", "prepare", &app.sender("carol"), body)
        .await
        .unwrap();
    done.detail["run_id"].as_str().unwrap().to_owned()
}

async fn promote(app: &TestApp, run_id: &str) {
    let body = PromoteRun {
        run_id: run_id.into(),
        coverage_threshold: None,
        max_errors: None,
    };
    app.client
        .command("policy", "promote", &app.sender("dave"), body)
        .await
        .unwrap();
}

/// Every public item id of the policy, page by page.
async fn public_ids(app: &TestApp) -> (Option<u32>, Vec<String>) {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let q = PublicCatalogQuery {
            policy_id: "media".into(),
            after: after.clone(),
            limit: Some(1000),
        };
        let page: PublicCatalogPage = app.client.query("catalog", "public", &q).await.unwrap();
        let last = page.items.last().map(|i| i.item_id.clone());
        ids.extend(page.items.into_iter().map(|i| i.item_id));
        if last.is_none() {
            return (page.active_version, ids);
        }
        after = last;
    }
}

#[tokio::test]
async fn prepare_promote_and_announce_two_versions_end_to_end() {
    let mut app = spawn_app().await;
    app.start_worker();
    let n = 10_000;
    app.policy_with_versions("media", &[0.4]).await;
    import(&app, n).await;

    // v1: exact counters, then the public catalog holds exactly v1's allowed items.
    let run1 = prepare(&app, 1).await;
    let view = wait_for_status(&app, &run1, RunStatus::Success).await;
    let expected = |outcome: &str| (0..n).filter(|&i| item(i, 0.4).2 == outcome).count() as u64;
    let c = view.counters;
    assert_eq!((c.total_ready_snapshot, c.processed), (n, n));
    assert_eq!(
        (c.eligible, c.ineligible, c.quarantined, c.pending, c.errors),
        (
            expected("allow"),
            expected("deny"),
            expected("quarantine"),
            0,
            0
        )
    );
    assert!(view.ready_to_promote, "{:?}", view.blocking_reasons);
    promote(&app, &run1).await;
    let mut want: Vec<String> = (0..n)
        .filter(|&i| item(i, 0.4).2 == "allow")
        .map(|i| item(i, 0.4).0)
        .collect();
    want.sort();
    eventually(Duration::from_secs(20), || async {
        public_ids(&app).await == (Some(1), want.clone())
    })
    .await
    .expect("the public catalog flipped to v1");

    // v2: the diff equals a direct recount.
    app.client
        .command(
            "policy",
            "draft",
            &app.sender("bob"),
            draft("media", 0.6, "v2"),
        )
        .await
        .unwrap();
    let run2 = prepare(&app, 2).await;
    wait_for_status(&app, &run2, RunStatus::Success).await;
    let diff: RunDiff = app
        .client
        .query(
            "run",
            "diff",
            &DiffRun {
                run_id: run2.clone(),
            },
        )
        .await
        .unwrap();
    let recount = |from: &str, to: &str| {
        (0..n)
            .filter(|&i| from.contains(item(i, 0.4).2) && to.contains(item(i, 0.6).2))
            .count() as u64
    };
    assert_eq!(diff.active_version, Some(1));
    assert_eq!(diff.regressions, recount("allow", "deny quarantine"));
    assert_eq!(diff.improvements, recount("deny quarantine", "allow"));
    assert_eq!(
        diff.unchanged,
        (0..n).filter(|&i| item(i, 0.4).2 == item(i, 0.6).2).count() as u64
    );
    assert_eq!(diff.newly_evaluated, 0);
    assert!(diff.regressions > 0);
    assert_eq!(
        diff.top_regressions.len(),
        diff.regressions.min(50) as usize
    );
    promote(&app, &run2).await;

    // The external subscriber reads both promotions, in order, through its durable consumer.
    let notices = subscriber_notices(&app, 2).await;
    let versions: Vec<(u32, Option<u32>)> = notices
        .iter()
        .map(|n| (n.version, n.previous_version))
        .collect();
    assert_eq!(versions, vec![(1, None), (2, Some(1))]);
    assert_eq!(notices[1].run_id, run2);
    app.stop().await;
}

/// Reads `count` notices as the `subscriber` user, from the beginning of its durable consumer.
async fn subscriber_notices(app: &TestApp, count: usize) -> Vec<PolicyPromotedNotice> {
    let nats = async_nats::ConnectOptions::with_user_and_password(
        "subscriber".into(),
        env("GATEHOUSE_SUBSCRIBER_PASSWORD"),
    )
    .custom_inbox_prefix("_INBOX_subscriber")
    .connect(env("NATS_URL"))
    .await
    .unwrap();
    let js = jetstream::new(nats);
    let stream = js
        .get_stream_no_info(subjects::notify_stream(&app.settings.namespace))
        .await
        .unwrap();
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_consumer(subjects::SUBSCRIBER_CONSUMER)
        .await
        .unwrap();
    let mut notices = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while notices.len() < count && tokio::time::Instant::now() < deadline {
        let mut batch = consumer
            .fetch()
            .max_messages(10)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        while let Some(Ok(message)) = batch.next().await {
            notices.push(serde_json::from_slice(&message.payload).unwrap());
            message.double_ack().await.unwrap();
        }
    }
    notices
}

#[tokio::test]
async fn concurrent_prepares_of_one_policy_start_exactly_one_run() {
    let mut app = spawn_app().await;
    app.start_worker();
    app.policy_with_versions("media", &[0.4]).await;
    import(&app, 200).await;
    let prepares = (0..4).map(|_| {
        let (client, sender): (Client, _) = (app.client.clone(), app.sender("carol"));
        async move {
            let body = PrepareRun {
                policy_id: "media".into(),
                version: 1,
                batch_size: Some(10),
                coverage_threshold: None,
                max_errors: None,
            };
            client.command("policy", "prepare", &sender, body).await
        }
    });
    let results = futures::future::join_all(prepares).await;
    let started = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(ClientError::Rejected(e)) if e.code == RejectionCode::AlreadyRunning && e.message.contains("media:1")))
        .count();
    assert_eq!((started, refused), (1, 3), "{results:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'RunPrepared'")
            .await,
        1
    );
    // Only the started run's snapshot is kept.
    assert_eq!(
        app.count("SELECT count(DISTINCT snapshot_id) FROM run_snapshot")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn promote_is_refused_with_its_reasons_unless_the_run_succeeded_within_thresholds() {
    let mut app = spawn_app().await;
    app.policy_with_versions("media", &[0.4]).await;
    import(&app, 100).await;
    // No worker yet: the run stays running.
    let run = prepare(&app, 1).await;
    let body = PromoteRun {
        run_id: run.clone(),
        coverage_threshold: None,
        max_errors: None,
    };
    refused_promote(&app, &body, "status").await;
    // Cancelled: refused.
    let cancel = gatehouse_events::run::RunRef {
        run_id: run.clone(),
    };
    app.client
        .command("policy", "cancel_run", &app.sender("dave"), cancel.clone())
        .await
        .unwrap();
    refused_promote(&app, &body, "status").await;
    // Resumed with a worker: it succeeds, and then promotes.
    app.client
        .command("policy", "resume_run", &app.sender("dave"), cancel)
        .await
        .unwrap();
    app.start_worker();
    wait_for_status(&app, &run, RunStatus::Success).await;
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'PolicyPromoted'")
            .await,
        0,
        "the refusals promoted nothing"
    );
    promote(&app, &run).await;
    let query = gatehouse_events::policy::GetPolicy {
        policy_id: "media".into(),
    };
    eventually(Duration::from_secs(30), || async {
        let policy: Result<gatehouse_events::policy::PolicySummary, _> =
            app.client.query("policy", "get", &query).await;
        policy.is_ok_and(|p| p.active_version == Some(1))
    })
    .await
    .expect("version 1 is active");
    app.stop().await;
}

/// `promote` of `body`, expected refused as `not_ready` with a reason for `condition`; checks
/// that the refusal stored no event.
async fn refused_promote(app: &TestApp, body: &PromoteRun, condition: &str) {
    let before = app.count("SELECT count(*) FROM events").await;
    match app
        .client
        .command("policy", "promote", &app.sender("dave"), body.clone())
        .await
    {
        Err(ClientError::Rejected(e)) => {
            assert_eq!(e.code, RejectionCode::NotReady, "{e:?}");
            assert!(
                e.details.iter().any(|d| d["condition"] == condition),
                "{condition}: {e:?}"
            );
        }
        other => panic!("promote was not refused: {other:?}"),
    }
    assert_eq!(
        app.count("SELECT count(*) FROM events").await,
        before,
        "a refused promote changes nothing"
    );
}

#[tokio::test]
async fn promote_is_refused_above_the_error_threshold_and_from_a_failed_run_changing_nothing() {
    let mut app = spawn_app().await;
    app.policy_with_versions("media", &[0.4, 0.6]).await;
    import(&app, 50).await;
    // Three items that do not fit the schema (a string quality): each run counts them as errors.
    let odd = ["odd-1", "odd-2", "odd-3"].map(|id| {
        let attributes = json!({"kind": "video", "quality": "high", "tags": [], "color": "red",
            "scan": {"status": "clean", "critical": 0}});
        (id.to_owned(), attributes)
    });
    publish_ready(&app, odd).await;
    app.start_worker();

    // A successful run with 3 errors: refused at the default (no error allowed) ...
    let run = prepare(&app, 1).await;
    let view = wait_for_status(&app, &run, RunStatus::Success).await;
    assert_eq!(view.counters.errors, 3, "{view:?}");
    let mut body = PromoteRun {
        run_id: run.clone(),
        coverage_threshold: None,
        max_errors: None,
    };
    refused_promote(&app, &body, "errors").await;
    body.max_errors = Some(2);
    refused_promote(&app, &body, "errors").await;
    // ... and accepted once the promoter allows them.
    body.max_errors = Some(3);
    app.client
        .command("policy", "promote", &app.sender("dave"), body)
        .await
        .expect("promoted with max_errors 3");

    // A failed run of version 2 is never promoted.
    app.worker.take().expect("a worker runs").stop().await;
    let failed = prepare(&app, 2).await;
    let fail = gatehouse_events::run::FailRun {
        run_id: failed.clone(),
        epoch: 1,
        reason: "the operator pulled the plug".into(),
    };
    app.client
        .command("policy", "fail_run", &app.sender("worker"), fail)
        .await
        .unwrap();
    wait_for_status(&app, &failed, RunStatus::Failed).await;
    let body = PromoteRun {
        run_id: failed,
        coverage_threshold: None,
        max_errors: Some(1_000),
    };
    refused_promote(&app, &body, "status").await;
    app.stop().await;
}

#[tokio::test]
async fn an_undecodable_promotion_is_dead_lettered_and_later_promotions_are_still_announced() {
    let mut app = spawn_app().await;
    app.start_worker();
    let ns = app.settings.namespace.clone();
    let js = jetstream::new(app.client.nats().clone());
    js.publish(
        subjects::event(&ns, "policy", "junk", "PolicyPromoted"),
        "not an event record".into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    app.policy_with_versions("media", &[0.4]).await;
    import(&app, 100).await;
    let run = prepare(&app, 1).await;
    wait_for_status(&app, &run, RunStatus::Success).await;
    promote(&app, &run).await;

    // The notifier reads one record at a time: the junk must not block the promotion behind it.
    let notices = subscriber_notices(&app, 1).await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].run_id, run);
    let dlq = js
        .get_stream(subjects::dead_letter_stream(&ns))
        .await
        .expect("the dead-letter stream");
    let subject = subjects::dead_letter(&ns, &subjects::projector_consumer(&ns, "notifier"));
    let letter = dlq
        .get_last_raw_message_by_subject(&subject)
        .await
        .expect("the notifier's dead letter");
    let reason = letter
        .headers
        .get(gatehouse_events::metadata::HEADER_DLQ_REASON)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    assert!(reason.contains("undecodable event record"), "{reason}");
    app.stop().await;
}
