//! `gatehouse run ...`: Prepare a version over the catalog, watch it, diff it, cancel/resume it,
//! and Promote it.

use std::time::Duration;

use clap::Subcommand;
use gatehouse_events::run::{
    DiffRun, GetRun, ListRuns, PrepareRun, PromoteRun, RunDiff, RunRef, RunStatus, RunView,
};
use indicatif::{ProgressBar, ProgressStyle};

use super::output::{self, opt, table, time};
use super::Cli;
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Evaluate a policy version over every ready catalog item (a frozen snapshot).
    Prepare {
        policy_id: String,
        version: u32,
        #[arg(long)]
        batch_size: Option<u32>,
        /// Coverage needed to be ready to promote (default 1.0).
        #[arg(long)]
        coverage_threshold: Option<f64>,
        /// Errors allowed to be ready to promote (default 0).
        #[arg(long)]
        max_errors: Option<u64>,
    },
    /// Show a run's status, counters and blocking reasons.
    Show { run_id: String },
    /// A live progress bar with counters until the run ends.
    Watch { run_id: String },
    /// Runs, newest first.
    List {
        #[arg(long)]
        policy: Option<String>,
        /// running, success, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        offset: Option<u32>,
    },
    /// Regressions and improvements against the active version.
    Diff { run_id: String },
    /// Stop a running run; workers stop before their next batch.
    Cancel { run_id: String },
    /// Continue a failed or cancelled run from its cursor.
    Resume { run_id: String },
    /// Make the run's version active (only from success, and when the thresholds hold).
    Promote {
        run_id: String,
        #[arg(long)]
        coverage_threshold: Option<f64>,
        #[arg(long)]
        max_errors: Option<u64>,
    },
}

pub async fn run(cli: &Cli, cmd: &RunCommand, client: &Client) -> anyhow::Result<()> {
    match cmd {
        RunCommand::Prepare {
            policy_id,
            version,
            batch_size,
            coverage_threshold,
            max_errors,
        } => {
            let body = PrepareRun {
                policy_id: policy_id.clone(),
                version: *version,
                batch_size: *batch_size,
                coverage_threshold: *coverage_threshold,
                max_errors: *max_errors,
            };
            let done = client
                .command("policy", "prepare", &cli.sender(), body)
                .await?;
            let run_id = done
                .detail
                .get("run_id")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_owned();
            super::accepted(
                cli,
                client,
                &done,
                &format!("run {run_id} prepared: policy {policy_id} version {version}"),
            )
            .await;
        }
        RunCommand::Show { run_id } => {
            let view = get(client, run_id).await?;
            if cli.json {
                output::json(&view);
                return Ok(());
            }
            print_run(&view);
        }
        RunCommand::Watch { run_id } => watch(cli, client, run_id).await?,
        RunCommand::List {
            policy,
            status,
            limit,
            offset,
        } => {
            let status = match status {
                Some(s) => Some(
                    RunStatus::parse(s).ok_or_else(|| anyhow::anyhow!("unknown status `{s}`"))?,
                ),
                None => None,
            };
            let q = ListRuns {
                policy_id: policy.clone(),
                status,
                limit: *limit,
                offset: *offset,
            };
            let runs: Vec<RunView> = client.query("run", "list", &q).await?;
            if cli.json {
                output::json(&runs);
                return Ok(());
            }
            let mut t = table(&[
                "RUN",
                "VERSION",
                "STATUS",
                "PROCESSED",
                "COVERAGE",
                "ERRORS",
                "READY",
                "PREPARED",
            ]);
            for r in &runs {
                t.add_row(vec![
                    r.run_id.clone(),
                    r.version.to_string(),
                    r.status.as_str().to_owned(),
                    format!(
                        "{}/{}",
                        r.counters.processed, r.counters.total_ready_snapshot
                    ),
                    format!("{:.2}%", r.coverage * 100.0),
                    r.counters.errors.to_string(),
                    if r.ready_to_promote {
                        "yes".into()
                    } else {
                        String::new()
                    },
                    time(&r.prepared_at),
                ]);
            }
            crate::outln!("{t}");
        }
        RunCommand::Diff { run_id } => {
            let diff: RunDiff = client
                .query(
                    "run",
                    "diff",
                    &DiffRun {
                        run_id: run_id.clone(),
                    },
                )
                .await?;
            if cli.json {
                output::json(&diff);
                return Ok(());
            }
            print_diff(&diff);
        }
        RunCommand::Cancel { run_id } => {
            let done = client
                .command(
                    "policy",
                    "cancel_run",
                    &cli.sender(),
                    RunRef {
                        run_id: run_id.clone(),
                    },
                )
                .await?;
            super::accepted(cli, client, &done, &format!("run {run_id} cancelled")).await;
        }
        RunCommand::Resume { run_id } => {
            let done = client
                .command(
                    "policy",
                    "resume_run",
                    &cli.sender(),
                    RunRef {
                        run_id: run_id.clone(),
                    },
                )
                .await?;
            super::accepted(cli, client, &done, &format!("run {run_id} resumed")).await;
        }
        RunCommand::Promote {
            run_id,
            coverage_threshold,
            max_errors,
        } => {
            let body = PromoteRun {
                run_id: run_id.clone(),
                coverage_threshold: *coverage_threshold,
                max_errors: *max_errors,
            };
            let done = client
                .command("policy", "promote", &cli.sender(), body)
                .await?;
            let version = done
                .detail
                .get("active_version")
                .map_or_else(|| "?".into(), |v| v.to_string());
            super::accepted(
                cli,
                client,
                &done,
                &format!("run {run_id} promoted: version {version} is active"),
            )
            .await;
        }
    }
    Ok(())
}

