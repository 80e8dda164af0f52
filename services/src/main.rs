//! The `gatehouse` binary: reads settings, sets up tracing, runs the chosen command.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use gatehouse::cli::{Cli, Command, ProjectionsCommand};
use gatehouse::client::{Client, ClientError};
use gatehouse::settings::Settings;
use gatehouse::{broker, cli, db, gateway, relay, roles};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(is_role(&cli.command));
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::from_env().context("cannot read settings")?;
    let shutdown = CancellationToken::new();
    if is_role(&cli.command) {
        let token = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
            token.cancel();
        });
        #[cfg(unix)]
        {
            let token = shutdown.clone();
            tokio::spawn(async move {
                if let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                {
                    term.recv().await;
                    token.cancel();
                }
            });
        }
    }
    match &cli.command {
        Command::Up => roles::up(settings, shutdown).await?,
        Command::Gateway => gateway::run(settings, shutdown).await?,
        Command::Relay => relay::run(settings, shutdown).await?,
        Command::Worker => gatehouse::worker::run(settings, shutdown).await?,
        Command::Notifier => gatehouse::notifier::run(settings, shutdown).await?,
        Command::Releaser => gatehouse::quarantine::releaser::run(settings, shutdown).await?,
        Command::FlagMonitor => gatehouse::flag::monitor::run(settings, shutdown).await?,
        Command::Http => gatehouse::http::run(settings, shutdown).await?,
        Command::Indexer { reindex: false, .. } => {
            gatehouse::catalog::indexer::run(settings, shutdown).await?
        }
        Command::Indexer {
            reindex: true,
            from_scratch,
        } => {
            let pg = db::pool(&settings.database_url, 2)?;
            let done = gatehouse::catalog::indexer::reindex(&pg, *from_scratch)
                .await
                .map_err(|e| anyhow::anyhow!("reindex: {e}"))?;
            gatehouse::outln!(
                "reindexed {} artifacts: {} publish-ready items in the index",
                done.artifacts,
                done.ready
            );
        }
        Command::Categoriser => gatehouse::category::categoriser::run(settings, shutdown).await?,
        Command::Projector { model } => roles::projector(settings, model.clone(), shutdown).await?,
        Command::Migrate => db::migrate(&settings.database_url).await?,
        Command::Projections(ProjectionsCommand::List) => {
            for model in gatehouse_projections::read_models() {
                gatehouse::outln!("{}", model.name());
            }
        }
        Command::Projections(ProjectionsCommand::Rebuild { name }) => {
            let model = gatehouse_projections::read_model(name)
                .with_context(|| format!("unknown read model `{name}`"))?;
            let pg = db::pool(&settings.database_url, 2)?;
            let report = gatehouse_projections::rebuild(model.as_ref(), &pg, 5_000).await?;
            gatehouse::outln!("{report}");
        }
        Command::Bench { args } => return bench(args),
        Command::Doctor(args) => {
            let options = args.options(cli.actor())?;
            let report = gatehouse::ops::doctor::run(&settings, &options).await;
            if cli.json {
                gatehouse::outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                gatehouse::outln!("{}", report.text().trim_end());
            }
            if !report.ok {
                std::process::exit(1);
            }
        }
        Command::Policy(cmd) => cli::policy::run(&cli, cmd, &client(&settings).await?).await?,
        Command::Run(cmd) => cli::run::run(&cli, cmd, &client(&settings).await?).await?,
        Command::Catalog(cmd) => cli::catalog::run(&cli, cmd, &client(&settings).await?).await?,
        Command::Audit(cmd) => cli::audit::run(&cli, cmd, &client(&settings).await?).await?,
        Command::Access(cmd) => cli::access::run(&cli, cmd, &client(&settings).await?).await?,
        Command::Repo(cmd) => cli::quarantine::repo(&cli, cmd, &client(&settings).await?).await?,
        Command::Decide(args) => {
            cli::quarantine::decide(&cli, args, &client(&settings).await?).await?
        }
        Command::Quarantine(cmd) => {
            cli::quarantine::quarantine(&cli, cmd, &client(&settings).await?).await?
        }
        Command::Artifact(cmd) => {
            cli::quarantine::artifact(&cli, cmd, &client(&settings).await?).await?
        }
        Command::Flag(cmd) => cli::flag::run(&cli, cmd, &client(&settings).await?).await?,
        Command::Category(cmd) => cli::category::run(&cli, cmd, &client(&settings).await?).await?,
        Command::SafeMode { state, reason } => {
            cli::flag::safe_mode(&cli, *state, reason, &client(&settings).await?).await?
        }
    }
    Ok(())
}

/// Runs `gatehouse-bench` with `args`, as git runs its `git-<name>` commands: the one beside
/// this binary, else the one on `PATH`. Its exit status becomes ours.
fn bench(args: &[std::ffi::OsString]) -> anyhow::Result<()> {
    const BENCH: &str = "gatehouse-bench";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|me| me.parent().map(|dir| dir.join(BENCH)))
        .filter(|path| path.is_file());
    let program = beside.unwrap_or_else(|| BENCH.into());
    let status = std::process::Command::new(&program)
        .args(args)
        .status()
        .with_context(|| {
            format!(
                "cannot run {}: build it with `cargo build --release -p gatehouse-bench`",
                program.display()
            )
        })?;
    std::process::exit(status.code().unwrap_or(2));
}

async fn client(settings: &Settings) -> anyhow::Result<Client> {
    let nats = broker::connect(settings, "cli").await?;
    Ok(Client::new(
        nats,
        settings.namespace.clone(),
        Duration::from_secs(15),
    ))
}

fn is_role(command: &Command) -> bool {
    matches!(
        command,
        Command::Up
            | Command::Gateway
            | Command::Relay
            | Command::Worker
            | Command::Notifier
            | Command::Releaser
            | Command::FlagMonitor
            | Command::Http
            | Command::Indexer { .. }
            | Command::Categoriser
            | Command::Projector { .. }
            | Command::Migrate
    )
}

/// Prints an error for a person and picks the exit code: 1 rejected, 3 unreachable, 2 other.
fn report(e: &anyhow::Error) -> ExitCode {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Rejected(r)) => {
            eprintln!("error [{}]: {}", r.code.as_str(), r.message);
            if let Some(field) = &r.field {
                eprintln!("  field: {field}");
            }
            for d in &r.details {
                eprintln!(
                    "  - {}",
                    d.get("message")
                        .and_then(|m| m.as_str())
                        .map_or_else(|| d.to_string(), str::to_owned)
                );
            }
            ExitCode::from(1)
        }
        Some(other @ (ClientError::NoResponders(_) | ClientError::TimedOut(_))) => {
            eprintln!("error: {other}");
            ExitCode::from(3)
        }
        _ => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info` for roles, `warn` otherwise), as
/// text, or as one JSON object per line with `GATEHOUSE_LOG_FORMAT=json`.
fn init_tracing(role: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if role { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("GATEHOUSE_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().with_current_span(true).init(),
        Ok("text") | Ok("") | Err(_) => builder.init(),
        Ok(other) => {
            builder.init();
            tracing::warn!(
                format = other,
                "GATEHOUSE_LOG_FORMAT is `json` or `text`: logging as text"
            );
        }
    }
}
