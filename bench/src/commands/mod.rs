//! Scenario `commands`: `N` NATS clients send real commands through the gateway back to back
//! for a fixed time, beside the raw Postgres work of a command at the same concurrency.
//!
//! Per repetition, one phase after the other (the system settles in between: the relay and the
//! projectors catch up, and how long that takes is reported as the phase's backlog):
//! 1. `create`: `policy.create` of a fresh policy per command (constant work per command).
//! 2. `draft`: `policy.draft` by each client on a policy of its own, created before the phase
//!    (loads the policy's stream, validates three CEL rules); the stream grows by one event per
//!    draft, reported as `draft.events_per_policy`.
//! 3. `gateway_only`: `create` again with the relay and the projectors stopped (the gateway
//!    alone); then they are started again and `drain.rate` is how fast they work off the
//!    backlog it left.
//! 4. `raw` (the limit): one tokio-postgres connection per client; per "command" `BEGIN`,
//!    `SELECT max(sequence)` of the client's aggregate, `INSERT` of one drafted-event row (the
//!    same payload and metadata as a real draft) into `bench_raw_events` (`LIKE events
//!    INCLUDING ALL`: same columns, defaults, identity and indexes, no trigger), `COMMIT`.
//! 5. `echo`: the same clients' requests answered at once by an in-process responder: the NATS
//!    request/reply floor.
//!
//! Layout: this file runs the phases; `specs`: the figures; [`baseline`]: `raw` and `echo`;
//! `breakdown`: a draft's validation and load, timed on their own.

use std::time::Duration;

use futures::future::BoxFuture;
use gatehouse_events::policy::AGGREGATE;

use super::load::{closed_loop, Outcome, Worker};
use super::machine::CpuSample;
use super::{workload, Bench};
use baseline::{Echo, Raw};
use gatehouse::client::Client;

pub mod baseline;
mod breakdown;
mod specs;

pub use specs::SPECS;

/// How long the system may take to catch up after a phase.
const SETTLE: Duration = Duration::from_secs(600);

/// Runs the scenario (the registry's entry point).
pub fn run(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(commands(bench))
}

async fn commands(b: &mut Bench) -> anyhow::Result<()> {
    let n = b.params.concurrency;
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        clients.push(b.system.client(&format!("bench-{i}")).await?);
    }
    let (payload, metadata) = sample_draft(&clients[0], &b.system.db).await?;
    b.system
        .db
        .batch_execute("CREATE TABLE bench_raw_events (LIKE events INCLUDING ALL)")
        .await?;
    let mut raw = Vec::with_capacity(n);
    for i in 0..n {
        raw.push(Raw::new(b, format!("raw-{i}"), &payload, &metadata).await?);
    }
    let echo = Echo::start(b, &clients).await?;
    b.parameter("payload_bytes", serde_json::to_vec(&payload)?.len());
    b.parameter("db_pool_size", b.system.settings.db_pool_size);
    b.parameter("max_inflight", b.system.settings.max_inflight);
    if !b.params.warmup.is_zero() {
        closed_loop(creators(&clients, "warm"), b.params.warmup).await;
        b.system.settle(SETTLE).await?;
    }
    for rep in 0..b.params.reps {
        let d = b.params.duration;
        let (create, _) = closed_loop(creators(&clients, &format!("c{rep}")), d).await;
        create.record(&mut b.figures, "create")?;
        let backlog = b.system.settle(SETTLE).await?;
        b.push("create.backlog_s", backlog.as_secs_f64())?;

        let drafters = drafters(&clients, rep).await?;
        let ids: Vec<String> = drafters.iter().map(|w| w.policy_id.clone()).collect();
        let (draft, _) = closed_loop(drafters, d).await;
        draft.record(&mut b.figures, "draft")?;
        b.push("draft.events_per_policy", stream_length(b, &ids).await?)?;
        b.push("draft.validate_us", breakdown::validate_us(50)?)?;
        let load = breakdown::load_us(&b.system.db, &ids[0], 20).await?;
        b.push("draft.load_us", load)?;
        let backlog = b.system.settle(SETTLE).await?;
        b.push("draft.backlog_s", backlog.as_secs_f64())?;

        let alone = gateway_only(b, &clients, rep).await?;

        let (raw_outcome, back) = closed_loop(raw, d).await;
        raw = back;
        raw_outcome.record(&mut b.figures, "raw")?;
        let (echo_outcome, _) = closed_loop(echo.workers(n), d).await;
        echo_outcome.record(&mut b.figures, "echo")?;
        b.system.check_roles()?;
        let phases = [
            ("create", &create),
            ("draft", &draft),
            ("gateway only", &alone),
            ("raw", &raw_outcome),
        ];
        progress(rep, b.params.reps, &phases);
    }
    echo.stop();
    Ok(())
}

