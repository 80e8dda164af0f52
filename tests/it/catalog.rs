//! The catalog: changes published on `<ns>.catalog.items.<id>` (directly, and by
//! `gatehouse catalog import`) reach `catalog_items` through the catalog projector; what is no
//! valid change lands in `catalog_rejections` or is reported by line number.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use gatehouse::cli::catalog::{import, BadLine, ImportError, ImportOptions, ImportReport};
use gatehouse::client::ClientError;
use gatehouse_events::catalog::{CatalogItem, GetItem};
use gatehouse_events::envelope::RejectionCode;
use gatehouse_events::subjects;
use gatehouse_projections::catalog::{self, CatalogSettings};
use gatehouse_projections::Hooks;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers::{eventually, spawn_app, TestApp};

const DEADLINE: Duration = Duration::from_secs(30);

fn jetstream(app: &TestApp) -> jetstream::Context {
    gatehouse::broker::jetstream(app.client.nats())
}

/// Publishes `body` on the subject of `item_id`; returns its stream sequence.
async fn publish(app: &TestApp, item_id: &str, body: &str) -> u64 {
    let js = jetstream(app);
    catalog::ensure_stream(&js, &app.settings.namespace)
        .await
        .expect("catalog stream");
    let subject = subjects::catalog_item(&app.settings.namespace, item_id);
    let ack = js.publish(subject, body.to_owned().into()).await.unwrap();
    ack.await.expect("PubAck").sequence
}

fn upsert(id: &str, status: &str, attributes: Value) -> String {
    json!({"op": "upsert", "id": id, "status": status, "attributes": attributes}).to_string()
}

fn delete(id: &str) -> String {
    json!({"op": "delete", "id": id}).to_string()
}

