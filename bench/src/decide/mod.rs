//! Scenario `decide`: `N` host clients ask `decision.evaluate {action: publish}` back to back
//! for a fixed time, each decision persisted (a `DecisionRecorded` event on a fresh item's
//! `artifact` aggregate), beside a raw Postgres loop doing one insert per decision at the same
//! concurrency.
//!
//! Set-up: a policy of the bench workload (three CEL rules) with version 1 prepared over a small
//! catalog and promoted (an evaluation worker runs for it), repo `bench` bound to it, user `svc`
//! granted `service`. Per repetition:
//! 1. `decide`: the clients connect as `svc` of the `CLIENTS` account (the path a host system
//!    takes: the role check reads the grants in force per request). Without the password of
//!    `svc` in `GATEHOUSE_SVC_PASSWORD` they connect as Gatehouse's own user instead (the
//!    parameter `decide_caller` says which).
//! 2. `internal`: the same through Gatehouse's own connection, which skips the role check: the
//!    difference is what the role check costs.
//! 3. `gateway_only`: `decide` again with the relay and the projectors stopped (what a
//!    decision costs without the downstream work its event causes: relaying, the audit and
//!    quarantine read models); they are started again and the system settles before `raw`.
//! 4. `raw` (the limit): one tokio-postgres connection per client; per decision one `INSERT` of
//!    a stored `DecisionRecorded` row (same payload and metadata) into `bench_raw_events`
//!    (`LIKE events INCLUDING ALL`, no trigger), autocommitted.
//!
//! Every decision is for a new item (`<phase><rep>-<client>-<n>`), so the work per decision is
//! constant (an item's stream never grows).

use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use gatehouse_events::access::GrantRole;
use gatehouse_events::decision::{Action, DecisionReply, EvaluateDecision};
use gatehouse_events::envelope::RejectionCode;
use gatehouse_events::repo::BindRepo;
use gatehouse_events::run::{PrepareRun, PromoteRun};
use serde_json::{json, Map, Value};
use tokio_postgres::Statement;

use super::load::{closed_loop, Outcome, Worker};
use super::{workload, Bench};
use gatehouse::client::{Client, ClientError, Sender};

mod specs;

pub use specs::SPECS;

/// The repo the clients publish to.
const REPO: &str = "bench";
/// The policy bound to it.
const POLICY: &str = "bench-gate";
/// The host user the clients connect as.
const HOST_USER: &str = "svc";
/// How long the set-up's run may take.
const PREPARE_DEADLINE: Duration = Duration::from_secs(120);
/// How long the system may take to catch up after a phase.
const SETTLE: Duration = Duration::from_secs(600);

/// Runs the scenario (the registry's entry point).
pub fn run(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(decide(bench))
}