/// `create` with the relay and the projectors stopped, then how fast they work off the
/// backlog once started again.
async fn gateway_only(b: &mut Bench, clients: &[Client], rep: usize) -> anyhow::Result<Outcome> {
    b.system.stop_downstream().await?;
    let creators = creators(clients, &format!("g{rep}"));
    let (alone, _) = closed_loop(creators, b.params.duration).await;
    alone.record(&mut b.figures, "gateway_only")?;
    let cpu = CpuSample::take();
    b.system.start_downstream();
    let drained = b.system.settle(SETTLE).await?;
    let used = CpuSample::take().since(&cpu);
    b.push("drain.rate", alone.ops as f64 / drained.as_secs_f64())?;
    b.figures.push_cpu("drain", &used, alone.ops)?;
    Ok(alone)
}

fn progress(rep: usize, reps: usize, phases: &[(&str, &Outcome)]) {
    let line: Vec<String> = phases
        .iter()
        .map(|(name, o)| format!("{name} {:.0}/s ({} errors)", o.rate(), o.errors))
        .collect();
    eprintln!(
        "bench: commands rep {}/{reps}: {}",
        rep + 1,
        line.join(", ")
    );
}

/// Creates one policy and drafts it once; returns the drafted event's stored payload and
/// metadata (what the raw loop inserts).
async fn sample_draft(
    client: &Client,
    db: &tokio_postgres::Client,
) -> anyhow::Result<(serde_json::Value, serde_json::Value)> {
    let id = "bench-sample";
    let sender = workload::sender;
    client
        .command(AGGREGATE, "create", &sender(), workload::create(id)?)
        .await?;
    client
        .command(AGGREGATE, "draft", &sender(), workload::draft(id, 0)?)
        .await?;
    let row = db
        .query_one(
            "SELECT payload, metadata FROM events WHERE aggregate_id = $1 AND sequence = 2",
            &[&id],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// The mean number of events of the drafted policies.
async fn stream_length(b: &Bench, ids: &[String]) -> anyhow::Result<f64> {
    let row = b
        .system
        .db
        .query_one(
            "SELECT coalesce(avg(n), 0)::float8 FROM (SELECT max(sequence) AS n FROM events
              WHERE aggregate_type = $1 AND aggregate_id = ANY($2) GROUP BY aggregate_id) s",
            &[&AGGREGATE, &ids],
        )
        .await?;
    Ok(row.get(0))
}

fn creators(clients: &[Client], prefix: &str) -> Vec<Create> {
    clients
        .iter()
        .enumerate()
        .map(|(i, c)| Create {
            client: c.clone(),
            prefix: format!("{prefix}-{i}"),
        })
        .collect()
}

/// One drafter per client, each on a policy created for it now.
async fn drafters(clients: &[Client], rep: usize) -> anyhow::Result<Vec<Draft>> {
    let mut drafters = Vec::with_capacity(clients.len());
    for (i, client) in clients.iter().enumerate() {
        let policy_id = format!("d{rep}-{i}");
        client
            .command(
                AGGREGATE,
                "create",
                &workload::sender(),
                workload::create(&policy_id)?,
            )
            .await?;
        drafters.push(Draft {
            client: client.clone(),
            policy_id,
        });
    }
    Ok(drafters)
}

struct Create {
    client: Client,
    prefix: String,
}

impl Worker for Create {
    async fn op(&mut self, n: u64) -> anyhow::Result<()> {
        let command = workload::create(&format!("{}-{n}", self.prefix))?;
        self.client
            .command(AGGREGATE, "create", &workload::sender(), command)
            .await?;
        Ok(())
    }
}

struct Draft {
    client: Client,
    policy_id: String,
}

impl Worker for Draft {
    async fn op(&mut self, n: u64) -> anyhow::Result<()> {
        let command = workload::draft(&self.policy_id, n)?;
        self.client
            .command(AGGREGATE, "draft", &workload::sender(), command)
            .await?;
        Ok(())
    }
}
