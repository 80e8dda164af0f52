//! The arguments of `gatehouse bench` and the parameters they resolve to (full or `--quick`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Arguments of `gatehouse bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The scenario: commands, decide, ingest, activation, delivery, rebuild, or `list`.
    pub scenario: String,
    /// A seconds-long smoke run: short repetitions, small sizes, no warm-up.
    #[arg(long)]
    pub quick: bool,
    /// Repetitions of every measurement (default 3).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Seconds per repetition of a timed phase (default 10; quick 0.5).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Concurrent clients in `commands` and `decide` (default 32; quick 8).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Commands per second in `delivery` (default 500; quick 200).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stored events to rebuild from in `rebuild` (default 1000000; quick 2000).
    #[arg(long)]
    pub events: Option<u64>,
    /// Catalog items in `ingest` and `activation` (default 1000000; quick 5000).
    #[arg(long)]
    pub items: Option<u64>,
    /// Worker process counts `activation` measures, comma-separated (default 1,2).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pub workers: Option<Vec<usize>>,
    /// Events per page of the rebuild (default 5000, as `gatehouse projections rebuild`).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Seconds of unrecorded load before the first repetition (default 2; quick 0).
    #[arg(long, value_name = "SECONDS")]
    pub warmup: Option<f64>,
    /// Keep the bench database afterwards (it is dropped by default).
    #[arg(long)]
    pub keep: bool,
    /// Where to write the JSON (default `bench/results/<scenario>-<timestamp>.json`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The resolved parameters of a run.
#[derive(Debug, Clone)]
pub struct Params {
    pub quick: bool,
    pub reps: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub concurrency: usize,
    pub rate: f64,
    pub events: u64,
    pub items: u64,
    pub workers: Vec<usize>,
    pub batch: usize,
}

impl Params {
    /// The arguments with the defaults (full or `--quick`) filled in.
    pub fn from_args(args: &BenchArgs) -> anyhow::Result<Params> {
        let q = args.quick;
        let seconds = |v: Option<f64>, full: f64, quick: f64| -> anyhow::Result<Duration> {
            let s = v.unwrap_or(if q { quick } else { full });
            anyhow::ensure!(s.is_finite() && s >= 0.0, "a duration must be ≥ 0 seconds");
            Ok(Duration::from_secs_f64(s))
        };
        let params = Params {
            quick: q,
            reps: args.reps.unwrap_or(3),
            duration: seconds(args.duration, 10.0, 0.5)?,
            warmup: seconds(args.warmup, 2.0, 0.0)?,
            concurrency: args.concurrency.unwrap_or(if q { 8 } else { 32 }),
            rate: args.rate.unwrap_or(if q { 200.0 } else { 500.0 }),
            events: args.events.unwrap_or(if q { 2_000 } else { 1_000_000 }),
            items: args.items.unwrap_or(if q { 5_000 } else { 1_000_000 }),
            workers: args.workers.clone().unwrap_or_else(|| vec![1, 2]),
            batch: args.batch.unwrap_or(5_000),
        };
        anyhow::ensure!(params.reps >= 1, "--reps must be at least 1");
        anyhow::ensure!(params.concurrency >= 1, "--concurrency must be at least 1");
        anyhow::ensure!(params.items >= 1, "--items must be at least 1");
        anyhow::ensure!(
            !params.workers.is_empty() && params.workers.iter().all(|&n| (1..=16).contains(&n)),
            "--workers must list worker counts from 1 to 16"
        );
        anyhow::ensure!(params.rate > 0.0, "--rate must be positive");
        anyhow::ensure!(!params.duration.is_zero(), "--duration must be positive");
        Ok(params)
    }
}
