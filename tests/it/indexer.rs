//! The search indexer (issue 10, part 5), end to end on the real broker and Postgres: the index
//! holds allowed and released items only; a failing indexer retries a bounded number of times,
//! dead-letters with the reason and hurts no decision, case or read; a stopped one catches up.

use std::collections::BTreeSet;
use std::time::Duration;

use gatehouse::catalog::indexer::IndexerSettings;
use gatehouse::client::ClientError;
use gatehouse_events::catalog::{IndexStatus, IndexStatusQuery, SearchPage, SearchQuery};
use gatehouse_events::decision::Action;
use gatehouse_events::envelope::{Rejection, RejectionCode};
use gatehouse_events::rules::Decision;
use gatehouse_events::{metadata, subjects};

use crate::helpers::{eventually, spawn_app, TestApp};
use crate::quarantine::{attributes, can_read, decide, evaluate, gate, resolve};

const DEADLINE: Duration = Duration::from_secs(60);

/// Fast retries, for tests.
fn fast(max_deliver: i64) -> IndexerSettings {
    IndexerSettings {
        max_deliver,
        retry_delay: Duration::from_millis(50),
        max_retry_delay: Duration::from_millis(200),
    }
}

async fn status(app: &TestApp) -> IndexStatus {
    app.client
        .query("catalog", "index_status", &IndexStatusQuery {})
        .await
        .expect("catalog.index_status")
}

async fn search_page(app: &TestApp, q: SearchQuery) -> Result<SearchPage, Rejection> {
    match app.client.query("catalog", "search", &q).await {
        Ok(page) => Ok(page),
        Err(ClientError::Rejected(r)) => Err(r),
        Err(e) => panic!("catalog.search: {e}"),
    }
}

fn query(q: &str) -> SearchQuery {
    SearchQuery {
        q: q.into(),
        repo: None,
        limit: None,
        after: None,
    }
}

