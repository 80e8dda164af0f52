//! Closed-loop load: `N` workers each run one operation after another until the time is up,
//! recording every operation's latency, the errors, and the CPU each component used.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::figures::Figures;
use super::machine::{CpuSample, CpuUse};
use super::stats::Latencies;

/// One client of a closed-loop load.
pub trait Worker: Send + 'static {
    /// Runs the worker's `n`-th operation (from 0).
    fn op(&mut self, n: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// What one closed-loop load did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the start until the last worker finished its last operation.
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    pub cpu: CpuUse,
}

impl Outcome {
    /// Successful operations per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Records `<prefix>.rate`, `.p50_ms`, `.p99_ms`, `.max_ms`, `.errors`, the CPU per
    /// operation of each component (`.cpu_us_gatehouse|postgres|nats`), `.busy_cores`,
    /// `.other_cores` and `.steal_cores`.
    pub fn record(&self, figures: &mut Figures, prefix: &str) -> anyhow::Result<()> {
        if let Some(e) = &self.first_error {
            eprintln!("bench: {prefix}: {} errors, the first: {e}", self.errors);
        }
        let latencies = Latencies::of(&self.latencies);
        figures.push_cpu(prefix, &self.cpu, self.ops)?;
        let mut figures_of = vec![("rate", self.rate()), ("errors", self.errors as f64)];
        if let Some(l) = latencies {
            figures_of.extend([("p50_ms", l.p50), ("p99_ms", l.p99), ("max_ms", l.max)]);
        }
        for (name, value) in figures_of {
            let name = format!("{prefix}.{name}");
            // A scenario declares only the figures it reports.
            if figures.declares(&name) {
                figures.push(&name, value)?;
            }
        }
        Ok(())
    }
}

/// Runs `workers` back to back for `duration`; returns what they did and the workers.
pub async fn closed_loop<W: Worker>(workers: Vec<W>, duration: Duration) -> (Outcome, Vec<W>) {
    let cpu_before = CpuSample::take();
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            tokio::spawn(async move {
                let mut done = Outcome::default();
                let mut n = 0;
                while Instant::now() < deadline {
                    let op_started = Instant::now();
                    match worker.op(n).await {
                        Ok(()) => {
                            done.ops += 1;
                            done.latencies.push(op_started.elapsed());
                        }
                        Err(e) => {
                            done.errors += 1;
                            done.first_error.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                    n += 1;
                }
                (done, worker)
            })
        })
        .collect();
    let mut total = Outcome::default();
    let mut workers = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok((done, worker)) => {
                total.ops += done.ops;
                total.errors += done.errors;
                total.latencies.extend(done.latencies);
                if total.first_error.is_none() {
                    total.first_error = done.first_error;
                }
                workers.push(worker);
            }
            Err(e) => {
                total.errors += 1;
                total.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    total.elapsed = started.elapsed();
    total.cpu = CpuSample::take().since(&cpu_before);
    (total, workers)
}