async fn decide(b: &mut Bench) -> anyhow::Result<()> {
    let n = b.params.concurrency;
    let admin = b.system.client("bench-admin").await?;
    set_up(b, &admin).await?;
    let host_password = std::env::var("GATEHOUSE_SVC_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    b.parameter(
        "decide_caller",
        if host_password.is_some() {
            "svc (CLIENTS account)"
        } else {
            "gatehouse (own account: GATEHOUSE_SVC_PASSWORD is not set)"
        },
    );
    let mut hosts = Vec::with_capacity(n);
    let mut internal = Vec::with_capacity(n);
    for i in 0..n {
        internal.push(b.system.client(&format!("bench-internal-{i}")).await?);
        hosts.push(match &host_password {
            Some(password) => host_client(b, password).await?,
            None => b.system.client(&format!("bench-host-{i}")).await?,
        });
    }
    let actor = if host_password.is_some() {
        HOST_USER
    } else {
        workload::ACTOR
    };
    // One decision first: its stored row is what the raw loop inserts.
    let sample = ask(&internal[0], workload::ACTOR, "sample").await?;
    anyhow::ensure!(
        sample == "allow",
        "the bench decision is `{sample}`, not allow"
    );
    let row = b
        .system
        .db
        .query_one(
            "SELECT payload, metadata FROM events
              WHERE aggregate_type = 'artifact' AND aggregate_id = $1",
            &[&format!("{REPO}:sample")],
        )
        .await
        .context("the sample decision's event")?;
    let (payload, metadata): (Value, Value) = (row.get(0), row.get(1));
    b.parameter("payload_bytes", serde_json::to_vec(&payload)?.len());
    b.parameter("db_pool_size", b.system.settings.db_pool_size);
    b.system
        .db
        .batch_execute("CREATE TABLE bench_raw_events (LIKE events INCLUDING ALL)")
        .await?;
    let mut raw = Vec::with_capacity(n);
    for i in 0..n {
        raw.push(Raw::new(b, i, &payload, &metadata).await?);
    }
    if !b.params.warmup.is_zero() {
        closed_loop(deciders(&hosts, actor, "warm"), b.params.warmup).await;
        b.system.settle(SETTLE).await?;
    }
    for rep in 0..b.params.reps {
        let d = b.params.duration;
        let (decided, _) = closed_loop(deciders(&hosts, actor, &format!("d{rep}")), d).await;
        decided.record(&mut b.figures, "decide")?;
        b.system.settle(SETTLE).await?;
        let prefix = format!("i{rep}");
        let (inside, _) = closed_loop(deciders(&internal, workload::ACTOR, &prefix), d).await;
        inside.record(&mut b.figures, "internal")?;
        b.system.settle(SETTLE).await?;
        b.system.stop_downstream().await?;
        let prefix = format!("g{rep}");
        let (alone, _) = closed_loop(deciders(&hosts, actor, &prefix), d).await;
        alone.record(&mut b.figures, "gateway_only")?;
        b.system.start_downstream();
        b.system.settle(SETTLE).await?;
        let (raw_outcome, back) = closed_loop(raw, d).await;
        raw = back;
        raw_outcome.record(&mut b.figures, "raw")?;
        b.system.check_roles()?;
        progress(
            rep,
            b.params.reps,
            &[
                ("decide", &decided),
                ("internal", &inside),
                ("gateway only", &alone),
                ("raw", &raw_outcome),
            ],
        );
    }
    Ok(())
}