/// `catalog_items` as JSON rows by id, without `updated_at`.
async fn items(app: &TestApp) -> Vec<Value> {
    let sql = "SELECT jsonb_build_object('id', item_id, 'status', status, 'deleted', deleted,
                   'attributes', attributes, 'seq', stream_seq)
               FROM catalog_items ORDER BY item_id";
    let rows = app.db.query(sql, &[]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// Every column of every `catalog_items` row, `updated_at` included.
async fn snapshot(app: &TestApp) -> Vec<Value> {
    let rows = app
        .db
        .query(
            "SELECT to_jsonb(c) FROM catalog_items c ORDER BY item_id",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

fn item(id: &str, status: &str, deleted: bool, attributes: Value, seq: u64) -> Value {
    json!({"id": id, "status": status, "deleted": deleted, "attributes": attributes, "seq": seq})
}

async fn checkpoint(app: &TestApp) -> i64 {
    app.count("SELECT coalesce(max(last_stream_seq), 0) FROM projector_checkpoints WHERE projector = 'catalog'")
        .await
}

async fn stream_messages(app: &TestApp) -> u64 {
    let name = subjects::catalog_stream(&app.settings.namespace);
    let mut stream = jetstream(app)
        .get_stream(name)
        .await
        .expect("catalog stream");
    stream.info().await.expect("stream info").state.messages
}

#[tokio::test]
async fn upserts_and_deletes_reach_the_catalog_table_and_the_last_change_of_each_item_wins() {
    let app = spawn_app().await;
    publish(&app, "a", &upsert("a", "pending", json!({"v": 1}))).await;
    let b1 = publish(&app, "b", &upsert("b", "ready", json!({"v": 1}))).await;
    let a2 = publish(&app, "a", &upsert("a", "ready", json!({"v": 2}))).await;
    let c = publish(&app, "c", &delete("c")).await;
    let b2 = publish(&app, "b", &delete("b")).await;
    let expected = vec![
        item("a", "ready", false, json!({"v": 2}), a2),
        // A delete keeps the item's last status and attributes.
        item("b", "ready", true, json!({"v": 1}), b2),
        // A delete of an item the catalog never held records it as deleted.
        item("c", "deleted", true, json!({}), c),
    ];
    let _ = eventually(DEADLINE, || async { items(&app).await == expected }).await;
    assert_eq!(items(&app).await, expected);
    assert!(b1 < b2);

    // `updated_at` is the time the stream stored the item's last change.
    let stream = jetstream(&app)
        .get_stream(subjects::catalog_stream(&app.settings.namespace))
        .await
        .unwrap();
    let stored = stream.get_raw_message(b2).await.unwrap().time;
    let micros: i64 = app
        .db
        .query_one("SELECT (extract(epoch FROM updated_at) * 1000000)::bigint FROM catalog_items WHERE item_id = 'b'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(i128::from(micros), stored.unix_timestamp_nanos() / 1_000);
    app.stop().await;
}

/// The catalog projector alone, with its own batch size and hooks.
struct CatalogProjector {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl CatalogProjector {
    fn start(app: &TestApp, batch_size: usize, hooks: Hooks) -> Self {
        let mut projector = app.projector_settings.clone();
        projector.hooks = hooks;
        let settings = CatalogSettings {
            projector,
            batch_size,
        };
        let pool = gatehouse::db::pool(&app.settings.database_url, 2).unwrap();
        let js = jetstream(app);
        let stop = CancellationToken::new();
        let run = catalog::run(settings, pool, js, stop.clone());
        let task = tokio::spawn(async move { run.await.expect("catalog projector") });
        Self { task, stop }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }

    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Three rounds of changes to five items; returns what the catalog must hold in the end.
async fn three_rounds(app: &TestApp) -> Vec<Value> {
    let mut expected = Vec::new();
    for round in 1..=3 {
        for i in 0..5 {
            let id = format!("i-{i}");
            let attributes = json!({"round": round});
            if round == 3 && i % 2 == 1 {
                let seq = publish(app, &id, &delete(&id)).await;
                expected.push(item(&id, "pending", true, json!({"round": 2}), seq));
            } else {
                let seq = publish(app, &id, &upsert(&id, "pending", attributes.clone())).await;
                if round == 3 {
                    expected.push(item(&id, "pending", false, attributes, seq));
                }
            }
        }
    }
    expected
}

#[tokio::test]
async fn across_batch_boundaries_and_after_a_full_redelivery_the_last_change_still_wins() {
    let mut app = spawn_app().await;
    app.projector.take().unwrap().kill().await;
    let projector = CatalogProjector::start(&app, 2, Hooks::default());
    let expected = three_rounds(&app).await;
    eventually(DEADLINE, || async { checkpoint(&app).await == 15 })
        .await
        .expect("every change written");
    assert_eq!(items(&app).await, expected);
    let before = snapshot(&app).await;
    projector.stop().await;

    // Every change again, oldest first, in batches of two: each older change meets a newer row.
    let consumer = subjects::projector_consumer(&app.settings.namespace, catalog::NAME);
    let stream = jetstream(&app)
        .get_stream(subjects::catalog_stream(&app.settings.namespace))
        .await
        .unwrap();
    stream.delete_consumer(&consumer).await.unwrap();
    app.db
        .execute(
            "UPDATE projector_checkpoints SET last_stream_seq = 0 WHERE projector = 'catalog'",
            &[],
        )
        .await
        .unwrap();
    let projector = CatalogProjector::start(&app, 2, Hooks::default());
    eventually(DEADLINE, || async { checkpoint(&app).await == 15 })
        .await
        .expect("every change written again");
    assert_eq!(snapshot(&app).await, before);
    projector.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn an_item_updated_then_deleted_in_one_batch_keeps_the_updated_content() {
    let mut app = spawn_app().await;
    let first = publish(&app, "x", &upsert("x", "ready", json!({"v": 1}))).await;
    eventually(DEADLINE, || async {
        checkpoint(&app).await == first as i64
    })
    .await
    .expect("the first version written");
    app.projector.take().unwrap().kill().await;
    publish(&app, "x", &upsert("x", "pending", json!({"v": 2}))).await;
    let deleted = publish(&app, "x", &delete("x")).await;
    publish(&app, "y", &upsert("y", "ready", json!({"v": 1}))).await;
    let last = publish(&app, "y", &delete("y")).await;
    let projector = CatalogProjector::start(&app, 100, Hooks::default());
    eventually(DEADLINE, || async { checkpoint(&app).await == last as i64 })
        .await
        .expect("every change written");
    let expected = vec![
        item("x", "pending", true, json!({"v": 2}), deleted),
        item("y", "ready", true, json!({"v": 1}), last),
    ];
    assert_eq!(items(&app).await, expected);
    projector.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_catalog_projector_killed_after_commit_before_ack_changes_nothing_on_redelivery() {
    let mut app = spawn_app().await;
    app.projector.take().unwrap().kill().await;
    let (tx, mut reached) = tokio::sync::mpsc::channel::<()>(1);
    let hook: gatehouse_projections::Hook = std::sync::Arc::new(move || {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(()).await;
            std::future::pending::<()>().await;
        })
    });
    let hooks = Hooks {
        after_commit_before_ack: Some(hook),
        ..Hooks::default()
    };
    let projector = CatalogProjector::start(&app, 100, hooks);
    let expected = three_rounds(&app).await;
    tokio::time::timeout(DEADLINE, reached.recv())
        .await
        .expect("the projector committed a batch");
    projector.kill().await;
    let committed = checkpoint(&app).await;
    assert!(committed > 0, "a batch committed before the kill");

    let projector = CatalogProjector::start(&app, 100, Hooks::default());
    eventually(DEADLINE, || async { checkpoint(&app).await == 15 })
        .await
        .expect("the redelivered batch and the rest written");
    assert_eq!(items(&app).await, expected);
    let consumer: PullConsumer = jetstream(&app)
        .get_stream(subjects::catalog_stream(&app.settings.namespace))
        .await
        .unwrap()
        .get_consumer(&subjects::projector_consumer(
            &app.settings.namespace,
            catalog::NAME,
        ))
        .await
        .unwrap();
    eventually(DEADLINE, || async {
        let info = consumer.get_info().await;
        info.is_ok_and(|i| i.ack_floor.stream_sequence == 15)
    })
    .await
    .expect("every message acked");
    projector.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_message_that_is_no_valid_change_lands_in_catalog_rejections() {
    let app = spawn_app().await;
    let garbage = publish(&app, "m-1", "{not json").await;
    let status = publish(&app, "m-2", &upsert("m-2", "Ready", json!({}))).await;
    let other = publish(&app, "m-3", &delete("m-4")).await;
    let list = publish(
        &app,
        "m-5",
        r#"{"op":"upsert","id":"m-5","status":"ready","attributes":[1]}"#,
    )
    .await;
    let nul = publish(
        &app,
        "m-6",
        &upsert("m-6", "ready", json!({"k": "a\u{0}b"})),
    )
    .await;
    let good = publish(&app, "m-7", &upsert("m-7", "ready", json!({}))).await;
    eventually(DEADLINE, || async {
        app.count("SELECT count(*) FROM catalog_rejections").await == 5
            && checkpoint(&app).await == good as i64
    })
    .await
    .expect("every message settled");
    let rows = app
        .db
        .query("SELECT stream_seq, subject, error, payload FROM catalog_rejections ORDER BY stream_seq", &[])
        .await
        .unwrap();
    let ns = &app.settings.namespace;
    let expected = [
        (garbage, "m-1", "not a catalog change:"),
        (status, "m-2", "status: `Ready`"),
        (
            other,
            "m-3",
            "id: `m-4` differs from the subject's item `m-3`",
        ),
        (list, "m-5", "not a catalog change:"),
        (nul, "m-6", "attributes: attributes.k holds a NUL"),
    ];
    for (row, (seq, id, error)) in rows.iter().zip(expected) {
        assert_eq!(row.get::<_, i64>(0), seq as i64);
        assert_eq!(row.get::<_, String>(1), subjects::catalog_item(ns, id));
        let got: String = row.get(2);
        assert!(got.starts_with(error), "{got}");
    }
    assert_eq!(rows[0].get::<_, String>(3), "{not json");
    assert_eq!(
        items(&app).await,
        vec![item("m-7", "ready", false, json!({}), good)]
    );
    app.stop().await;
}

/// A JSON-lines file in the temp dir, removed (with its side file) on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(lines: &[String]) -> Self {
        let path =
            std::env::temp_dir().join(format!("gatehouse-it-{}.jsonl", uuid::Uuid::new_v4()));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        TempFile(path)
    }

    fn side(&self) -> PathBuf {
        let mut side = self.0.canonicalize().unwrap().into_os_string();
        side.push(gatehouse::cli::catalog::SIDE_FILE_SUFFIX);
        side.into()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let side = self.side();
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(side);
    }
}

async fn run_import(
    app: &TestApp,
    path: &Path,
    options: &ImportOptions,
    stop: &CancellationToken,
) -> (Result<ImportReport, ImportError>, Vec<BadLine>) {
    let mut bad = Vec::new();
    let mut on_bad = |line: &BadLine| bad.push(line.clone());
    let ns = &app.settings.namespace;
    let report = import(app.client.nats(), ns, path, options, stop, &mut on_bad).await;
    (report, bad)
}

#[tokio::test]
async fn an_import_reports_bad_lines_by_number_and_imports_the_good_ones() {
    let app = spawn_app().await;
    let file = TempFile::new(&[
        upsert("a", "ready", json!({"v": 1})),
        String::new(),
        r#"{"op":"upsert","id":"b""#.to_owned(),
        upsert("b", "pending", json!({"v": 1})),
        upsert("c", "Ready", json!({})),
        delete("a"),
        upsert("c", "ready", json!({"v": 3})),
    ]);
    let (report, bad) = run_import(
        &app,
        &file.0,
        &ImportOptions::default(),
        &CancellationToken::new(),
    )
    .await;
    let report = report.expect("import");
    assert_eq!(
        (report.published, report.bad_lines, report.complete),
        (4, 2, true)
    );
    assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![3, 5]);
    assert!(
        bad[0].error.starts_with("not a catalog change:"),
        "{}",
        bad[0].error
    );
    assert!(bad[1].error.starts_with("status:"), "{}", bad[1].error);
    eventually(DEADLINE, || async {
        let rows = items(&app).await;
        let state: Vec<_> = rows
            .iter()
            .map(|r| (r["id"].clone(), r["status"].clone(), r["deleted"].clone()))
            .collect();
        state
            == vec![
                (json!("a"), json!("ready"), json!(true)),
                (json!("b"), json!("pending"), json!(false)),
                (json!("c"), json!("ready"), json!(false)),
            ]
    })
    .await
    .expect("the good lines imported");
    app.stop().await;
}

#[tokio::test]
async fn a_resumed_import_publishes_nothing_twice() {
    let app = spawn_app().await;
    let mut lines = Vec::new();
    for round in 0..3 {
        for i in 0..1_000 {
            lines.push(upsert(&format!("i-{i}"), "ready", json!({"round": round})));
        }
    }
    lines[999] = "not json".to_owned();
    let file = TempFile::new(&lines);
    let options = ImportOptions {
        in_flight: 100,
        ..ImportOptions::default()
    };

    // Stopped (as by Ctrl-C) while reporting the bad line 1000.
    let stop = CancellationToken::new();
    let mut bad = Vec::new();
    let mut on_bad = |line: &BadLine| {
        bad.push(line.line);
        stop.cancel();
    };
    let ns = &app.settings.namespace;
    let first = import(app.client.nats(), ns, &file.0, &options, &stop, &mut on_bad)
        .await
        .unwrap();
    assert_eq!(bad, vec![1_000]);
    assert_eq!(
        (first.complete, first.settled_line, first.published),
        (false, 1_000, 999)
    );
    assert_eq!(stream_messages(&app).await, 999);

    // The next run continues after line 1000.
    let (second, bad) = run_import(&app, &file.0, &options, &CancellationToken::new()).await;
    let second = second.unwrap();
    assert!(bad.is_empty());
    assert_eq!(
        (second.resumed_after, second.published, second.duplicates),
        (1_000, 2_000, 0)
    );
    assert!(second.complete);
    assert_eq!(stream_messages(&app).await, 2_999);

    // Progress saved at line 1500 when everything was sent already: the overlap dedupes.
    let mut saved: Value = serde_json::from_slice(&std::fs::read(file.side()).unwrap()).unwrap();
    saved["line"] = json!(1_500);
    saved["complete"] = json!(false);
    std::fs::write(file.side(), saved.to_string()).unwrap();
    let options = ImportOptions {
        require_resume: true,
        ..options
    };
    let (third, _) = run_import(&app, &file.0, &options, &CancellationToken::new()).await;
    let third = third.unwrap();
    assert_eq!(
        (third.resumed_after, third.published, third.duplicates),
        (1_500, 0, 1_500)
    );
    assert_eq!(stream_messages(&app).await, 2_999);

    // --resume with no saved progress refuses to start over.
    std::fs::remove_file(file.side()).unwrap();
    let (refused, _) = run_import(&app, &file.0, &options, &CancellationToken::new()).await;
    assert!(
        matches!(refused, Err(ImportError::NothingToResume { .. })),
        "{refused:?}"
    );

    // The file's last change of each item is the catalog's.
    eventually(DEADLINE, || async {
        app.count("SELECT count(*) FROM catalog_items WHERE attributes = '{\"round\": 2}'")
            .await
            == 1_000
    })
    .await
    .expect("the last round imported");
    app.stop().await;
}

/// An upsert of `id` whose attributes nest `levels` deep: `{"a": [[...[1]...]]}`.
fn nested(id: &str, levels: usize) -> String {
    let arrays = levels - 1;
    format!(
        r#"{{"op":"upsert","id":"{id}","status":"ready","attributes":{{"a":{}1{}}}}}"#,
        "[".repeat(arrays),
        "]".repeat(arrays)
    )
}

async fn get_item(app: &TestApp, item_id: &str) -> Result<CatalogItem, ClientError> {
    let q = GetItem {
        item_id: item_id.into(),
    };
    app.client.query("catalog", "get", &q).await
}

#[tokio::test]
async fn attributes_nested_deeper_than_the_limit_are_rejected_naming_the_limit() {
    let app = spawn_app().await;
    // The documented limit (`MAX_ATTRIBUTE_DEPTH`).
    let limit = 64;
    let deepest = publish(&app, "deepest", &nested("deepest", limit)).await;
    let deeper = publish(&app, "deeper", &nested("deeper", limit + 1)).await;
    let deep = publish(&app, "deep", &nested("deep", 1_000)).await;
    eventually(DEADLINE, || async { checkpoint(&app).await == deep as i64 })
        .await
        .expect("every message settled");
    let rows = app
        .db
        .query(
            "SELECT stream_seq, error FROM catalog_rejections ORDER BY stream_seq",
            &[],
        )
        .await
        .unwrap();
    let rejected: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let reason = "attributes: nested deeper than 64 levels of objects and arrays".to_owned();
    assert_eq!(
        rejected,
        vec![(deeper as i64, reason.clone()), (deep as i64, reason)]
    );
    assert_eq!(get_item(&app, "deepest").await.unwrap().item_id, "deepest");
    assert!(deepest < deeper);
    match get_item(&app, "deep").await {
        Err(ClientError::Rejected(r)) => assert_eq!(r.code, RejectionCode::NotFound),
        other => panic!("{other:?}"),
    }
    app.stop().await;
}

#[tokio::test]
async fn an_item_stored_deeper_than_a_reader_can_read_is_answered_internal_not_left_unanswered() {
    let app = spawn_app().await;
    // Stored before the limit existed: 1,000 levels, deeper than serde_json reads.
    let attributes = format!(r#"{{"a":{}1{}}}"#, "[".repeat(999), "]".repeat(999));
    app.db
        .execute(
            "INSERT INTO catalog_items (item_id, status, deleted, attributes, updated_at, stream_seq)
             VALUES ('deep', 'ready', false, $1::text::jsonb, now(), 1)",
            &[&attributes],
        )
        .await
        .unwrap();
    match get_item(&app, "deep").await {
        Err(ClientError::Rejected(r)) => {
            assert_eq!(r.code, RejectionCode::Internal);
            assert!(!r.message.contains("column"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }
    // The gateway still answers.
    let stats: Value = app
        .client
        .query("catalog", "stats", &json!({}))
        .await
        .unwrap();
    assert_eq!(stats["items"], 1);
    app.stop().await;
}
