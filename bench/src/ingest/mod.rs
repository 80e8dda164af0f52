//! Scenario `ingest`: `--items` generated catalog items (default 1,000,000, see
//! [`catalog::item`](super::catalog::item)) imported through the catalog stream into
//! `catalog_items` — `gatehouse catalog import` of a JSON-lines file
//! ([`import()`](gatehouse::cli::catalog::import())) with the catalog projector running in this
//! process — timed from the start of the import until the projector's checkpoint reached the
//! stream's last message (it commits with the rows it covers). The import alone, until its
//! last PubAck, is a figure of its own.
//!
//! Limits, same run, same lines: a binary COPY of the same rows into an identically indexed
//! table (`copy`); raw JetStream publishes awaiting every PubAck (`raw`).
//!
//! The file is written once (`file`). Every repetition starts from an empty `catalog_items`
//! and imports the file under a new name (`import`), so every line is a new message and every
//! item new to the catalog: the projector's COPY path, as in a catalog's first import.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use gatehouse_events::subjects;
use gatehouse_projections::catalog as projector;

use super::figures::{Spec, Target};
use super::machine::{CpuSample, CpuUse};
use super::Bench;
use copy::copy_items;
use file::ItemsFile;
use gatehouse::broker;
use gatehouse::cli::catalog::DEFAULT_IN_FLIGHT;
use import::{ingest_once, Ingested};
use raw::{publish_lines, scratch_stream_name, trim};

mod copy;
mod file;
mod import;
pub(crate) mod raw;

/// Every figure of the scenario.
pub const SPECS: &[Spec] = &[
    Spec::plain(
        "ingest.rate",
        "items/s",
        "import start → every item in catalog_items",
    )
    .versus("copy.rate")
    .target(Target::RatioAtLeast { ratio: 0.5 }),
    Spec::plain("copy.rate", "rows/s", "limit: binary COPY of the same rows"),
    Spec::plain(
        "import.rate",
        "msg/s",
        "the import alone, until its last PubAck",
    )
    .versus("raw_js.rate"),
    Spec::plain(
        "raw_js.rate",
        "msg/s",
        "limit: JetStream publishes of the same lines, PubAcks awaited",
    ),
    Spec::plain("ingest.raw_ratio", "×", "ingest.rate / raw_js.rate"),
    Spec::plain("ingest.seconds", "s", "import start → every item projected"),
    Spec::plain(
        "catchup.seconds",
        "s",
        "import done → every item projected (the projector's lag)",
    ),
    Spec::plain("copy.seconds", "s", "COPY and COMMIT"),
    Spec::plain(
        "ingest.cpu_us_gatehouse",
        "µs/item",
        "CPU of this process (import and projector)",
    ),
    Spec::plain("ingest.cpu_us_postgres", "µs/item", "CPU of Postgres"),
    Spec::plain("ingest.cpu_us_nats", "µs/item", "CPU of nats-server"),
    Spec::plain("ingest.busy_cores", "cores", "machine CPU busy"),
    Spec::plain("ingest.other_cores", "cores", "CPU busy elsewhere (noise)"),
    Spec::plain(
        "ingest.steal_cores",
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
    Spec::plain("raw_js.cpu_us_gatehouse", "µs/msg", "CPU of this process"),
    Spec::plain("raw_js.cpu_us_nats", "µs/msg", "CPU of nats-server"),
    Spec::plain("raw_js.busy_cores", "cores", "machine CPU busy"),
    Spec::plain("raw_js.other_cores", "cores", "CPU busy elsewhere (noise)"),
    Spec::plain(
        "raw_js.steal_cores",
        "cores",
        "CPU taken by the hypervisor (noise)",
    ),
    Spec::plain("generate.rate", "items/s", "writing the import file (once)"),
];

/// Runs the scenario (the registry's entry point).
pub fn run(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(ingest(bench))
}

/// One timed phase and the CPU used meanwhile.
pub struct Phase {
    pub took: Duration,
    pub cpu: CpuUse,
}

async fn ingest(b: &mut Bench) -> anyhow::Result<()> {
    let items = b.params.items;
    let ns = b.system.settings.namespace.clone();
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("gatehouse-bench-ingest-{ns}"));
    let mut file = ItemsFile::write(dir, items).await?;
    b.push("generate.rate", rate(items, started.elapsed()))?;
    b.parameter("items", items);
    b.parameter("file_bytes", file.bytes);
    b.parameter("in_flight", DEFAULT_IN_FLIGHT);
    b.parameter("projector_batch", projector::DEFAULT_BATCH_SIZE);
    let nats = broker::connect(&b.system.settings, "bench-ingest").await?;
    let js = broker::jetstream(&nats);
    for rep in 0..b.params.reps {
        file.rename_for(rep).await?;
        let ingested = ingest_once(b, file.path().to_owned()).await?;
        // Not measured: room in the account's 8 GB, and no autovacuum of the fresh rows
        // competing with the COPY.
        trim(&js, &subjects::catalog_stream(&ns)).await?;
        b.system
            .db
            .batch_execute("VACUUM ANALYZE catalog_items")
            .await?;

        let copy = measure(items, copy_items(&mut b.system.db, &file)).await?;
        let raw = measure(items, publish_lines(&nats, &ns, &file, DEFAULT_IN_FLIGHT)).await?;
        trim(&js, &scratch_stream_name(&ns)).await?;
        record(b, &ingested, &copy, &raw)?;
        eprintln!(
            "bench: ingest rep {}/{}: ingest {:.0} items/s (import {:.0} msg/s, projected {:.1} s \
             later), COPY {:.0} rows/s, raw JetStream {:.0} msg/s",
            rep + 1,
            b.params.reps,
            rate(items, ingested.whole.took),
            rate(items, ingested.import),
            (ingested.whole.took - ingested.import).as_secs_f64(),
            rate(items, copy.took),
            rate(items, raw.took),
        );
    }
    nats.drain().await?;
    Ok(())
}

