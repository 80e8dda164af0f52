//! The measured path of `ingest`: `gatehouse catalog import` of the file into an empty
//! `catalog_items`, timed from the start of the import until the catalog projector (a role of
//! the bench's system) holds every item.
//!
//! The import runs on a thread and a runtime of its own, as the command runs in a process of
//! its own (and its future is not `Send`, so it cannot be a task of the bench's runtime).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use gatehouse_projections::catalog::{self as projector, NAME};
use tokio_util::sync::CancellationToken;

use super::Phase;
use crate::machine::CpuSample;
use crate::Bench;
use gatehouse::broker;
use gatehouse::cli::catalog::{import, BadLine, ImportOptions, ImportReport};
use gatehouse::settings::Settings;

/// How often the projector's checkpoint is read while it catches up.
const POLL: Duration = Duration::from_millis(10);

/// One import, until the projector held every item.
pub struct Ingested {
    /// The import alone, until its last PubAck.
    pub import: Duration,
    /// From the start of the import until every item was projected.
    pub whole: Phase,
}

/// Imports `path` into an empty catalog and waits until the projector wrote every item.
pub async fn ingest_once(b: &mut Bench, path: PathBuf) -> anyhow::Result<Ingested> {
    let (ns, items) = (b.system.settings.namespace.clone(), b.params.items);
    b.system.db.batch_execute("TRUNCATE catalog_items").await?;
    let js = broker::jetstream(&b.system.nats);
    let before = last_sequence(&js, &ns).await?;
    let cpu = CpuSample::take();
    let imported = import_file(b.system.settings.clone(), path).await?;
    let report = &imported.report;
    anyhow::ensure!(
        report.complete && report.published == items,
        "the import stored {} of {items} lines ({} duplicates, {} bad)",
        report.published,
        report.duplicates,
        report.bad_lines
    );
    let last = last_sequence(&js, &ns).await?;
    anyhow::ensure!(
        last - before == items,
        "the catalog stream grew by {} messages, not {items}",
        last - before
    );
    let deadline = Duration::from_secs(60) + Duration::from_millis(items);
    projected(b, last, deadline).await?;
    let whole = Phase {
        took: imported.started.elapsed(),
        cpu: CpuSample::take().since(&cpu),
    };
    let held: i64 = b
        .system
        .db
        .query_one("SELECT count(*) FROM catalog_items", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        held == items as i64,
        "catalog_items holds {held} items, not {items}"
    );
    Ok(Ingested {
        import: imported.took,
        whole,
    })
}

/// What one import did, when it started and how long it took.
struct Imported {
    report: ImportReport,
    started: Instant,
    took: Duration,
}

/// Runs the import of `path` on a runtime of its own; it stops early (its progress saved) if
/// this future is dropped, as on Ctrl-C.
async fn import_file(settings: Settings, path: PathBuf) -> anyhow::Result<Imported> {
    let stop = CancellationToken::new();
    let _stop_when_dropped = stop.clone().drop_guard();
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let nats = broker::connect(&settings, "bench-import").await?;
            let (ns, options) = (&settings.namespace, ImportOptions::default());
            let started = Instant::now();
            let report = import(&nats, ns, &path, &options, &stop, &mut |_: &BadLine| {}).await?;
            let took = started.elapsed();
            nats.drain().await?;
            Ok(Imported {
                report,
                started,
                took,
            })
        })
    })
    .await?
}

/// The catalog stream's last sequence (the stream is created if the projector has not yet).
async fn last_sequence(js: &jetstream::Context, ns: &str) -> anyhow::Result<u64> {
    let stream = projector::ensure_stream(js, ns).await?;
    Ok(stream.cached_info().state.last_sequence)
}

/// Waits until the catalog projector's checkpoint reached `last_seq`: it commits with the rows
/// it covers, so every item up to there is in `catalog_items`.
async fn projected(b: &Bench, last_seq: u64, deadline: Duration) -> anyhow::Result<()> {
    let db = &b.system.db;
    let started = Instant::now();
    let checkpoint = db
        .prepare("SELECT last_stream_seq FROM projector_checkpoints WHERE projector = $1")
        .await?;
    loop {
        let at: i64 = db
            .query_opt(&checkpoint, &[&NAME])
            .await?
            .map_or(0, |row| row.get(0));
        if u64::try_from(at).unwrap_or(0) >= last_seq {
            return Ok(());
        }
        b.system.check_roles()?;
        anyhow::ensure!(
            started.elapsed() < deadline,
            "the catalog projector reached stream sequence {at}, not {last_seq}, within \
             {deadline:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}
