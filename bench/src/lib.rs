//! `gatehouse bench <scenario>`: benchmarks of the running system measured side by side with
//! the raw Postgres / JetStream limits of the same machine, in the same run.
//!
//! A workspace crate of its own, so the product library carries no benchmark code. Its binary
//! `gatehouse-bench` is what `gatehouse bench ...` runs (git-style: the `gatehouse` binary finds
//! it beside itself); it uses only Gatehouse's public API.
//!
//! Each run gets an isolated system ([`env::System`]: its own database and namespace, the
//! roles in-process), repeats its measurement `--reps` times, prints a table and writes JSON
//! (`bench/results/<scenario>-<timestamp>.json`, or `--out`). How to run each scenario and the
//! latest results: `docs/benchmarks.md`.
//!
//! Layout:
//! - this file: the scenario registry ([`SCENARIOS`]) and one run's steps; `args`: the
//!   arguments ([`BenchArgs`]) and their defaults ([`Params`]).
//! - [`commands`], [`decide`], [`ingest`], [`activation`], [`delivery`], [`flags`], [`rebuild`]: the scenarios;
//!   [`catalog`]: the items `ingest` and `activation` work over, and their policy.
//! - [`env`]: the isolated system; [`load`], [`workload`], [`observe`]: driving and watching it.
//! - [`figures`], [`stats`], [`report`], [`machine`]: what is measured, summarized and written.
//!
//! A scenario is a [`Scenario`] in [`SCENARIOS`]: a name, its figures, whether it needs the
//! roles, and a runner.

pub mod activation;
mod args;
pub mod catalog;
pub mod commands;
pub mod decide;
pub mod delivery;
pub mod env;
pub mod figures;
pub mod flags;
pub mod ingest;
pub mod load;
pub mod machine;
pub mod observe;
pub mod rebuild;
pub mod report;
pub mod stats;
pub mod workload;

use std::path::PathBuf;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

pub use args::{BenchArgs, Params};
use env::System;
use figures::{Figures, Spec};
use gatehouse::settings::Settings;
use report::Report;

/// A scenario's entry point.
pub type Runner = for<'a> fn(&'a mut Bench) -> BoxFuture<'a, anyhow::Result<()>>;

/// One entry of the registry.
#[derive(Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub specs: &'static [Spec],
    /// Does it need the gateway, relay and projectors running?
    pub needs_roles: bool,
    pub runner: Runner,
}

/// Every scenario.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "commands",
        about: "concurrent commands through the gateway vs a raw Postgres append loop",
        specs: commands::SPECS,
        needs_roles: true,
        runner: commands::run,
    },
    Scenario {
        name: "decide",
        about: "concurrent publish decisions (each persisted) vs a raw Postgres insert loop",
        specs: decide::SPECS,
        needs_roles: true,
        runner: decide::run,
    },
    Scenario {
        name: "ingest",
        about: "catalog import through the stream vs COPY and raw JetStream publishes",
        specs: ingest::SPECS,
        needs_roles: true,
        runner: ingest::run,
    },
    Scenario {
        name: "activation",
        about: "Prepare over the catalog with 1 and 2 worker processes vs evaluation and COPY",
        specs: activation::SPECS,
        needs_roles: true,
        runner: activation::run,
    },
    Scenario {
        name: "delivery",
        about: "commit → stream / read model / subscriber latency at a steady rate",
        specs: delivery::SPECS,
        needs_roles: true,
        runner: delivery::run,
    },
    Scenario {
        name: "flags",
        about: "flag evaluations in-process (client crate vs Unleash's engine) and over NATS; rollout propagation",
        specs: flags::SPECS,
        needs_roles: true,
        runner: flags::run,
    },
    Scenario {
        name: "rebuild",
        about: "rebuilding the audit read model vs COPY of the same rows",
        specs: rebuild::SPECS,
        needs_roles: false,
        runner: rebuild::run,
    },
];

/// The scenario called `name`.
pub fn scenario(name: &str) -> anyhow::Result<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        anyhow::anyhow!(
            "unknown scenario `{name}`; the scenarios are: {}",
            names.join(", ")
        )
    })
}

/// What a scenario works with while it runs.
pub struct Bench {
    pub system: System,
    pub params: Params,
    pub figures: Figures,
    parameters: serde_json::Map<String, serde_json::Value>,
}

impl Bench {
    /// Adds one repetition's value of figure `name`.
    pub fn push(&mut self, name: &str, value: f64) -> anyhow::Result<()> {
        self.figures.push(name, value)
    }

    /// Records a parameter of the run for the JSON.
    pub fn parameter(&mut self, name: &str, value: impl serde::Serialize) {
        let value = serde_json::to_value(value).unwrap_or_default();
        self.parameters.insert(name.to_owned(), value);
    }
}

/// Runs `args.scenario` until done or Ctrl-C; prints the table and writes the JSON.
pub async fn run(settings: Settings, args: &BenchArgs) -> anyhow::Result<()> {
    if args.scenario == "list" {
        for s in SCENARIOS {
            println!("{:<12} {}", s.name, s.about);
        }
        return Ok(());
    }
    let interrupt = CancellationToken::new();
    let token = interrupt.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            token.cancel();
        }
    });
    let outcome = run_with(settings, args, interrupt).await;
    ctrl_c.abort();
    let (report, path) = outcome?;
    report.print();
    println!("results: {}", path.display());
    Ok(())
}

/// Runs a scenario until done or `interrupt`, then tears the system down; writes the JSON and
/// returns the report and where it was written.
pub async fn run_with(
    settings: Settings,
    args: &BenchArgs,
    interrupt: CancellationToken,
) -> anyhow::Result<(Report, PathBuf)> {
    let scenario = scenario(&args.scenario)?;
    let params = Params::from_args(args)?;
    let started_at = chrono::Utc::now();
    let system = System::create(&settings, scenario.name, args.keep).await?;
    eprintln!(
        "bench: {} in database {} and namespace {}",
        scenario.name, system.database, system.settings.namespace
    );
    let mut bench = Bench {
        system,
        params: params.clone(),
        figures: Figures::new(scenario.specs),
        parameters: serde_json::Map::new(),
    };
    let measured = tokio::select! {
        measured = measure(&mut bench, scenario) => measured,
        () = interrupt.cancelled() => Err(anyhow::anyhow!("interrupted")),
    };
    let Bench {
        system,
        figures,
        mut parameters,
        ..
    } = bench;
    system.stop().await;
    let versions = measured?;
    for (name, value) in [
        ("reps", serde_json::json!(params.reps)),
        (
            "duration_s",
            serde_json::json!(params.duration.as_secs_f64()),
        ),
        ("warmup_s", serde_json::json!(params.warmup.as_secs_f64())),
        ("concurrency", serde_json::json!(params.concurrency)),
    ] {
        parameters.entry(name).or_insert(value);
    }
    let report = Report {
        scenario: scenario.name,
        about: scenario.about,
        quick: params.quick,
        started_at,
        finished_at: chrono::Utc::now(),
        machine: machine::machine(),
        versions,
        parameters,
        figures: figures.summarize(),
    };
    let path = report.write(args.out.as_deref())?;
    Ok((report, path))
}

/// Starts the roles if needed, notes the versions, runs the scenario.
async fn measure(bench: &mut Bench, scenario: &Scenario) -> anyhow::Result<machine::Versions> {
    if scenario.needs_roles {
        bench.system.start_roles().await?;
    }
    let versions = machine::versions(&bench.system.nats, &bench.system.db).await?;
    (scenario.runner)(bench).await?;
    Ok(versions)
}
