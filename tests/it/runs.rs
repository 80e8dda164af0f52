//! Evaluation runs end to end with real workers: Prepare → batch jobs → results and counters →
//! completion; a worker killed mid-run; cancel and resume; other versions untouched; live
//! evaluation of catalog changes.
//!
//! Catalog items are inserted straight into `catalog_items` (the catalog projector fills the
//! same table from the stream in production).

use std::sync::Arc;
use std::time::Duration;

use gatehouse::worker::WorkerSettings;
use gatehouse_events::catalog::{CatalogChange, PublicCatalogPage, PublicCatalogQuery};
use gatehouse_events::run::{
    DiffRun, EvaluationJob, PrepareRun, PromoteRun, RunCounters, RunDiff, RunRef,
};
use gatehouse_events::subjects;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use crate::fixtures::{create_policy, draft};
use crate::helpers::{eventually, spawn_app, TestApp};

const DEADLINE: Duration = Duration::from_secs(120);

/// A worker process, in-process.
struct Worker {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl Worker {
    /// Starts a worker with short waits: a killed worker's jobs come back after 2 s.
    fn start(app: &TestApp) -> Worker {
        Self::start_with(
            app,
            WorkerSettings {
                ack_wait: Duration::from_secs(2),
                ..fast()
            },
        )
    }

    fn start_with(app: &TestApp, settings: WorkerSettings) -> Worker {
        let stop = CancellationToken::new();
        let run = gatehouse::worker::run_with(app.settings.clone(), settings, stop.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = run.await {
                eprintln!("worker failed: {e:?}");
            }
        });
        Worker { task, stop }
    }

    /// Kills it where it stands, as by SIGKILL.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the worker stops gracefully")
            .expect("the worker task ends");
    }
}

/// Short waits, the production ack wait.
fn fast() -> WorkerSettings {
    WorkerSettings {
        retry_delay: Duration::from_millis(100),
        lag_wait: Duration::from_secs(2),
        fetch_expiry: Duration::from_millis(200),
        ..WorkerSettings::default()
    }
}

/// Item `i`'s attributes. Every 29th does not fit the schema (a string quality: an error),
/// every 13th has an unclean scan (quarantine), quality `i % 10 / 10` (deny below the
/// threshold), every 17th is banned (deny).
pub(crate) fn attributes(i: i64) -> serde_json::Value {
    if i % 29 == 0 {
        return serde_json::json!({"quality": "high", "color": "red"});
    }
    let scan = if i % 13 == 0 { "infected" } else { "clean" };
    let tags: Vec<&str> = if i % 17 == 0 { vec!["banned"] } else { vec![] };
    serde_json::json!({"kind": "video", "quality": (i % 10) as f64 / 10.0, "tags": tags,
        "scan": {"status": scan, "critical": 0}})
}

/// The outcome the fixture rules give item `i` with quality threshold `threshold`.
pub(crate) fn expected_outcome(i: i64, threshold: f64) -> &'static str {
    if i % 29 == 0 {
        "error"
    } else if i % 13 == 0 {
        "quarantine"
    } else if ((i % 10) as f64 / 10.0) < threshold || i % 17 == 0 {
        "deny"
    } else {
        "allow"
    }
}

/// Inserts ready items `m-<i>` for `i` in `1..=n`, updated a second ago, `stream_seq = i`.
pub(crate) async fn insert_items(app: &TestApp, n: i64) {
    let ids: Vec<String> = (1..=n).map(item_id).collect();
    let attributes: Vec<serde_json::Value> = (1..=n).map(attributes).collect();
    let seqs: Vec<i64> = (1..=n).collect();
    app.db
        .execute(
            "INSERT INTO catalog_items (item_id, status, deleted, attributes, updated_at, stream_seq)
             SELECT id, 'ready', false, a, now() - interval '1 second', s
               FROM unnest($1::text[], $2::jsonb[], $3::bigint[]) AS t(id, a, s)",
            &[&ids, &attributes, &seqs],
        )
        .await
        .expect("insert catalog items");
}

pub(crate) fn item_id(i: i64) -> String {
    format!("m-{i:06}")
}

/// Creates `policy_id` with one version per threshold.
pub(crate) async fn create(app: &TestApp, policy_id: &str, thresholds: &[f64]) {
    let c = &app.client;
    c.command(
        "policy",
        "create",
        &app.sender("alice"),
        create_policy(policy_id),
    )
    .await
    .expect("create");
    for t in thresholds {
        c.command(
            "policy",
            "draft",
            &app.sender("bob"),
            draft(policy_id, *t, "v"),
        )
        .await
        .expect("draft");
    }
}

/// Prepares `version` in batches of `batch_size`; returns the run id.
pub(crate) async fn prepare(
    app: &TestApp,
    policy_id: &str,
    version: u32,
    batch_size: u32,
) -> String {
    let cmd = PrepareRun {
        policy_id: policy_id.into(),
        version,
        batch_size: Some(batch_size),
        coverage_threshold: None,
        max_errors: None,
    };
    let done = app
        .client
        .command("policy", "prepare", &app.sender("carol"), cmd)
        .await
        .expect("prepare");
    assert!(done.events.iter().any(|e| e.event_type == "RunPrepared"));
    let runs = app
        .count(&format!("SELECT count(*) FROM events WHERE aggregate_id = '{policy_id}' AND event_type = 'RunPrepared'"))
        .await;
    format!("{policy_id}:{runs}")
}

