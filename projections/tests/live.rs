//! The projectors and rebuilds against a real nats-server and Postgres. Ignored by default:
//! run by hand with a server of each (no auth needed):
//!
//! ```sh
//! PROJECTIONS_NATS_URL=nats://127.0.0.1:24222 \
//! PROJECTIONS_DATABASE_URL=postgres://postgres@127.0.0.1:65432/postgres \
//!   cargo test -p gatehouse-projections --test live -- --ignored
//! ```
//!
//! Each test gets its own database (`t_<uuid>`, migrated from `migrations/`) and namespace, and
//! plays the outbox relay itself: it inserts events into `events` and publishes them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use deadpool_postgres::{Manager, Pool};
use futures::StreamExt;
use gatehouse_events::record::EventRecord;
use gatehouse_events::{metadata, subjects};
use gatehouse_projections::{
    read_model, rebuild, run, run_all, Hook, Hooks, ProjectorError, ProjectorSettings,
};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

struct TestEnv {
    ns: String,
    pool: Pool,
    js: jetstream::Context,
}

async fn spawn_env() -> anyhow::Result<TestEnv> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let pg_url = std::env::var("PROJECTIONS_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:65432/postgres".into());
    let nats_url =
        std::env::var("PROJECTIONS_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:24222".into());
    let ns = format!("t_{}", uuid::Uuid::new_v4().simple());

    let (admin, connection) = tokio_postgres::connect(&pg_url, NoTls).await?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {ns}"))
        .await?;
    let mut config: tokio_postgres::Config = pg_url.parse()?;
    config.dbname(&ns);
    let pool = Pool::builder(Manager::new(config, NoTls))
        .max_size(8)
        .build()?;
    let client = pool.get().await?;
    let mut migrations: Vec<_> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
    migrations.sort();
    for file in migrations {
        let sql = std::fs::read_to_string(&file)?;
        client
            .batch_execute(&sql)
            .await
            .with_context(|| format!("{}", file.display()))?;
    }

    let js = jetstream::new(async_nats::connect(nats_url).await?);
    js.create_or_update_stream(stream::Config {
        name: subjects::events_stream(&ns),
        subjects: vec![subjects::all_events(&ns)],
        storage: stream::StorageType::File,
        allow_direct: true,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    })
    .await?;
    Ok(TestEnv { ns, pool, js })
}

impl TestEnv {
    fn settings(&self) -> ProjectorSettings {
        ProjectorSettings {
            fetch_expiry: Duration::from_millis(500),
            ack_wait: Duration::from_secs(2),
            retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_millis(500),
            ..ProjectorSettings::new(&self.ns)
        }
    }

