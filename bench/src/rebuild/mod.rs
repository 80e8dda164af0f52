//! Scenario `rebuild`: rebuild the audit read model from `--events` stored events (default
//! 1,000,000) with `gatehouse_projections::rebuild`, beside its limit: a binary COPY of the
//! same audit rows into a fresh, identically indexed table (`LIKE audit_log INCLUDING ALL`).
//!
//! The events are generated into `events` once, by binary COPY, with the table's user triggers
//! disabled meanwhile (the outbox trigger fires per row; this scenario measures the rebuild,
//! not the relay) — 100 drafted versions per policy, each event with a realistic rules payload.
//! No role runs: the rebuild reads Postgres only.
//!
//! Where the time goes is measured, not guessed: [`whatif`] replays the same events the same
//! way with the writes prepared once, and batched per page.

use std::time::Instant;

use futures::future::BoxFuture;

use super::figures::{Spec, Target};
use super::machine::CpuSample;
use super::Bench;
use gatehouse::db;
use generate::{copy_audit_rows, load_events, Generator};
use whatif::Write;

mod generate;
mod whatif;

/// Every figure of the scenario.
pub const SPECS: &[Spec] = &[
    Spec::plain(
        "rebuild.rate",
        "events/s",
        "audit rebuilt from the event store",
    )
    .versus("copy.rate")
    .target(Target::RatioAtLeast { ratio: 0.5 }),
    Spec::plain(
        "copy.rate",
        "rows/s",
        "limit: binary COPY of the same audit rows",
    ),
    Spec::plain(
        "rebuild.seconds",
        "s",
        "whole rebuild, shadow table to swap",
    ),
    Spec::plain(
        "whatif_prepared.rate",
        "events/s",
        "the replay, per-row INSERT prepared once",
    )
    .versus("copy.rate"),
    Spec::plain(
        "whatif_unnest.rate",
        "events/s",
        "the replay, one INSERT … unnest per page",
    )
    .versus("copy.rate"),
    Spec::plain("rebuild.swap_ms", "ms", "live table locked for the swap"),
    Spec::plain("copy.seconds", "s", "COPY and COMMIT"),
    Spec::plain(
        "rebuild.cpu_us_gatehouse",
        "µs/event",
        "CPU of this process",
    ),
    Spec::plain("rebuild.cpu_us_postgres", "µs/event", "CPU of Postgres"),
    Spec::plain("rebuild.busy_cores", "cores", "machine CPU busy"),
    Spec::plain("rebuild.other_cores", "cores", "CPU busy elsewhere (noise)"),
    Spec::plain(
        "rebuild.steal_cores",
        "cores",
        "CPU taken by the hypervisor (noise)",
    ),
    Spec::plain("copy.cpu_us_gatehouse", "µs/row", "CPU of this process"),
    Spec::plain("copy.cpu_us_postgres", "µs/row", "CPU of Postgres"),
    Spec::plain("copy.busy_cores", "cores", "machine CPU busy"),
    Spec::plain("copy.other_cores", "cores", "CPU busy elsewhere (noise)"),
    Spec::plain(
        "copy.steal_cores",
        "cores",
        "CPU taken by the hypervisor (noise)",
    ),
    Spec::plain(
        "load.rate",
        "events/s",
        "generating the events (binary COPY, once)",
    ),
];

/// Events the what-if replays read (they only show where the time goes).
const WHATIF_EVENTS: u64 = 200_000;

/// Runs the scenario (the registry's entry point).
pub fn run(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(rebuild(bench))
}

async fn rebuild(b: &mut Bench) -> anyhow::Result<()> {
    let events = b.params.events;
    let whatif_events = events.min(WHATIF_EVENTS);
    let generator = Generator::new()?;
    b.parameter("events", events);
    b.parameter("whatif_events", whatif_events);
    b.parameter("batch", b.params.batch);
    b.parameter("payload_bytes", generator.payloads[0].len());
    let started = Instant::now();
    load_events(&b.system.db, &generator, events).await?;
    b.push("load.rate", events as f64 / started.elapsed().as_secs_f64())?;
    b.system.db.batch_execute("VACUUM ANALYZE events").await?;
    let model = gatehouse_projections::read_model("audit")
        .ok_or_else(|| anyhow::anyhow!("no audit read model"))?;
    let pool = db::pool(&b.system.settings.database_url, 2)?;
    for rep in 0..b.params.reps {
        let cpu = CpuSample::take();
        let report = gatehouse_projections::rebuild(model.as_ref(), &pool, b.params.batch).await?;
        let used = CpuSample::take().since(&cpu);
        let applied = report.copied + report.caught_up;
        anyhow::ensure!(
            applied == events,
            "the rebuild applied {applied} events, not {events}"
        );
        let seconds = report.total_time.as_secs_f64();
        b.push("rebuild.rate", applied as f64 / seconds)?;
        b.push("rebuild.seconds", seconds)?;
        b.push("rebuild.swap_ms", report.swap_time.as_secs_f64() * 1e3)?;
        b.figures.push_cpu("rebuild", &used, applied)?;

        let cpu = CpuSample::take();
        let copy = copy_audit_rows(&mut b.system.db, &generator, events).await?;
        let used = CpuSample::take().since(&cpu);
        b.push("copy.rate", events as f64 / copy.as_secs_f64())?;
        b.push("copy.seconds", copy.as_secs_f64())?;
        b.figures.push_cpu("copy", &used, events)?;

        for (write, figure) in [
            (Write::PerRowPrepared, "whatif_prepared.rate"),
            (Write::Unnest, "whatif_unnest.rate"),
        ] {
            let took =
                whatif::replay(&mut b.system.db, whatif_events, b.params.batch, write).await?;
            b.push(figure, whatif_events as f64 / took.as_secs_f64())?;
        }
        eprintln!(
            "bench: rebuild rep {}/{}: rebuild {:.0} events/s, COPY {:.0} rows/s",
            rep + 1,
            b.params.reps,
            applied as f64 / seconds,
            events as f64 / copy.as_secs_f64()
        );
    }
    Ok(())
}