async fn get(client: &Client, run_id: &str) -> anyhow::Result<RunView> {
    Ok(client
        .query(
            "run",
            "get",
            &GetRun {
                run_id: run_id.to_owned(),
            },
        )
        .await?)
}

/// Polls the run every 500 ms and draws its progress until it ends.
async fn watch(cli: &Cli, client: &Client, run_id: &str) -> anyhow::Result<()> {
    let first = get(client, run_id).await?;
    let bar = ProgressBar::new(first.counters.total_ready_snapshot.max(1));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} items ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut view = first;
    loop {
        let c = &view.counters;
        bar.set_position(c.processed);
        bar.set_message(format!(
            "allow {} deny {} quarantine {} pending {} errors {}",
            c.eligible, c.ineligible, c.quarantined, c.pending, c.errors
        ));
        if view.status != RunStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        view = get(client, run_id).await?;
    }
    bar.finish();
    if cli.json {
        output::json(&view);
    } else {
        print_run(&view);
    }
    Ok(())
}

fn print_run(r: &RunView) {
    let c = &r.counters;
    crate::outln!(
        "run {} — policy {} version {} — {}",
        r.run_id,
        r.policy_id,
        r.version,
        r.status.as_str()
    );
    crate::outln!(
        "snapshot:  {} items ready at {}",
        c.total_ready_snapshot,
        time(&r.snapshot_cutoff)
    );
    crate::outln!(
        "processed: {} ({:.2}% coverage), batches {}/{}, cursor {}",
        c.processed,
        r.coverage * 100.0,
        r.batches_done,
        r.batches,
        r.cursor
    );
    crate::outln!(
        "outcomes:  {} eligible, {} ineligible, {} quarantined, {} pending, {} errors",
        c.eligible,
        c.ineligible,
        c.quarantined,
        c.pending,
        c.errors
    );
    crate::outln!(
        "promote:   {}",
        if r.ready_to_promote {
            "ready".to_owned()
        } else {
            "not ready".to_owned()
        }
    );
    for reason in &r.blocking_reasons {
        crate::outln!("  - {reason}");
    }
    if let Some(f) = &r.failure {
        crate::outln!("failure:   {f}");
    }
    for s in &r.error_samples {
        crate::outln!("  error {}: {}", s.item_id, s.message);
    }
    crate::outln!(
        "prepared:  {} by {}; ended {}; promoted {}",
        time(&r.prepared_at),
        r.prepared_by,
        opt(r.ended_at.as_ref().map(time)),
        r.promoted
    );
}

fn print_diff(d: &RunDiff) {
    crate::outln!(
        "run {} (version {}) against active version {}",
        d.run_id,
        d.version,
        opt(d.active_version)
    );
    crate::outln!(
        "regressions {}  improvements {}  unchanged {}  other changes {}  newly evaluated {}",
        d.regressions,
        d.improvements,
        d.unchanged,
        d.other_changes,
        d.newly_evaluated
    );
    for (title, items) in [
        ("top regressions", &d.top_regressions),
        ("top improvements", &d.top_improvements),
    ] {
        if items.is_empty() {
            continue;
        }
        let mut t = table(&["ITEM", "SCORE", "BEFORE", "AFTER", "RULE", "REASON"]);
        for i in items {
            t.add_row(vec![
                i.item_id.clone(),
                format!("{:.3}", i.score),
                i.before.clone(),
                i.after.clone(),
                opt(i.rule_id.clone()),
                i.reason.clone(),
            ]);
        }
        crate::outln!("{title}:\n{t}");
    }
}