/// The items `q` finds.
async fn search(app: &TestApp, q: &str) -> BTreeSet<String> {
    let page = search_page(app, query(q)).await.expect("catalog.search");
    page.hits.into_iter().map(|h| h.item_id).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Waits until the indexer has finished every `artifact` event in the store.
async fn caught_up(app: &TestApp) {
    eventually(DEADLINE, || async {
        let s = status(app).await;
        s.pending == 0 && s.last_position > 0
    })
    .await
    .expect("the indexer catches up");
}

/// allow `ok`, deny `crit`, quarantine-then-release `dirty`, quarantine-then-reject `bad`,
/// allow-then-deny `flip`, quarantine `open`: only `ok` and `dirty` are publish-ready.
async fn decide_all(app: &TestApp) {
    let publish = |item: &str, quality, scan, critical| {
        evaluate(
            "npm",
            item,
            Action::Publish,
            Some(attributes(quality, scan, critical)),
        )
    };
    let expect = [
        ("ok", publish("ok", 0.9, "clean", 0), Decision::Allow),
        ("crit", publish("crit", 0.9, "clean", 2), Decision::Deny),
        (
            "dirty",
            publish("dirty", 0.9, "infected", 0),
            Decision::Quarantine,
        ),
        (
            "bad",
            publish("bad", 0.9, "infected", 0),
            Decision::Quarantine,
        ),
        ("flip", publish("flip", 0.9, "clean", 0), Decision::Allow),
        ("flip", publish("flip", 0.3, "clean", 0), Decision::Deny),
        (
            "open",
            publish("open", 0.9, "infected", 0),
            Decision::Quarantine,
        ),
    ];
    for (item, cmd, decision) in expect {
        let reply = decide(app, cmd).await.expect("decision.evaluate");
        assert_eq!(reply.outcome.decision, decision, "{item}");
    }
    resolve(app, "release", "alice", "npm", "dirty", "false positive")
        .await
        .expect("release");
    resolve(app, "reject", "alice", "npm", "bad", "malware")
        .await
        .expect("reject");
    // Reads answer as before, whatever the indexer does.
    assert!(can_read(app, "npm", Some("dirty"), None).await.is_ok());
    assert!(can_read(app, "npm", Some("ok"), None).await.is_ok());
    let refused = can_read(app, "npm", Some("bad"), None).await.unwrap_err();
    assert_eq!(refused.code, RejectionCode::QuarantinedBlob);
}

#[tokio::test]
async fn the_index_holds_allowed_and_released_items_and_never_denied_quarantined_or_rejected() {
    let mut app = spawn_app().await;
    gate(&app).await;
    app.start_indexer(fast(5));
    decide_all(&app).await;
    caught_up(&app).await;
    // Every item has kind `lib`: the index answers with the publish-ready ones only.
    assert_eq!(search(&app, "lib").await, set(&["dirty", "ok"]));
    let hits = search_page(&app, query("dirty")).await.unwrap().hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].ready_by, "released");
    assert_eq!(hits[0].attributes["scan"]["status"], "infected");
    assert_eq!(search(&app, "ok").await, set(&["ok"]));
    assert_eq!(search(&app, "lib -dirty").await, set(&["ok"]));
    assert_eq!(search(&app, "infected").await, set(&["dirty"]));
    let mut other_repo = query("lib");
    other_repo.repo = Some("pypi".into());
    assert!(search_page(&app, other_repo).await.unwrap().hits.is_empty());

    // Pages of one, in rank order, without repeats.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let mut q = query("lib");
        q.limit = Some(1);
        q.after = after;
        let page = search_page(&app, q).await.unwrap();
        seen.extend(page.hits.iter().map(|h| h.item_id.clone()));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["dirty", "ok"]);

    // A later deny removes an item; idempotent: the status moved past every event.
    let denied = evaluate(
        "npm",
        "ok",
        Action::Publish,
        Some(attributes(0.9, "clean", 3)),
    );
    decide(&app, denied).await.unwrap();
    caught_up(&app).await;
    assert_eq!(search(&app, "lib").await, set(&["dirty"]));
    let s = status(&app).await;
    assert_eq!(
        (s.indexed_items, s.failed_attempts, s.dead_letters),
        (1, 0, 0)
    );

    // Bad input names its field.
    for (q, field) in [
        (query(" "), "q"),
        (query("!!!"), "q"),
        (
            SearchQuery {
                limit: Some(1_000),
                ..query("lib")
            },
            "limit",
        ),
        (
            SearchQuery {
                after: Some("x".into()),
                ..query("lib")
            },
            "after",
        ),
        (
            SearchQuery {
                repo: Some("Bad Repo".into()),
                ..query("lib")
            },
            "repo",
        ),
    ] {
        let r = search_page(&app, q).await.unwrap_err();
        assert_eq!(r.code, RejectionCode::BadRequest);
        assert_eq!(r.field.as_deref(), Some(field));
    }
    app.stop().await;
}

/// Dead letters of the indexer: their reasons.
async fn dead_letters(app: &TestApp) -> Vec<String> {
    let ns = &app.settings.namespace;
    let js = gatehouse::broker::jetstream(app.client.nats());
    let Ok(stream) = js.get_stream(subjects::dead_letter_stream(ns)).await else {
        return Vec::new();
    };
    let state = stream.get_info().await.expect("DLQ info").state;
    let subject = subjects::dead_letter(ns, &subjects::projector_consumer(ns, "indexer"));
    let mut reasons = Vec::new();
    if state.messages == 0 {
        return reasons;
    }
    for seq in state.first_sequence..=state.last_sequence {
        let Ok(letter) = stream.get_raw_message(seq).await else {
            continue;
        };
        if letter.subject.as_str() == subject {
            reasons.push(
                letter
                    .headers
                    .get(metadata::HEADER_DLQ_REASON)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default(),
            );
        }
    }
    reasons
}