/// The policy with version 1 active, the repo bound to it, `svc` a service.
async fn set_up(b: &mut Bench, admin: &Client) -> anyhow::Result<()> {
    b.system.start_worker();
    let sender = workload::sender;
    b.system
        .db
        .execute(
            "INSERT INTO catalog_items (item_id, status, attributes, updated_at, stream_seq)
             SELECT 'bench-item-' || i, 'ready',
                    jsonb_build_object('kind', 'image', 'quality', i / 10.0, 'tags', '[]'::jsonb,
                        'scan', jsonb_build_object('status', 'clean', 'critical', 0)),
                    now() - interval '1 second', i
               FROM generate_series(1, 10) AS i",
            &[],
        )
        .await
        .context("cannot insert the bench catalog items")?;
    admin
        .command("policy", "create", &sender(), workload::create(POLICY)?)
        .await?;
    admin
        .command("policy", "draft", &sender(), workload::draft(POLICY, 0)?)
        .await?;
    let prepare = PrepareRun {
        policy_id: POLICY.into(),
        version: 1,
        batch_size: None,
        coverage_threshold: None,
        max_errors: None,
    };
    let done = admin
        .command("policy", "prepare", &sender(), prepare)
        .await?;
    let run_id = done.detail["run_id"]
        .as_str()
        .context("the prepare reply names no run")?
        .to_owned();
    let deadline = tokio::time::Instant::now() + PREPARE_DEADLINE;
    loop {
        b.system.check_roles()?;
        let status: Option<String> = b
            .system
            .db
            .query_opt("SELECT status FROM runs WHERE run_id = $1", &[&run_id])
            .await?
            .map(|r| r.get(0));
        match status.as_deref() {
            Some("success") => break,
            Some(s @ ("failed" | "cancelled")) => anyhow::bail!("the set-up run ended {s}"),
            _ if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("the set-up run did not succeed within {PREPARE_DEADLINE:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let promote = PromoteRun {
        run_id,
        coverage_threshold: None,
        max_errors: None,
    };
    admin
        .command("policy", "promote", &sender(), promote)
        .await?;
    let bind = BindRepo {
        repo: REPO.into(),
        policy_id: POLICY.into(),
        budget_ms: None,
        auto_release: None,
    };
    admin.command("repo", "bind", &sender(), bind).await?;
    let grant = GrantRole {
        user: HOST_USER.into(),
        role: "service".into(),
        reason: "gatehouse bench decide".into(),
    };
    match admin.command("access", "grant", &sender(), grant).await {
        // Seeded at start-up already (GATEHOUSE_ROLES).
        Err(ClientError::Rejected(r)) if r.code == RejectionCode::Unchanged => Ok(()),
        outcome => outcome.map(drop).map_err(Into::into),
    }
}

/// A client connected as [`HOST_USER`] of the `CLIENTS` account.
async fn host_client(b: &Bench, password: &str) -> anyhow::Result<Client> {
    let nats =
        async_nats::ConnectOptions::with_user_and_password(HOST_USER.into(), password.into())
            .name("bench-host")
            .connect(b.system.settings.nats_url.as_str())
            .await
            .with_context(|| format!("cannot connect as {HOST_USER}"))?;
    Ok(Client::new(
        nats,
        b.system.settings.namespace.clone(),
        b.system.settings.request_timeout,
    ))
}

/// The attributes of every bench decision: clean, good quality, allowed by the bench rules.
fn attributes() -> Map<String, Value> {
    let Value::Object(m) = json!({"kind": "image", "quality": 0.9, "tags": ["bench"],
        "scan": {"status": "clean", "critical": 0}})
    else {
        unreachable!()
    };
    m
}

/// Asks for a publish decision on `item_id` as `actor`; the decision.
async fn ask(client: &Client, actor: &str, item_id: &str) -> anyhow::Result<String> {
    let command = EvaluateDecision {
        repo: REPO.into(),
        item_id: item_id.into(),
        action: Action::Publish,
        attributes: Some(attributes()),
        digests: vec![],
    };
    let sender = Sender {
        actor: actor.into(),
        command_id: uuid::Uuid::now_v7().to_string(),
        correlation_id: None,
    };
    let reply: DecisionReply = client
        .command_reply("decision", "evaluate", &sender, command)
        .await?;
    Ok(reply.outcome.decision.as_str().to_owned())
}

fn deciders(clients: &[Client], actor: &str, prefix: &str) -> Vec<Decide> {
    clients
        .iter()
        .enumerate()
        .map(|(i, c)| Decide {
            client: c.clone(),
            actor: actor.to_owned(),
            prefix: format!("{prefix}-{i}"),
        })
        .collect()
}

struct Decide {
    client: Client,
    actor: String,
    prefix: String,
}

impl Worker for Decide {
    async fn op(&mut self, n: u64) -> anyhow::Result<()> {
        ask(&self.client, &self.actor, &format!("{}-{n}", self.prefix)).await?;
        Ok(())
    }
}

/// The raw loop of one client: one autocommitted insert per decision.
struct Raw {
    db: tokio_postgres::Client,
    client: usize,
    insert: Statement,
    payload: Value,
    metadata: Value,
}

impl Raw {
    async fn new(
        b: &Bench,
        client: usize,
        payload: &Value,
        metadata: &Value,
    ) -> anyhow::Result<Raw> {
        let db = b.system.connect_db().await?;
        let insert = db
            .prepare(
                "INSERT INTO bench_raw_events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata) VALUES ('artifact', $1, 1, 'DecisionRecorded', \
                 '1.0', $2, $3)",
            )
            .await?;
        Ok(Raw {
            db,
            client,
            insert,
            payload: payload.clone(),
            metadata: metadata.clone(),
        })
    }
}

impl Worker for Raw {
    async fn op(&mut self, _: u64) -> anyhow::Result<()> {
        let id = format!("{REPO}:raw-{}-{}", self.client, uuid::Uuid::now_v7());
        self.db
            .execute(&self.insert, &[&id, &self.payload, &self.metadata])
            .await?;
        Ok(())
    }
}

fn progress(rep: usize, reps: usize, phases: &[(&str, &Outcome)]) {
    let line: Vec<String> = phases
        .iter()
        .map(|(name, o)| format!("{name} {:.0}/s ({} errors)", o.rate(), o.errors))
        .collect();
    eprintln!("bench: decide rep {}/{reps}: {}", rep + 1, line.join(", "));
}
