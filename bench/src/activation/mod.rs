//! Scenario `activation`: Prepare a policy of eight realistic CEL rules over a catalog of
//! `--items` items (default 1,000,000) until the run succeeds, with 1 and with 2 `gatehouse
//! worker` processes (`--workers`): items per second, time to success, peak RSS of each
//! worker, CPU by component.
//!
//! The catalog ([`crate::catalog`]) is loaded once by binary COPY straight into
//! `catalog_items` (the `ingest` scenario measures the way in); the gateway, relay and
//! projectors run in this process, the workers as child processes ([`workers`]). A repetition
//! drafts a version of its own (the rules with another threshold), empties `eval_results`,
//! sends `policy.prepare` and polls the `runs` read model until the run succeeded; then every
//! catalog item must have exactly one result of that version (the snapshot's items from the
//! batch jobs, the others from the completion sweep), and the run's counters must add up.
//! The rate is catalog items over the time from sending Prepare to the run's success, so it
//! includes freezing the snapshot, scheduling, evaluating, writing, the sweep and the
//! `complete_run` round trip.
//!
//! Limits, same run ([`limits`]): the worker's evaluation code over the same items in this
//! process on every core (CPU), and a binary COPY of as many result rows into a twin of
//! `eval_results` (I/O).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gatehouse_events::run::{PrepareRun, RunStatus};
use gatehouse_rules::CompiledPolicy;
use tokio::time::Instant;

use super::machine::CpuSample;
use super::{catalog, workload, Bench};
use gatehouse::client::Client;
use workers::WorkerProcess;

mod limits;
mod specs;
mod workers;

pub use specs::SPECS;

/// The policy every repetition drafts a version of.
const POLICY: &str = "bench-activation";
/// How often the run's status is read.
const POLL: Duration = Duration::from_millis(20);

/// Runs the scenario (the registry's entry point).
pub fn run(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(activation(bench))
}

async fn activation(b: &mut Bench) -> anyhow::Result<()> {
    let items = b.params.items;
    let counts = b.params.workers.clone();
    anyhow::ensure!(
        counts.iter().all(|&n| n == 1 || n == 2),
        "activation measures runs with 1 and/or 2 worker processes (--workers 1,2)"
    );
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    b.parameter("items", items);
    b.parameter("workers", &counts);
    b.parameter("rules", catalog::rules(0).rules.len());
    b.parameter("eval_threads", threads);
    b.parameter("worker_binary", workers::binary()?.display().to_string());

    let started = std::time::Instant::now();
    limits::load_catalog(&mut b.system.db, items).await?;
    b.push("load.rate", items as f64 / started.elapsed().as_secs_f64())?;
    b.system.db.batch_execute("ANALYZE catalog_items").await?;
    let client = b.system.client("bench-activation").await?;
    client
        .command(
            "policy",
            "create",
            &workload::sender(),
            catalog::create(POLICY),
        )
        .await?;
    let policy = Arc::new(
        CompiledPolicy::compile(&catalog::rules(0), &catalog::schema())
            .map_err(|e| anyhow::anyhow!("the bench rules do not compile: {e:?}"))?,
    );

    let mut version = 0;
    for rep in 0..b.params.reps {
        let (took, evaluated) = {
            let policy = Arc::clone(&policy);
            tokio::task::spawn_blocking(move || limits::evaluate(&policy, items, threads)).await?
        };
        b.push("eval.rate", items as f64 / took.as_secs_f64())?;
        let copy = limits::copy_results(&mut b.system.db, &evaluated).await?;
        drop(evaluated);
        b.push("copy.rate", items as f64 / copy.as_secs_f64())?;
        eprintln!(
            "bench: activation rep {}/{}: evaluation {:.0} items/s, COPY {:.0} rows/s",
            rep + 1,
            b.params.reps,
            items as f64 / took.as_secs_f64(),
            items as f64 / copy.as_secs_f64()
        );
    }
    for &count in &counts {
        let mut processes = Vec::with_capacity(count);
        for index in 0..count {
            processes.push(WorkerProcess::start(&b.system.settings, index).await?);
        }
        let measured = async {
            for rep in 0..b.params.reps {
                version += 1;
                let run = one_run(b, &client, &mut processes, version, items).await?;
                record(b, count, &run, &processes)?;
                eprintln!(
                    "bench: activation with {count} worker(s), rep {}/{}: {:.0} items/s, \
                     {:.1} s to success",
                    rep + 1,
                    b.params.reps,
                    items as f64 / run.seconds,
                    run.seconds
                );
            }
            anyhow::Ok(())
        }
        .await;
        for process in processes {
            if let Err(e) = process.stop().await {
                eprintln!("bench: {e:#}");
            }
        }
        measured?;
    }
    Ok(())
}