    /// Stores an event (as the command side does) and returns it as the relay publishes it.
    async fn store(
        &self,
        id: &str,
        sequence: i64,
        event_type: &str,
        payload: Value,
    ) -> anyhow::Result<EventRecord> {
        let meta = json!({metadata::ACTOR: "alice", metadata::CORRELATION_ID: format!("c-{id}")});
        let row = self
            .pool
            .get()
            .await?
            .query_one(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                     payload, metadata)
                 VALUES ('policy', $1, $2, $3, '1.0', $4, $5)
                 RETURNING global_position, recorded_at",
                &[&id, &sequence, &event_type, &payload, &meta],
            )
            .await?;
        Ok(EventRecord {
            position: row.get(0),
            aggregate: "policy".into(),
            aggregate_id: id.into(),
            sequence,
            event_type: event_type.into(),
            event_version: "1.0".into(),
            recorded_at: row.get(1),
            payload,
            metadata: meta,
        })
    }

    async fn publish(&self, event: &EventRecord) -> anyhow::Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.message_id().as_str());
        headers.insert(
            metadata::HEADER_POSITION,
            event.position.to_string().as_str(),
        );
        headers.insert(
            metadata::HEADER_SEQUENCE,
            event.sequence.to_string().as_str(),
        );
        let subject = subjects::event(
            &self.ns,
            &event.aggregate,
            &event.aggregate_id,
            &event.event_type,
        );
        self.js
            .publish_with_headers(subject, headers, serde_json::to_vec(event)?.into())
            .await?
            .await?;
        Ok(())
    }

    async fn record(
        &self,
        id: &str,
        sequence: i64,
        event_type: &str,
        payload: Value,
    ) -> anyhow::Result<EventRecord> {
        let event = self.store(id, sequence, event_type, payload).await?;
        self.publish(&event).await?;
        Ok(event)
    }

    /// Every row of `table`, as JSON text, in a stable order.
    async fn rows(&self, table: &str, order: &str) -> anyhow::Result<Vec<String>> {
        let sql = format!("SELECT row_to_json(t)::text FROM {table} t ORDER BY {order}");
        Ok(self
            .pool
            .get()
            .await?
            .query(&sql, &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    async fn scalar(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(self.pool.get().await?.query_one(sql, &[]).await?.get(0))
    }

    async fn snapshot(&self) -> anyhow::Result<Vec<Vec<String>>> {
        Ok(vec![
            self.rows("audit_log", "position").await?,
            self.rows("policies", "policy_id").await?,
            self.rows("policy_versions", "policy_id, version").await?,
            self.rows("pg_indexes", "indexname").await.map(|v| {
                v.into_iter()
                    .filter(|r| !r.contains("pg_catalog"))
                    .collect()
            })?,
        ])
    }
}

/// Panics naming the first row that differs between two snapshots.
fn assert_same(after: &[Vec<String>], before: &[Vec<String>], what: &str) {
    for (table, (a, b)) in after.iter().zip(before).enumerate() {
        let only_after: Vec<_> = a.iter().filter(|r| !b.contains(r)).collect();
        let only_before: Vec<_> = b.iter().filter(|r| !a.contains(r)).collect();
        assert!(
            only_after.is_empty() && only_before.is_empty() && a.len() == b.len(),
            "{what}: table #{table} differs\nonly after: {only_after:#?}\nonly before: {only_before:#?}"
        );
    }
}

fn created(name: &str) -> Value {
    json!({"PolicyCreated": {"policy_id": name, "name": name, "description": "d",
        "attributes": {"price": "double"}, "created_by": "alice", "created_at": "2026-01-01T00:00:00Z"}})
}

fn drafted(version: u32) -> Value {
    json!({"PolicyVersionDrafted": {"version": version, "notes": "n", "author": "bob",
        "rules_hash": format!("h{version}"), "drafted_at": format!("2026-01-0{}T00:00:00Z", version + 1),
        "rules": {"rules": [{"id": "r1", "condition": "true", "decision": "allow", "reason": "ok"}],
            "default_decision": "deny", "score": "0"}}})
}

async fn eventually<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn spawn_all(
    env: &TestEnv,
    settings: ProjectorSettings,
    stop: &CancellationToken,
) -> JoinHandle<Result<(), ProjectorError>> {
    tokio::spawn(run_all(
        settings,
        env.pool.clone(),
        env.js.clone(),
        stop.clone(),
    ))
}

#[tokio::test]
#[ignore = "needs nats-server and Postgres"]
async fn policies_and_audit_are_projected_and_a_rebuild_reproduces_them() -> anyhow::Result<()> {
    let env = spawn_env().await?;
    let stop = CancellationToken::new();
    let projectors = spawn_all(&env, env.settings(), &stop);
    env.record("p1", 1, "PolicyCreated", created("p1")).await?;
    env.record("p1", 2, "PolicyVersionDrafted", drafted(1))
        .await?;
    env.record("p1", 3, "PolicyVersionDrafted", drafted(2))
        .await?;
    env.record(
        "p1",
        4,
        "PolicyPromoted",
        json!({"PolicyPromoted": {"version": 2, "promoted_at": "2026-02-01T00:00:00Z"}}),
    )
    .await?;
    env.record(
        "p1",
        5,
        "PolicyRenamed",
        json!({"PolicyRenamed": {"name": "x"}}),
    )
    .await?;
    env.record("p2", 1, "PolicyCreated", created("p2")).await?;
    eventually("p1 at sequence 5", || async {
        Ok(env
            .scalar("SELECT coalesce(max(last_sequence), 0) FROM policies WHERE policy_id = 'p1'")
            .await?
            == 5
            && env.scalar("SELECT count(*) FROM audit_log").await? == 6)
    })
    .await?;
    let p1 = env.rows("policies", "policy_id").await?;
    assert!(
        p1[0].contains(r#""latest_version":2,"active_version":2"#),
        "{}",
        p1[0]
    );
    assert_eq!(env.scalar("SELECT count(*) FROM policy_versions").await?, 2);
    assert_eq!(env.scalar("SELECT count(*) FROM policies").await?, 2);

    let live = env.snapshot().await?;
    for name in ["audit", "policies"] {
        let model = read_model(name).context("model")?;
        let report = rebuild(model.as_ref(), &env.pool, 2).await?;
        assert_eq!(report.skipped, 0);
    }
    assert_same(
        &env.snapshot().await?,
        &live,
        "a rebuild reproduces the live model",
    );

    // The live projector goes on writing to the swapped-in tables.
    env.record("p2", 2, "PolicyVersionDrafted", drafted(1))
        .await?;
    eventually("p2 drafted", || async {
        Ok(env
            .scalar("SELECT count(*) FROM policy_versions WHERE policy_id = 'p2'")
            .await?
            == 1
            && env.scalar("SELECT count(*) FROM audit_log").await? == 7)
    })
    .await?;
    let live = env.snapshot().await?;
    let report = rebuild(
        read_model("policies").context("model")?.as_ref(),
        &env.pool,
        500,
    )
    .await?;
    assert_eq!(report.copied, 7);
    assert_same(
        &env.snapshot().await?,
        &live,
        "a second rebuild reproduces it too",
    );

    stop.cancel();
    projectors.await??;
    Ok(())
}

#[tokio::test]
#[ignore = "needs nats-server and Postgres"]
async fn a_rebuild_under_load_matches_the_live_model() -> anyhow::Result<()> {
    let env = spawn_env().await?;
    let stop = CancellationToken::new();
    let projectors = spawn_all(&env, env.settings(), &stop);
    for i in 0..200 {
        env.record(
            &format!("q{i}"),
            1,
            "PolicyCreated",
            created(&format!("q{i}")),
        )
        .await?;
    }
    let writer = {
        let env = TestEnv {
            ns: env.ns.clone(),
            pool: env.pool.clone(),
            js: env.js.clone(),
        };
        tokio::spawn(async move {
            for v in 1..=3u32 {
                for i in 0..200 {
                    env.record(
                        &format!("q{i}"),
                        i64::from(v) + 1,
                        "PolicyVersionDrafted",
                        drafted(v),
                    )
                    .await?;
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }
            anyhow::Ok(())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = rebuild(
        read_model("policies").context("model")?.as_ref(),
        &env.pool,
        50,
    )
    .await?;
    let audit = rebuild(
        read_model("audit").context("model")?.as_ref(),
        &env.pool,
        50,
    )
    .await?;
    writer.await??;
    assert!(
        report.caught_up + audit.caught_up > 0,
        "{report:?}\n{audit:?}"
    );
    eventually("every draft projected", || async {
        Ok(
            env.scalar("SELECT count(*) FROM policy_versions").await? == 600
                && env.scalar("SELECT count(*) FROM audit_log").await? == 800,
        )
    })
    .await?;
    let live = env.snapshot().await?;
    stop.cancel();
    projectors.await??;
    for name in ["audit", "policies"] {
        rebuild(read_model(name).context("model")?.as_ref(), &env.pool, 64).await?;
    }
    assert_same(&env.snapshot().await?, &live, "rebuild");
    Ok(())
}

#[tokio::test]
#[ignore = "needs nats-server and Postgres"]
async fn poison_is_dead_lettered_and_the_rest_still_applies() -> anyhow::Result<()> {
    let env = spawn_env().await?;
    let stop = CancellationToken::new();
    let projectors = spawn_all(&env, env.settings(), &stop);
    env.record(
        "p3",
        1,
        "PolicyCreated",
        json!({"PolicyCreated": {"bogus": 1}}),
    )
    .await?;
    env.record("p4", 1, "PolicyCreated", created("p4")).await?;
    let garbage = subjects::event(&env.ns, "policy", "p5", "PolicyCreated");
    env.js.publish(garbage, "not json".into()).await?.await?;
    env.record("p3", 2, "PolicyVersionDrafted", drafted(1))
        .await?;
    env.record("p4", 2, "PolicyVersionDrafted", drafted(1))
        .await?;
    eventually("p4 drafted and 4 dead letters", || async {
        let letters = match env
            .js
            .get_stream(subjects::dead_letter_stream(&env.ns))
            .await
        {
            Ok(mut s) => s.info().await?.state.messages,
            Err(_) => 0,
        };
        Ok(env
            .scalar("SELECT count(*) FROM policy_versions WHERE policy_id = 'p4'")
            .await?
            == 1
            && letters == 4)
    })
    .await?;
    // p3's draft follows a dead-lettered creation: a gap until its last try, then parked too.
    assert_eq!(env.scalar("SELECT count(*) FROM audit_log").await?, 4);
    assert_eq!(env.scalar("SELECT count(*) FROM policies").await?, 1);
    let dlq = env
        .js
        .get_stream(subjects::dead_letter_stream(&env.ns))
        .await?;
    let letter = dlq.get_raw_message(1).await?;
    let reason = letter
        .headers
        .get(metadata::HEADER_DLQ_REASON)
        .context("reason")?;
    assert!(reason.as_str().contains("undecodable"), "{reason}");
    eventually("checkpoints at the end of the stream", || async {
        Ok(env
            .scalar("SELECT min(last_stream_seq) FROM projector_checkpoints")
            .await?
            == 5)
    })
    .await?;

    let live = env.snapshot().await?;
    let report = rebuild(
        read_model("policies").context("model")?.as_ref(),
        &env.pool,
        500,
    )
    .await?;
    assert_eq!(report.skipped, 2);
    assert_same(&env.snapshot().await?, &live, "rebuild");
    stop.cancel();
    projectors.await??;
    Ok(())
}

#[tokio::test]
#[ignore = "needs nats-server and Postgres"]
async fn an_event_ahead_of_its_aggregate_waits_for_the_missing_one() -> anyhow::Result<()> {
    let env = spawn_env().await?;
    let first = env.store("p6", 1, "PolicyCreated", created("p6")).await?;
    let second = env
        .store("p6", 2, "PolicyVersionDrafted", drafted(1))
        .await?;
    env.publish(&second).await?;
    let stop = CancellationToken::new();
    let projectors = spawn_all(&env, env.settings(), &stop);
    tokio::time::sleep(Duration::from_millis(700)).await;
    env.publish(&first).await?;
    env.record("p7", 1, "PolicyCreated", created("p7")).await?;
    eventually("p6 at sequence 2", || async {
        Ok(env
            .scalar("SELECT coalesce(max(last_sequence), 0) FROM policies WHERE policy_id = 'p6'")
            .await?
            == 2
            && env.scalar("SELECT count(*) FROM policies").await? == 2)
    })
    .await?;
    eventually("the checkpoint released past the NAK'd message", || async {
        Ok(env
            .scalar(
                "SELECT coalesce(max(last_stream_seq), 0) FROM projector_checkpoints WHERE projector = 'policies'",
            )
            .await?
            == 3)
    })
    .await?;
    stop.cancel();
    projectors.await??;
    Ok(())
}

/// A hook that parks the projector forever the first time it is reached, and says so.
fn park_once(parked: Arc<Notify>) -> Hook {
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    Arc::new(move || {
        let (parked, fired) = (parked.clone(), fired.clone());
        Box::pin(async move {
            if !fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
                parked.notify_one();
                std::future::pending::<()>().await;
            }
        })
    })
}

/// Starts `name`'s projector with `hooks`, kills it where a hook parks it, records one more
/// event, restarts it, and checks that every event was applied exactly once.
async fn kill_and_restart(name: &str, hooks: Hooks, parked: Arc<Notify>) -> anyhow::Result<()> {
    let env = spawn_env().await?;
    let model = read_model(name).context("model")?;
    env.record("k1", 1, "PolicyCreated", created("k1")).await?;
    env.record("k1", 2, "PolicyVersionDrafted", drafted(1))
        .await?;
    let settings = ProjectorSettings {
        hooks,
        ..env.settings()
    };
    let victim = tokio::spawn(run(
        model.clone(),
        settings,
        env.pool.clone(),
        env.js.clone(),
        CancellationToken::new(),
    ));
    tokio::time::timeout(Duration::from_secs(10), parked.notified()).await?;
    victim.abort();
    assert!(victim.await.is_err_and(|e| e.is_cancelled()));

    // Delivered before the killed instance's two messages come back (after `ack_wait`).
    env.record("k1", 3, "PolicyVersionDrafted", drafted(2))
        .await?;
    let stop = CancellationToken::new();
    let restarted = tokio::spawn(run(
        model,
        env.settings(),
        env.pool.clone(),
        env.js.clone(),
        stop.clone(),
    ));
    let consumer: jetstream::consumer::PullConsumer = env
        .js
        .get_stream(subjects::events_stream(&env.ns))
        .await?
        .get_consumer(&subjects::projector_consumer(&env.ns, name))
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    eventually("every message applied and acked", || async {
        Ok(env
            .scalar("SELECT coalesce(max(last_stream_seq), 0) FROM projector_checkpoints")
            .await?
            == 3
            && consumer.get_info().await?.num_ack_pending == 0)
    })
    .await?;
    assert_eq!(
        env.scalar("SELECT count(*) FROM audit_log").await?,
        if name == "audit" { 3 } else { 0 }
    );
    if name == "policies" {
        assert_eq!(
            env.scalar("SELECT max(last_sequence) FROM policies")
                .await?,
            3
        );
        assert_eq!(env.scalar("SELECT count(*) FROM policy_versions").await?, 2);
    }
    let live = env.snapshot().await?;
    rebuild(read_model(name).context("model")?.as_ref(), &env.pool, 500).await?;
    assert_same(&env.snapshot().await?, &live, "rebuild");
    stop.cancel();
    restarted.await??;
    Ok(())
}

fn parking(before_commit: bool) -> (Hooks, Arc<Notify>) {
    let parked = Arc::new(Notify::new());
    let hook = Some(park_once(parked.clone()));
    let hooks = if before_commit {
        Hooks {
            before_commit: hook,
            ..Hooks::default()
        }
    } else {
        Hooks {
            after_commit_before_ack: hook,
            ..Hooks::default()
        }
    };
    (hooks, parked)
}

#[tokio::test]
#[ignore = "needs nats-server and Postgres"]
async fn a_policies_projector_killed_before_commit_loses_nothing() -> anyhow::Result<()> {
    let (hooks, parked) = parking(true);
    kill_and_restart("policies", hooks, parked).await
}

#[tokio::test]
#[ignore = "needs nats-server and Postgres"]
async fn a_policies_projector_killed_between_commit_and_ack_applies_nothing_twice(
) -> anyhow::Result<()> {
    let (hooks, parked) = parking(false);
    kill_and_restart("policies", hooks, parked).await
}

#[tokio::test]
#[ignore = "needs nats-server and Postgres"]
async fn an_audit_projector_killed_before_commit_loses_nothing() -> anyhow::Result<()> {
    let (hooks, parked) = parking(true);
    kill_and_restart("audit", hooks, parked).await
}

#[tokio::test]
#[ignore = "needs nats-server and Postgres"]
async fn an_audit_projector_killed_between_commit_and_ack_applies_nothing_twice(
) -> anyhow::Result<()> {
    let (hooks, parked) = parking(false);
    kill_and_restart("audit", hooks, parked).await
}

#[tokio::test]
#[ignore = "needs nats-server and Postgres"]
async fn an_empty_fetch_waits_for_its_expiry() -> anyhow::Result<()> {
    let env = spawn_env().await?;
    let stream = env.js.get_stream(subjects::events_stream(&env.ns)).await?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("probe".into()),
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut batch = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_millis(800))
        .messages()
        .await?;
    while batch.next().await.is_some() {}
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}