#[tokio::test]
async fn a_failing_indexer_hurts_nobody_retries_a_bounded_number_of_times_and_dead_letters() {
    let mut app = spawn_app().await;
    gate(&app).await;
    // Every write of an item into the index fails (removals still succeed).
    app.db
        .batch_execute(
            "CREATE FUNCTION refuse_index() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'the test refuses index writes'; END $$;
             CREATE TRIGGER refuse_index BEFORE INSERT OR UPDATE ON search_items
                 FOR EACH ROW EXECUTE FUNCTION refuse_index();",
        )
        .await
        .expect("the failing trigger");
    app.start_indexer(fast(3));
    decide_all(&app).await;
    // `ok`'s allow, `dirty`'s release and `flip`'s allow cannot be written: each is tried
    // three times, then dead-lettered with the reason; the rest (removals) are indexed.
    eventually(DEADLINE, || async { dead_letters(&app).await.len() >= 3 })
        .await
        .expect("three dead letters");
    caught_up(&app).await;
    let letters = dead_letters(&app).await;
    assert_eq!(letters.len(), 3, "{letters:?}");
    for reason in &letters {
        assert!(reason.contains("the test refuses index writes"), "{reason}");
        assert!(reason.contains("delivery 3 of 3"), "{reason}");
    }
    let s = status(&app).await;
    assert_eq!(s.dead_letters, 3);
    assert_eq!(s.failed_attempts, 9, "three attempts each, no more");
    assert!(s
        .last_dead_letter_reason
        .is_some_and(|r| r.contains("the test refuses index writes")));
    assert!(s.last_failure.is_some());
    assert_eq!(s.indexed_items, 0);
    // The server delivers nothing more.
    let js = gatehouse::broker::jetstream(app.client.nats());
    let ns = &app.settings.namespace;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream(
            subjects::projector_consumer(ns, "indexer"),
            subjects::events_stream(ns),
        )
        .await
        .expect("the indexer's consumer");
    let info = consumer.info().await.expect("consumer info");
    assert_eq!(info.config.max_deliver, 3);
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));

    // Decisions, cases and reads went on; once writes work again, new events are indexed.
    app.db
        .batch_execute("DROP TRIGGER refuse_index ON search_items")
        .await
        .unwrap();
    let cmd = evaluate(
        "npm",
        "later",
        Action::Publish,
        Some(attributes(0.9, "clean", 0)),
    );
    assert_eq!(
        decide(&app, cmd).await.unwrap().outcome.decision,
        Decision::Allow
    );
    caught_up(&app).await;
    assert_eq!(search(&app, "lib").await, set(&["later"]));

    // The runbook's repair: index every artifact again from the event store.
    let pg = gatehouse::db::pool(&app.settings.database_url, 2).unwrap();
    let done = gatehouse::catalog::indexer::reindex(&pg, false)
        .await
        .expect("reindex");
    assert_eq!((done.artifacts, done.ready), (7, 3));
    assert_eq!(search(&app, "lib").await, set(&["dirty", "later", "ok"]));
    let again = gatehouse::catalog::indexer::reindex(&pg, true)
        .await
        .expect("reindex from scratch");
    assert_eq!(again, done);
    app.stop().await;
}

#[tokio::test]
async fn with_the_indexer_stopped_decisions_go_on_and_it_catches_up_on_restart() {
    let mut app = spawn_app().await;
    gate(&app).await;
    app.start_indexer(fast(5));
    let first = evaluate(
        "npm",
        "first",
        Action::Publish,
        Some(attributes(0.9, "clean", 0)),
    );
    decide(&app, first).await.unwrap();
    caught_up(&app).await;
    app.indexer.take().expect("the indexer").stop().await;

    decide_all(&app).await;
    let s = status(&app).await;
    assert!(s.pending >= 8, "{s:?}");
    assert_eq!(search(&app, "lib").await, set(&["first"]));

    app.start_indexer(fast(5));
    caught_up(&app).await;
    assert_eq!(search(&app, "lib").await, set(&["dirty", "first", "ok"]));
    let s = status(&app).await;
    assert_eq!((s.pending, s.failed_attempts, s.dead_letters), (0, 0, 0));
    app.stop().await;
}