/// Runs a limit that returns how long its own timed part took and how many items it handled;
/// notes the CPU used meanwhile.
async fn measure(
    items: u64,
    limit: impl std::future::Future<Output = anyhow::Result<(Duration, u64)>>,
) -> anyhow::Result<Phase> {
    let cpu = CpuSample::take();
    let (took, handled) = limit.await?;
    let cpu = CpuSample::take().since(&cpu);
    anyhow::ensure!(
        handled == items,
        "a limit handled {handled} items, not {items}"
    );
    Ok(Phase { took, cpu })
}

fn record(b: &mut Bench, ingested: &Ingested, copy: &Phase, raw: &Phase) -> anyhow::Result<()> {
    let items = b.params.items;
    let whole = &ingested.whole;
    b.push("ingest.rate", rate(items, whole.took))?;
    b.push("copy.rate", rate(items, copy.took))?;
    b.push("import.rate", rate(items, ingested.import))?;
    b.push("raw_js.rate", rate(items, raw.took))?;
    b.push(
        "ingest.raw_ratio",
        raw.took.as_secs_f64() / whole.took.as_secs_f64(),
    )?;
    b.push("ingest.seconds", whole.took.as_secs_f64())?;
    b.push(
        "catchup.seconds",
        (whole.took - ingested.import).as_secs_f64(),
    )?;
    b.push("copy.seconds", copy.took.as_secs_f64())?;
    for (phase, cpu) in [
        ("ingest", &whole.cpu),
        ("copy", &copy.cpu),
        ("raw_js", &raw.cpu),
    ] {
        b.figures.push_cpu(phase, cpu, items)?;
    }
    Ok(())
}

fn rate(items: u64, took: Duration) -> f64 {
    items as f64 / took.as_secs_f64().max(1e-9)
}