/// One measured run.
struct Run {
    seconds: f64,
    prepare: Duration,
    cpu: super::machine::CpuUse,
    items: u64,
}

/// Drafts `version`, empties the results, prepares it and waits until the run succeeded;
/// checks every item got one result.
async fn one_run(
    b: &Bench,
    client: &Client,
    processes: &mut [WorkerProcess],
    version: u32,
    items: u64,
) -> anyhow::Result<Run> {
    let draft = catalog::draft(POLICY, u64::from(version));
    client
        .command("policy", "draft", &workload::sender(), draft)
        .await?;
    b.system.db.batch_execute("TRUNCATE eval_results").await?;
    let body = PrepareRun {
        policy_id: POLICY.into(),
        version,
        batch_size: None,
        coverage_threshold: None,
        max_errors: None,
    };
    let cpu = CpuSample::take();
    let started = Instant::now();
    let accepted = client
        .command("policy", "prepare", &workload::sender(), body)
        .await?;
    let prepare = started.elapsed();
    let run_id = accepted.detail["run_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("prepare answered no run id: {:?}", accepted.detail))?
        .to_owned();
    let deadline = Duration::from_secs(120) + Duration::from_millis(items / 5);
    loop {
        b.system.check_roles()?;
        for process in processes.iter_mut() {
            process.check()?;
        }
        let row = b
            .system
            .db
            .query_opt(
                "SELECT status, failure FROM runs WHERE run_id = $1",
                &[&run_id],
            )
            .await?;
        if let Some(row) = row {
            match RunStatus::parse(row.get(0)) {
                Some(RunStatus::Success) => break,
                Some(RunStatus::Running) => {}
                status => anyhow::bail!(
                    "run {run_id} ended {status:?}: {}",
                    row.get::<_, Option<String>>(1).unwrap_or_default()
                ),
            }
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "run {run_id} did not succeed within {deadline:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = CpuSample::take().since(&cpu);
    let results: i64 = b
        .system
        .db
        .query_one(
            "SELECT count(*) FROM eval_results WHERE policy_id = $1 AND version = $2",
            &[&POLICY, &(version as i32)],
        )
        .await?
        .get(0);
    anyhow::ensure!(
        results as u64 == items,
        "run {run_id} left {results} results for {items} catalog items"
    );
    Ok(Run {
        seconds,
        prepare,
        cpu,
        items,
    })
}

fn record(
    b: &mut Bench,
    count: usize,
    run: &Run,
    processes: &[WorkerProcess],
) -> anyhow::Result<()> {
    let w = format!("w{count}");
    let mut rss: f64 = 0.0;
    for process in processes {
        rss = rss.max(process.peak_rss_mib()?);
    }
    b.push(&format!("{w}.rate"), run.items as f64 / run.seconds)?;
    b.push(&format!("{w}.seconds"), run.seconds)?;
    b.push(&format!("{w}.prepare_ms"), run.prepare.as_secs_f64() * 1e3)?;
    b.push(&format!("{w}.rss_mib"), rss)?;
    b.figures.push_cpu(&w, &run.cpu, run.items)
}