async fn run_command(app: &TestApp, name: &str, run_id: &str) {
    let cmd = RunRef {
        run_id: run_id.into(),
    };
    app.client
        .command("policy", name, &app.sender("carol"), cmd)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// Waits until the `runs` read model shows `status`.
pub(crate) async fn wait_status(app: &TestApp, run_id: &str, status: &str) {
    eventually(DEADLINE, || async {
        let row = app
            .db
            .query_opt("SELECT status FROM runs WHERE run_id = $1", &[&run_id])
            .await
            .unwrap();
        row.is_some_and(|r| r.get::<_, String>(0) == status)
    })
    .await
    .unwrap_or_else(|_| panic!("run {run_id} never became {status}"));
}

/// The run's `run_progress` counters and batches done.
pub(crate) async fn progress(db: &tokio_postgres::Client, run_id: &str) -> (RunCounters, i32) {
    let row = db
        .query_opt(
            "SELECT processed, eligible, ineligible, quarantined, pending, errors, batches_done
               FROM run_progress WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .unwrap();
    let Some(row) = row else {
        return (RunCounters::default(), 0);
    };
    let n = |i: usize| row.get::<_, i64>(i) as u64;
    let counters = RunCounters {
        total_ready_snapshot: 0,
        processed: n(0),
        eligible: n(1),
        ineligible: n(2),
        quarantined: n(3),
        pending: n(4),
        errors: n(5),
    };
    (counters, row.get(6))
}

/// The outcomes stored for the run's snapshot items, counted directly over `eval_results`.
pub(crate) async fn recount(app: &TestApp, run_id: &str) -> RunCounters {
    let rows = app
        .db
        .query(
            "SELECT r.outcome, count(*) FROM runs u
               JOIN run_snapshot s ON s.snapshot_id = u.snapshot_id
               JOIN eval_results r ON r.policy_id = u.policy_id AND r.version = u.version
                                  AND r.item_id = s.item_id
              WHERE u.run_id = $1 GROUP BY r.outcome",
            &[&run_id],
        )
        .await
        .unwrap();
    let mut c = RunCounters::default();
    for row in rows {
        let n = row.get::<_, i64>(1) as u64;
        c.processed += n;
        match row.get::<_, &str>(0) {
            "allow" => c.eligible += n,
            "deny" => c.ineligible += n,
            "quarantine" => c.quarantined += n,
            "pending" => c.pending += n,
            _ => c.errors += n,
        }
    }
    c
}

/// Counters as the fixture rules predict them for items `1..=n` (none pending).
pub(crate) fn predicted(n: i64, threshold: f64) -> RunCounters {
    let mut c = RunCounters::default();
    for i in 1..=n {
        c.processed += 1;
        match expected_outcome(i, threshold) {
            "allow" => c.eligible += 1,
            "deny" => c.ineligible += 1,
            "quarantine" => c.quarantined += 1,
            _ => c.errors += 1,
        }
    }
    c
}

/// Watches `run_progress` until stopped; returns every violation of P3 seen (the outcomes add
/// up to `processed`, which equals the sum of the counted batches).
fn watch_invariants(app: &TestApp, run_id: &str) -> (CancellationToken, JoinHandle<Vec<String>>) {
    let (url, run_id) = (app.settings.database_url.clone(), run_id.to_owned());
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let (db, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        let mut violations = Vec::new();
        while !stopped.is_cancelled() {
            let row = db
                .query_opt(
                    "SELECT p.processed, p.eligible + p.ineligible + p.quarantined + p.pending + p.errors,
                            (SELECT coalesce(sum(processed), 0)::bigint FROM run_batches b WHERE b.run_id = p.run_id),
                            p.batches_done, (SELECT count(*) FROM run_batches b WHERE b.run_id = p.run_id)
                       FROM run_progress p WHERE p.run_id = $1",
                    &[&run_id],
                )
                .await
                .unwrap();
            if let Some(r) = row {
                let (p, sum, batches): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
                let (done, rows): (i32, i64) = (r.get(3), r.get(4));
                if p != sum || p != batches || i64::from(done) != rows {
                    violations.push(format!(
                        "processed {p}, outcomes {sum}, batches {batches}, done {done}/{rows}"
                    ));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        violations
    });
    (stop, task)
}

#[tokio::test]
async fn a_run_evaluates_every_snapshot_item_once_with_exact_counters() {
    let app = spawn_app().await;
    create(&app, "media", &[0.5]).await;
    insert_items(&app, 1_000).await;
    // Not ready at the cutoff, amid the ids of the first batch: outside the snapshot.
    app.db
        .batch_execute(
            "INSERT INTO catalog_items VALUES
              ('m-000050a', 'draft', false, '{}', now() - interval '1 second', 5000)",
        )
        .await
        .unwrap();
    let run_id = prepare(&app, "media", 1, 100).await;
    // After the cutoff: 6 snapshot items stop being ready, 4 are deleted, one leaves the
    // catalog table altogether, and two new items arrive (one amid the first batch's ids).
    let late = "{\"quality\": 0.9, \"tags\": [], \"kind\": \"x\",
                 \"scan\": {\"status\": \"clean\", \"critical\": 0}}";
    app.db
        .batch_execute(&format!(
            "UPDATE catalog_items SET status = 'draft', stream_seq = stream_seq + 10000
              WHERE item_id IN ('m-000001', 'm-000002', 'm-000003', 'm-000004', 'm-000005', 'm-000006');
             UPDATE catalog_items SET deleted = true, stream_seq = stream_seq + 10000
              WHERE item_id IN ('m-000007', 'm-000008', 'm-000009', 'm-000011');
             DELETE FROM catalog_items WHERE item_id = 'm-000012';
             INSERT INTO catalog_items VALUES
              ('late-1', 'ready', false, '{late}', now(), 20000),
              ('m-000060b', 'ready', false, '{late}', now(), 20001)"
        ))
        .await
        .unwrap();
    let (stop_watch, watch) = watch_invariants(&app, &run_id);
    let worker = Worker::start(&app);
    wait_status(&app, &run_id, "success").await;
    stop_watch.cancel();
    assert_eq!(
        watch.await.unwrap(),
        Vec::<String>::new(),
        "P3 held after every batch"
    );

    let (counters, batches_done) = progress(&app.db, &run_id).await;
    assert_eq!(
        counters,
        recount(&app, &run_id).await,
        "counters match the stored results"
    );
    let mut expected = predicted(1_000, 0.5);
    let changed = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12];
    for i in changed {
        match expected_outcome(i, 0.5) {
            "allow" => expected.eligible -= 1,
            "deny" => expected.ineligible -= 1,
            "quarantine" => expected.quarantined -= 1,
            _ => expected.errors -= 1,
        }
        expected.pending += 1;
    }
    assert_eq!(counters, expected);
    assert_eq!(batches_done, 10);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM run_batches WHERE run_id = '{run_id}'"
        ))
        .await,
        10
    );
    // Every snapshot item has its one result for (policy, version); the sweep added the rest.
    let snapshot_results = app
        .count(
            "SELECT count(*) FROM run_snapshot s JOIN runs u USING (snapshot_id)
               JOIN eval_results r ON r.policy_id = u.policy_id AND r.version = u.version AND r.item_id = s.item_id",
        )
        .await;
    assert_eq!(snapshot_results, 1_000);
    // Items outside the snapshot got theirs from the sweep, with no run; the item gone from
    // the catalog table is pending in the run.
    for (item, outcome, reason, run) in [
        ("late-1", "allow", None, None),
        ("m-000060b", "allow", None, None),
        ("m-000050a", "pending", Some("not ready"), None),
        (
            "m-000012",
            "pending",
            Some("not in the catalog"),
            Some(&*run_id),
        ),
    ] {
        let row = app
            .db
            .query_one(
                "SELECT outcome, reason, run_id FROM eval_results WHERE item_id = $1",
                &[&item],
            )
            .await
            .unwrap();
        let found: (&str, &str, Option<&str>) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(found.0, outcome, "{item}");
        assert!(reason.is_none_or(|r| r == found.1), "{item}: {found:?}");
        assert_eq!(found.2, run, "{item}");
    }
    let samples = app
        .db
        .query_one(
            "SELECT jsonb_array_length(error_samples) FROM run_progress",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(samples.get::<_, i32>(0) as u64, counters.errors.min(10));
    let final_counters: serde_json::Value = app
        .db
        .query_one(
            "SELECT final_counters FROM runs WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(final_counters["processed"], 1_000);
    assert_eq!(final_counters["errors"], counters.errors);
    worker.stop().await;
    app.stop().await;
}

/// A digest of every result stored for one version (including when each was written).
async fn digest(app: &TestApp, policy_id: &str, version: i32) -> (i64, String) {
    let row = app
        .db
        .query_one(
            "SELECT count(*), coalesce(md5(string_agg(item_id || outcome || coalesce(rule_id, '') || reason
                      || score::text || item_seq::text || coalesce(run_id, '') || evaluated_at::text, ','
                      ORDER BY item_id)), '')
               FROM eval_results WHERE policy_id = $1 AND version = $2",
            &[&policy_id, &version],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_run_never_changes_the_results_of_another_version() {
    let app = spawn_app().await;
    create(&app, "media", &[0.5, 0.8]).await;
    insert_items(&app, 600).await;
    let worker = Worker::start(&app);
    let first = prepare(&app, "media", 1, 100).await;
    wait_status(&app, &first, "success").await;
    let before = digest(&app, "media", 1).await;
    assert_eq!(before.0, 600);

    let second = prepare(&app, "media", 2, 100).await;
    wait_status(&app, &second, "success").await;
    assert_eq!(
        digest(&app, "media", 1).await,
        before,
        "P4: version 1 untouched"
    );
    let (v1, v2) = (
        progress(&app.db, &first).await.0,
        progress(&app.db, &second).await.0,
    );
    assert_eq!(v1, predicted(600, 0.5));
    assert_eq!(v2, predicted(600, 0.8));
    assert_ne!(v1, v2);
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_batch_whose_items_already_have_results_keeps_the_newer_and_replaces_the_older() {
    let app = spawn_app().await;
    create(&app, "media", &[0.5]).await;
    insert_items(&app, 300).await;
    let run_id = prepare(&app, "media", 1, 100).await;
    // Before any batch: the live evaluation got to two items of the second batch first, one
    // for a newer catalog change than the snapshot's (kept), one for an older one (replaced).
    app.db
        .batch_execute(
            "INSERT INTO eval_results (policy_id, version, item_id, outcome, rule_id, reason,
                                       score, item_seq, run_id, evaluated_at) VALUES
              ('media', 1, 'm-000150', 'quarantine', NULL, 'planted newer', 0, 100000, NULL, now()),
              ('media', 1, 'm-000151', 'quarantine', NULL, 'planted older', 0, 0, NULL, now())",
        )
        .await
        .unwrap();
    let worker = Worker::start(&app);
    wait_status(&app, &run_id, "success").await;
    let (counters, batches_done) = progress(&app.db, &run_id).await;
    assert_eq!(counters, predicted(300, 0.5), "every item counted once");
    assert_eq!(batches_done, 3);
    let by_item: std::collections::HashMap<String, (String, Option<String>, f64)> =
        results(&app, "media")
            .await
            .into_iter()
            .map(|(item, outcome, rule, score)| (item, (outcome, rule, score)))
            .collect();
    assert_eq!(by_item.len(), 300);
    assert_eq!(
        by_item["m-000150"].0, "quarantine",
        "the newer result stays"
    );
    assert_eq!(by_item["m-000151"].0, expected_outcome(151, 0.5));
    for i in (1..=300).filter(|&i| i != 150) {
        assert_eq!(by_item[&item_id(i)].0, expected_outcome(i, 0.5), "item {i}");
    }
    let reasons = app
        .count("SELECT count(*) FROM eval_results WHERE reason LIKE 'planted%'")
        .await;
    assert_eq!(reasons, 1);
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_worker_killed_mid_run_leaves_exact_counters_and_no_batch_counted_twice() {
    let app = spawn_app().await;
    create(&app, "media", &[0.5]).await;
    // Many small batches, so the kill lands mid-run.
    insert_items(&app, 5_000).await;
    let run_id = prepare(&app, "media", 1, 10).await;
    let (stop_watch, watch) = watch_invariants(&app, &run_id);
    // The production ack wait: jobs in hand are heartbeated, so it is short.
    let worker = Worker::start_with(&app, fast());
    eventually(DEADLINE, || async {
        progress(&app.db, &run_id).await.1 >= 10
    })
    .await
    .expect("some batches done");
    worker.kill().await;
    let (at_kill, _) = progress(&app.db, &run_id).await;
    assert!(at_kill.processed < 5_000, "killed mid-run");

    let restarted = tokio::time::Instant::now();
    let worker = Worker::start_with(&app, fast());
    wait_status(&app, &run_id, "success").await;
    // The killed worker's jobs came back after the 10 s ack wait, not a minute.
    let took = restarted.elapsed();
    assert!(took < Duration::from_secs(40), "recovered in {took:?}");
    stop_watch.cancel();
    assert_eq!(watch.await.unwrap(), Vec::<String>::new());
    let (counters, batches_done) = progress(&app.db, &run_id).await;
    assert_eq!(counters, predicted(5_000, 0.5));
    assert_eq!(counters, recount(&app, &run_id).await);
    assert_eq!(batches_done, 500);
    let rows = app
        .count(&format!(
            "SELECT count(*) FROM run_batches WHERE run_id = '{run_id}'"
        ))
        .await;
    assert_eq!(rows, 500, "each batch counted once");
    worker.stop().await;
    app.stop().await;
}

/// Messages left in the jobs work queue.
pub(crate) async fn queued_jobs(app: &TestApp) -> u64 {
    let js = gatehouse::broker::jetstream(app.client.nats());
    let mut stream = js
        .get_stream(subjects::jobs_stream(&app.settings.namespace))
        .await
        .expect("jobs stream");
    stream.info().await.expect("stream info").state.messages
}

/// Deletes every job left in the work queue (as a lost stream would).
async fn lose_queued_jobs(app: &TestApp) {
    let js = gatehouse::broker::jetstream(app.client.nats());
    let mut stream = js
        .get_stream(subjects::jobs_stream(&app.settings.namespace))
        .await
        .expect("jobs stream");
    let state = stream.info().await.expect("stream info").state.clone();
    for seq in state.first_sequence..=state.last_sequence {
        let _ = stream.delete_message(seq).await;
    }
}

#[tokio::test]
async fn the_watchdog_enqueues_the_missing_batches_of_a_stalled_run_again() {
    let app = spawn_app().await;
    create(&app, "media", &[0.5]).await;
    insert_items(&app, 2_000).await;
    let run_id = prepare(&app, "media", 1, 10).await;
    let worker = Worker::start(&app);
    eventually(DEADLINE, || async {
        progress(&app.db, &run_id).await.1 >= 10
    })
    .await
    .expect("some batches done");
    worker.kill().await;
    lose_queued_jobs(&app).await;
    assert_eq!(queued_jobs(&app).await, 0);
    let (at_loss, _) = progress(&app.db, &run_id).await;
    assert!(at_loss.processed < 2_000, "jobs were lost mid-run");

    let worker = Worker::start_with(
        &app,
        WorkerSettings {
            ack_wait: Duration::from_secs(2),
            stall_after: Duration::from_secs(2),
            ..fast()
        },
    );
    wait_status(&app, &run_id, "success").await;
    let (counters, batches_done) = progress(&app.db, &run_id).await;
    assert_eq!(counters, predicted(2_000, 0.5));
    assert_eq!(counters, recount(&app, &run_id).await);
    assert_eq!(batches_done, 200);
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn the_watchdog_fails_a_run_that_stays_stalled_past_its_limit_with_the_reason() {
    let app = spawn_app().await;
    create(&app, "media", &[0.5]).await;
    insert_items(&app, 2_000).await;
    let run_id = prepare(&app, "media", 1, 10).await;
    let worker = Worker::start(&app);
    eventually(DEADLINE, || async {
        progress(&app.db, &run_id).await.1 >= 10
    })
    .await
    .expect("some batches done");
    worker.kill().await;
    lose_queued_jobs(&app).await;
    let (_, batches_at_loss) = progress(&app.db, &run_id).await;

    // No re-enqueue allowed: the first stalled window is past the limit.
    let worker = Worker::start_with(
        &app,
        WorkerSettings {
            ack_wait: Duration::from_secs(2),
            stall_after: Duration::from_secs(2),
            stall_limit: 0,
            ..fast()
        },
    );
    wait_status(&app, &run_id, "failed").await;
    let failure: String = app
        .db
        .query_one("SELECT failure FROM runs WHERE run_id = $1", &[&run_id])
        .await
        .unwrap()
        .get(0);
    assert!(failure.starts_with("no progress for "), "{failure}");
    assert_eq!(
        progress(&app.db, &run_id).await.1,
        batches_at_loss,
        "nothing was re-enqueued"
    );
    worker.stop().await;
    app.stop().await;
}

/// The results of a policy's version 1, by item.
async fn results(app: &TestApp, policy_id: &str) -> Vec<(String, String, Option<String>, f64)> {
    app.db
        .query(
            "SELECT item_id, outcome, rule_id, score FROM eval_results
              WHERE policy_id = $1 AND version = 1 ORDER BY item_id",
            &[&policy_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[tokio::test]
async fn a_cancelled_run_stops_and_its_resume_ends_like_an_uninterrupted_run() {
    let app = spawn_app().await;
    create(&app, "media", &[0.5]).await;
    create(&app, "baseline", &[0.5]).await;
    // Many small batches, so the cancel lands mid-run.
    insert_items(&app, 1_000).await;
    let run_id = prepare(&app, "media", 1, 2).await;
    let worker = Worker::start(&app);
    eventually(DEADLINE, || async {
        progress(&app.db, &run_id).await.1 >= 3
    })
    .await
    .expect("some batches done");
    run_command(&app, "cancel_run", &run_id).await;
    wait_status(&app, &run_id, "cancelled").await;
    let (_, at_cancel) = progress(&app.db, &run_id).await;
    // Every job left is dropped: at most the jobs in hand when the cancel landed still commit.
    eventually(DEADLINE, || async { queued_jobs(&app).await == 0 })
        .await
        .expect("the jobs of the cancelled run are dropped");
    let (stopped, after_cancel) = progress(&app.db, &run_id).await;
    assert!(
        after_cancel <= at_cancel + 2,
        "{after_cancel} batches done, {at_cancel} at the cancel"
    );
    assert!(stopped.processed < 1_000);

    run_command(&app, "resume_run", &run_id).await;
    wait_status(&app, &run_id, "success").await;
    let (resumed, batches_done) = progress(&app.db, &run_id).await;
    assert_eq!(batches_done, 500);
    let epochs = app
        .count(&format!(
            "SELECT count(DISTINCT epoch) FROM run_batches WHERE run_id = '{run_id}'"
        ))
        .await;
    assert_eq!(epochs, 2, "batches of both epochs, each counted once");

    let baseline = prepare(&app, "baseline", 1, 50).await;
    wait_status(&app, &baseline, "success").await;
    assert_eq!(resumed, progress(&app.db, &baseline).await.0);
    assert_eq!(resumed, predicted(1_000, 0.5));
    assert_eq!(
        results(&app, "media").await,
        results(&app, "baseline").await
    );
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_batch_that_cannot_succeed_fails_the_run_with_its_reason() {
    let app = spawn_app().await;
    create(&app, "media", &[0.5]).await;
    insert_items(&app, 50).await;
    let run_id = prepare(&app, "media", 1, 10).await;
    // Batch 2 loses snapshot entries: the run could never reach its total.
    app.db
        .execute(
            "UPDATE run_snapshot_batches SET item_ids = item_ids[1:1] || item_ids[4:]
              WHERE batch = 2",
            &[],
        )
        .await
        .unwrap();
    let worker = Worker::start(&app);
    wait_status(&app, &run_id, "failed").await;
    let failure: String = app
        .db
        .query_one("SELECT failure FROM runs WHERE run_id = $1", &[&run_id])
        .await
        .unwrap()
        .get(0);
    assert!(
        failure.contains("has 8 rows in ordinals [20, 30)"),
        "{failure}"
    );
    eventually(DEADLINE, || async { queued_jobs(&app).await == 0 })
        .await
        .expect("the failed job is terminated, the others answered");
    let counted = app
        .count(&format!(
            "SELECT count(*) FROM run_batches WHERE run_id = '{run_id}' AND batch = 2"
        ))
        .await;
    assert_eq!(counted, 0, "the failed batch counted nothing");
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_policy_declaring_only_quality_evaluates_items_carrying_other_attributes() {
    let app = spawn_app().await;
    let mut small = create_policy("small");
    small.attributes = serde_json::from_value(serde_json::json!({"quality": "double"})).unwrap();
    let rules = serde_json::json!({
        "rules": [{"id": "low", "condition": "quality < 0.5", "decision": "deny", "reason": "low"}],
        "default_decision": "allow", "score": "quality * 10.0"
    });
    let mut version = draft("small", 0.5, "only quality");
    version.rules = serde_json::from_value(rules).unwrap();
    let c = &app.client;
    c.command("policy", "create", &app.sender("alice"), small)
        .await
        .expect("create");
    c.command("policy", "draft", &app.sender("bob"), version)
        .await
        .expect("draft");
    // The shared catalog's items carry more than `quality`; a declared attribute of the wrong
    // type is still an error.
    app.db
        .batch_execute(
            r#"INSERT INTO catalog_items VALUES
              ('a', 'ready', false, '{"quality": 0.9, "age_days": 3, "tags": ["x"], "scan": {"status": "clean"}}', now() - interval '1 second', 1),
              ('b', 'ready', false, '{"quality": 0.2, "kind": "video", "nested": {"deep": [1, null]}}', now() - interval '1 second', 2),
              ('c', 'ready', false, '{"quality": "high", "age_days": 3}', now() - interval '1 second', 3)"#,
        )
        .await
        .unwrap();
    let run_id = prepare(&app, "small", 1, 10).await;
    let worker = Worker::start(&app);
    wait_status(&app, &run_id, "success").await;
    assert_eq!(
        results(&app, "small").await,
        [
            ("a".into(), "allow".into(), None, 9.0),
            ("b".into(), "deny".into(), Some("low".into()), 2.0),
            ("c".into(), "error".into(), None, 0.0),
        ]
    );
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_job_that_panics_fails_its_run_with_the_panics_message() {
    let app = spawn_app().await;
    create(&app, "media", &[0.5]).await;
    insert_items(&app, 50).await;
    let run_id = prepare(&app, "media", 1, 10).await;
    let mut settings = fast();
    settings.hooks.before_evaluate = Some(Arc::new(|job: &EvaluationJob| {
        if job.batch == 3 {
            panic!("injected bug in batch {}", job.batch);
        }
    }));
    let worker = Worker::start_with(&app, settings);
    wait_status(&app, &run_id, "failed").await;
    let failure: String = app
        .db
        .query_one("SELECT failure FROM runs WHERE run_id = $1", &[&run_id])
        .await
        .unwrap()
        .get(0);
    assert!(failure.contains("injected bug in batch 3"), "{failure}");
    eventually(DEADLINE, || async { queued_jobs(&app).await == 0 })
        .await
        .expect("the panicked job is answered, not left to be redelivered");
    worker.stop().await;
    app.stop().await;
}

/// Publishes a catalog change; returns its stream sequence (the change's `item_seq`).
pub(crate) async fn publish(app: &TestApp, change: &CatalogChange) -> i64 {
    let js = gatehouse::broker::jetstream(app.client.nats());
    let subject = subjects::catalog_item(&app.settings.namespace, change.id());
    let body = serde_json::to_vec(change).unwrap();
    let ack = js
        .publish(subject, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
    ack.sequence as i64
}

async fn wait_result(app: &TestApp, item: &str, item_seq: i64) -> String {
    eventually(DEADLINE, || async {
        let row = app
            .db
            .query_opt(
                "SELECT item_seq FROM eval_results WHERE policy_id = 'media' AND version = 1 AND item_id = $1",
                &[&item],
            )
            .await
            .unwrap();
        row.is_some_and(|r| r.get::<_, i64>(0) == item_seq)
    })
    .await
    .unwrap_or_else(|_| panic!("{item} was not evaluated at {item_seq}"));
    let row = app
        .db
        .query_one(
            "SELECT outcome FROM eval_results WHERE policy_id = 'media' AND version = 1 AND item_id = $1",
            &[&item],
        )
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn catalog_changes_after_a_run_are_evaluated_live_for_the_candidate_and_the_active_version() {
    let app = spawn_app().await;
    create(&app, "media", &[0.5]).await;
    insert_items(&app, 100).await;
    let worker = Worker::start(&app);
    let run_id = prepare(&app, "media", 1, 50).await;
    wait_status(&app, &run_id, "success").await;

    // The run succeeded and is not promoted: its version is a live target.
    let attrs = |q: f64| match attributes(3) {
        serde_json::Value::Object(mut m) => {
            m.insert("quality".into(), q.into());
            m
        }
        _ => unreachable!(),
    };
    let upsert = |id: &str, q: f64| CatalogChange::Upsert {
        id: id.into(),
        status: "ready".into(),
        attributes: attrs(q),
    };
    let seq = publish(&app, &upsert("new-1", 0.9)).await;
    assert_eq!(wait_result(&app, "new-1", seq).await, "allow");
    let seq = publish(&app, &CatalogChange::Delete { id: "new-1".into() }).await;
    assert_eq!(wait_result(&app, "new-1", seq).await, "pending");

    // Promoted: the active version is a live target.
    promote_v1(&app, &run_id).await;
    // m-000001 (quality 0.1) was denied by the run; changed to 0.9 it is allowed, then denied again.
    let seq = publish(&app, &upsert(&item_id(1), 0.9)).await;
    assert_eq!(wait_result(&app, &item_id(1), seq).await, "allow");
    // A message that is not a catalog change is skipped; later changes still flow.
    let js = gatehouse::broker::jetstream(app.client.nats());
    let junk = subjects::catalog_item(&app.settings.namespace, "junk");
    js.publish(junk, "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let seq = publish(&app, &upsert(&item_id(1), 0.1)).await;
    assert_eq!(wait_result(&app, &item_id(1), seq).await, "deny");
    worker.stop().await;
    app.stop().await;
}

/// Item `i`'s attributes with another quality.
fn with_quality(i: i64, quality: f64) -> serde_json::Map<String, serde_json::Value> {
    match attributes(i) {
        serde_json::Value::Object(mut m) => {
            m.insert("quality".into(), quality.into());
            m
        }
        _ => unreachable!(),
    }
}

/// `(outcome, item_seq)` of `item` under media v1.
async fn result_of(app: &TestApp, item: &str) -> (String, i64) {
    let row = app
        .db
        .query_one(
            "SELECT outcome, item_seq FROM eval_results WHERE policy_id = 'media' AND version = 1 AND item_id = $1",
            &[&item],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Promotes run `run_id` of media v1 as dave and waits until `policies` shows version 1 active.
async fn promote_v1(app: &TestApp, run_id: &str) {
    let promote = PromoteRun {
        run_id: run_id.into(),
        coverage_threshold: None,
        max_errors: Some(1_000),
    };
    app.client
        .command("policy", "promote", &app.sender("dave"), promote)
        .await
        .expect("promote");
    eventually(DEADLINE, || async {
        app.count("SELECT count(*) FROM policies WHERE active_version = 1")
            .await
            == 1
    })
    .await
    .expect("promotion projected");
}

/// Publishes items 1..=`n` (item `i` is the catalog stream's message `i`), prepares media v1
/// over them, waits for its success and promotes it; returns the run's id.
async fn promoted_v1(app: &TestApp, n: i64) -> String {
    create(app, "media", &[0.5]).await;
    let js = gatehouse::broker::jetstream(app.client.nats());
    gatehouse::broker::ensure_catalog_stream(&js, &app.settings)
        .await
        .expect("catalog stream");
    for i in 1..=n {
        let change = CatalogChange::Upsert {
            id: item_id(i),
            status: "ready".into(),
            attributes: with_quality(i, (i % 10) as f64 / 10.0),
        };
        assert_eq!(publish(app, &change).await, i);
    }
    wait_catalog(app, &item_id(n), n).await;
    let run_id = prepare(app, "media", 1, 50).await;
    wait_status(app, &run_id, "success").await;
    promote_v1(app, &run_id).await;
    run_id
}

/// The public catalog of media: its item ids and `held_back`.
async fn public(app: &TestApp) -> (Vec<String>, u64) {
    let q = PublicCatalogQuery {
        policy_id: "media".into(),
        after: None,
        limit: Some(1_000),
    };
    let page: PublicCatalogPage = app.client.query("catalog", "public", &q).await.unwrap();
    let ids = page.items.into_iter().map(|i| i.item_id).collect();
    (ids, page.held_back)
}

#[tokio::test]
async fn a_change_whose_body_names_another_item_than_its_subject_changes_no_result() {
    let app = spawn_app().await;
    let worker = Worker::start(&app);
    promoted_v1(&app, 20).await;
    let upsert = |id: &str, quality: f64| CatalogChange::Upsert {
        id: id.into(),
        status: "ready".into(),
        attributes: with_quality(3, quality),
    };
    let good = publish(&app, &upsert("good", 0.9)).await;
    assert_eq!(wait_result(&app, "good", good).await, "allow");

    // On another item's subject, a body naming `good` with a quality the rules deny.
    let js = gatehouse::broker::jetstream(app.client.nats());
    let body = serde_json::to_vec(&upsert("good", 0.1)).unwrap();
    let subject = subjects::catalog_item(&app.settings.namespace, "zz-other");
    js.publish(subject, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
    // Changes are evaluated in stream order: once a later one is, the bad one was handled.
    let probe = publish(&app, &upsert("probe", 0.9)).await;
    assert_eq!(wait_result(&app, "probe", probe).await, "allow");
    eventually(DEADLINE, || async {
        app.count("SELECT count(*) FROM catalog_rejections").await == 1
    })
    .await
    .expect("the projector rejected the change");

    assert_eq!(result_of(&app, "good").await, ("allow".into(), good));
    eventually(DEADLINE, || async {
        public(&app).await.0.contains(&"good".to_owned())
    })
    .await
    .expect("`good` is public");
    worker.stop().await;
    app.stop().await;
}

/// The public catalog of media read in pages of `limit`: its item ids and the pages' `held_back`
/// added up.
async fn public_by_pages(app: &TestApp, limit: u32) -> (Vec<String>, u64) {
    let (mut ids, mut held_back, mut after) = (Vec::new(), 0, None);
    loop {
        let q = PublicCatalogQuery {
            policy_id: "media".into(),
            after: after.clone(),
            limit: Some(limit),
        };
        let page: PublicCatalogPage = app.client.query("catalog", "public", &q).await.unwrap();
        held_back += page.held_back;
        after = page.items.last().map(|i| i.item_id.clone());
        ids.extend(page.items.into_iter().map(|i| i.item_id));
        if after.is_none() {
            return (ids, held_back);
        }
    }
}

/// Waits until the catalog table holds `item`'s change `seq`.
async fn wait_catalog(app: &TestApp, item: &str, seq: i64) {
    eventually(DEADLINE, || async {
        let row = app
            .db
            .query_opt(
                "SELECT stream_seq FROM catalog_items WHERE item_id = $1",
                &[&item],
            )
            .await
            .unwrap();
        row.is_some_and(|r| r.get::<_, i64>(0) == seq)
    })
    .await
    .unwrap_or_else(|_| panic!("{item}'s change {seq} never reached the catalog"));
}

#[tokio::test]
async fn the_public_catalog_serves_only_results_of_the_current_change_and_counts_the_rest() {
    let app = spawn_app().await;
    let worker = Worker::start(&app);
    promoted_v1(&app, 20).await;
    let allowed: Vec<String> = (1..=20)
        .filter(|&i| expected_outcome(i, 0.5) == "allow")
        .map(item_id)
        .collect();
    assert_eq!(public(&app).await, (allowed.clone(), 0));

    // Without live evaluation, two allowed items change: one stays ready, one does not.
    worker.stop().await;
    let (changed, unready) = (item_id(9), item_id(19));
    let upsert = |id: &str, status: &str, i: i64| CatalogChange::Upsert {
        id: id.into(),
        status: status.into(),
        attributes: with_quality(i, 0.95),
    };
    let changed_seq = publish(&app, &upsert(&changed, "ready", 9)).await;
    let unready_seq = publish(&app, &upsert(&unready, "pending", 19)).await;
    wait_catalog(&app, &changed, changed_seq).await;
    wait_catalog(&app, &unready, unready_seq).await;
    let current: Vec<String> = allowed
        .iter()
        .filter(|id| ![&changed, &unready].contains(id))
        .cloned()
        .collect();
    assert_eq!(
        public(&app).await,
        (current.clone(), 1),
        "stale results are held back"
    );
    assert_eq!(public_by_pages(&app, 2).await, (current, 1));

    // Evaluated: the ready item is served again, the other is not (its result is pending).
    let worker = Worker::start(&app);
    wait_result(&app, &changed, changed_seq).await;
    wait_result(&app, &unready, unready_seq).await;
    let served: Vec<String> = allowed.into_iter().filter(|id| *id != unready).collect();
    assert_eq!(public(&app).await, (served, 0));
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_run_diff_counts_the_items_of_the_runs_snapshot_and_no_others() {
    let app = spawn_app().await;
    let worker = Worker::start(&app);
    promoted_v1(&app, 20).await;
    app.client
        .command(
            "policy",
            "draft",
            &app.sender("bob"),
            draft("media", 0.6, "v2"),
        )
        .await
        .expect("draft");
    let run_id = prepare(&app, "media", 2, 50).await;
    wait_status(&app, &run_id, "success").await;

    // Not ready, after the run: evaluated live (pending) for v1 and v2, outside the snapshot.
    for i in 1..=3 {
        let change = CatalogChange::Upsert {
            id: format!("draft-{i}"),
            status: "pending".into(),
            attributes: with_quality(i, 0.9),
        };
        publish(&app, &change).await;
    }
    eventually(DEADLINE, || async {
        app.count("SELECT count(*) FROM eval_results WHERE item_id LIKE 'draft-%' AND outcome = 'pending'")
            .await
            == 6
    })
    .await
    .expect("the not-ready items evaluated for both versions");

    let diff: RunDiff = app
        .client
        .query("run", "diff", &DiffRun { run_id })
        .await
        .expect("run.diff");
    let snapshot = 1..=20;
    let recount = |from: &str, to: &str| {
        snapshot
            .clone()
            .filter(|&i| from.contains(expected_outcome(i, 0.5)))
            .filter(|&i| to.contains(expected_outcome(i, 0.6)))
            .count() as u64
    };
    let unchanged = snapshot
        .clone()
        .filter(|&i| expected_outcome(i, 0.5) == expected_outcome(i, 0.6))
        .count() as u64;
    assert_eq!(diff.regressions, recount("allow", "deny quarantine"));
    assert!(diff.regressions > 0);
    assert_eq!(diff.improvements, 0);
    assert_eq!(diff.unchanged, unchanged);
    assert_eq!((diff.other_changes, diff.newly_evaluated), (0, 0));
    let categories = diff.regressions
        + diff.improvements
        + diff.unchanged
        + diff.other_changes
        + diff.newly_evaluated;
    assert_eq!(categories, 20, "the categories add up to the snapshot");
    worker.stop().await;
    app.stop().await;
}

/// Promote's refusal of an unfinished run reports the run's real progress, the numbers
/// `run.get` shows, not zeros.
#[tokio::test]
async fn promote_of_a_cancelled_run_reports_the_counters_run_get_shows() {
    let app = spawn_app().await;
    create(&app, "media", &[0.5]).await;
    insert_items(&app, 1_000).await;
    let run_id = prepare(&app, "media", 1, 2).await;
    let worker = Worker::start(&app);
    eventually(DEADLINE, || async {
        progress(&app.db, &run_id).await.1 >= 3
    })
    .await
    .expect("some batches done");
    run_command(&app, "cancel_run", &run_id).await;
    wait_status(&app, &run_id, "cancelled").await;
    eventually(DEADLINE, || async { queued_jobs(&app).await == 0 })
        .await
        .expect("the jobs of the cancelled run are dropped");
    // No worker may commit a batch between the two reads below.
    worker.stop().await;

    let view: gatehouse_events::run::RunView = app
        .client
        .query(
            "run",
            "get",
            &gatehouse_events::run::GetRun {
                run_id: run_id.clone(),
            },
        )
        .await
        .unwrap();
    assert!(view.counters.processed > 0);
    let promote = PromoteRun {
        run_id: run_id.clone(),
        coverage_threshold: None,
        max_errors: None,
    };
    let refusal = match app
        .client
        .command("policy", "promote", &app.sender("dave"), promote)
        .await
    {
        Err(gatehouse::client::ClientError::Rejected(r)) => r,
        other => panic!("expected not_ready, got {other:?}"),
    };
    assert_eq!(
        refusal.code,
        gatehouse_events::envelope::RejectionCode::NotReady
    );
    let coverage = refusal
        .details
        .iter()
        .find(|d| d["condition"] == "coverage")
        .expect("a coverage reason");
    assert_eq!(coverage["processed"], view.counters.processed);
    assert_eq!(
        coverage["total_ready_snapshot"],
        view.counters.total_ready_snapshot
    );
    assert_eq!(coverage["coverage"], view.coverage);
    app.stop().await;
}

/// Four-eyes through the gateway: with `require_second_approver`, the author of the run's
/// version may not promote it; someone else may.
#[tokio::test]
async fn a_policy_requiring_a_second_approver_refuses_the_versions_author_and_takes_another() {
    let app = spawn_app().await;
    let mut policy = create_policy("media");
    policy.require_second_approver = true;
    let c = &app.client;
    c.command("policy", "create", &app.sender("alice"), policy)
        .await
        .expect("create");
    c.command(
        "policy",
        "draft",
        &app.sender("bob"),
        draft("media", 0.5, "v1"),
    )
    .await
    .expect("draft");
    insert_items(&app, 20).await;
    let run_id = prepare(&app, "media", 1, 10).await;
    let worker = Worker::start(&app);
    wait_status(&app, &run_id, "success").await;
    let promote = || PromoteRun {
        run_id: run_id.clone(),
        coverage_threshold: None,
        max_errors: Some(1_000),
    };
    let refused = match c
        .command("policy", "promote", &app.sender("bob"), promote())
        .await
    {
        Err(gatehouse::client::ClientError::Rejected(r)) => r,
        other => panic!("the version's author promoted it: {other:?}"),
    };
    assert_eq!(refused.code.as_str(), "approval_required", "{refused:?}");
    assert!(refused.message.contains("bob"), "{}", refused.message);
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'PolicyPromoted'")
            .await,
        0
    );
    c.command("policy", "promote", &app.sender("dave"), promote())
        .await
        .expect("a second person promotes");
    worker.stop().await;
    app.stop().await;
}

/// Four-eyes switched on after creation (`policy.configure`, an admin's): shown by `policy.get`,
/// in force for the next promotion, and a repeat changes nothing.
#[tokio::test]
async fn four_eyes_switched_on_later_is_shown_and_enforced() {
    let app = spawn_app().await;
    let c = &app.client;
    c.command(
        "policy",
        "create",
        &app.sender("alice"),
        create_policy("media"),
    )
    .await
    .expect("create");
    c.command(
        "policy",
        "draft",
        &app.sender("bob"),
        draft("media", 0.5, "v1"),
    )
    .await
    .expect("draft");
    let configure = |on: bool| gatehouse_events::policy::ConfigurePolicy {
        policy_id: "media".into(),
        require_second_approver: on,
        notes: "audit finding 12".into(),
    };
    let done = c
        .command("policy", "configure", &app.sender("alice"), configure(true))
        .await
        .expect("configure");
    let get = gatehouse_events::policy::GetPolicy {
        policy_id: "media".into(),
    };
    let wait = gatehouse_events::envelope::WaitFor::after(&done);
    let summary: gatehouse_events::policy::PolicySummary =
        c.query_after("policy", "get", &get, &wait).await.unwrap();
    assert!(summary.require_second_approver);
    let again = c
        .command("policy", "configure", &app.sender("alice"), configure(true))
        .await
        .unwrap_err();
    assert!(
        matches!(&again, gatehouse::client::ClientError::Rejected(r)
            if r.code.as_str() == "unchanged"
                && r.field.as_deref() == Some("command.require_second_approver")),
        "{again:?}"
    );
    insert_items(&app, 20).await;
    let run_id = prepare(&app, "media", 1, 10).await;
    let worker = Worker::start(&app);
    wait_status(&app, &run_id, "success").await;
    let promote = PromoteRun {
        run_id: run_id.clone(),
        coverage_threshold: None,
        max_errors: Some(1_000),
    };
    let refused = c
        .command("policy", "promote", &app.sender("bob"), promote)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, gatehouse::client::ClientError::Rejected(r)
            if r.code.as_str() == "approval_required"),
        "{refused:?}"
    );
    worker.stop().await;
    app.stop().await;
}
