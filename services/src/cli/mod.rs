//! The `gatehouse` command line: roles (`up`, `gateway`, `relay`, `projector`, `migrate`) and
//! user commands that talk to a running Gatehouse over NATS like any other client.
//!
//! Layout:
//! - this file: the argument grammar and dispatch.
//! - [`policy`], [`run`], [`catalog`], [`audit`], [`access`]: the user commands.
//! - [`output`]: tables and `--json`.

pub mod access;
pub mod audit;
pub mod catalog;
pub mod category;
pub mod flag;
pub mod output;
pub mod policy;
pub mod quarantine;
pub mod run;

use clap::{Parser, Subcommand};
use gatehouse_events::envelope::CommandAccepted;

use crate::client::Client;

/// Gatehouse: safe, auditable policy change.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about)]
pub struct Cli {
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Who you act as (default: your NATS user, `NATS_USER`). Gatehouse records the NATS user
    /// you authenticated as and refuses another name (`actor_mismatch`), unless that user is a
    /// delegate (recorded as `delegated_by`) or Gatehouse's own.
    #[arg(long, global = true, env = "GATEHOUSE_ACTOR")]
    pub actor: Option<String>,
    /// The idempotency key of the command (default: a new random id). Reuse it to retry safely.
    #[arg(long, global = true)]
    pub command_id: Option<String>,
    /// Return as soon as a command is recorded, without waiting (up to 5 s) until queries
    /// show its effect.
    #[arg(long, global = true)]
    pub no_wait: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// `gatehouse doctor`'s options (`docs/runbook.md`, *Smoke test*).
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Skip the synthetic journey (it writes a scratch policy and three scratch catalog items).
    #[arg(long)]
    pub no_journey: bool,
    /// How long the journey waits for each eventual step (items in the catalog, the run).
    #[arg(long, default_value_t = 60)]
    pub journey_timeout_s: u64,
    /// A consumer whose oldest unacknowledged message is older than this fails.
    #[arg(long, default_value_t = 300)]
    pub max_pending_age_s: u64,
    /// A consumer with more redelivered unacknowledged messages than this fails.
    #[arg(long, default_value_t = 10)]
    pub max_redeliveries: u64,
    /// More dead letters than this for one consumer fails.
    #[arg(long, default_value_t = 0)]
    pub max_dead_letters: u64,
    /// The relay failing to publish an event for longer than this fails.
    #[arg(long, default_value_t = 60)]
    pub max_relay_lag_s: u64,
    /// A user of the CLIENTS account that must not read the event streams.
    #[arg(long, env = "GATEHOUSE_DOCTOR_CLIENT_USER")]
    pub client_user: Option<String>,
    #[arg(long, env = "GATEHOUSE_DOCTOR_CLIENT_PASSWORD", hide_env_values = true)]
    pub client_password: Option<String>,
}

impl DoctorArgs {
    /// The doctor's options, the roles' settings read from the environment.
    pub fn options(
        &self,
        actor: String,
    ) -> Result<crate::ops::doctor::Options, crate::settings::SettingsError> {
        use std::time::Duration;
        Ok(crate::ops::doctor::Options {
            roles: crate::ops::expected::RoleSettings::from_env()?,
            thresholds: crate::ops::doctor::Thresholds {
                oldest_pending: Duration::from_secs(self.max_pending_age_s),
                redeliveries: self.max_redeliveries,
                dead_letters: self.max_dead_letters,
                relay_lag: Duration::from_secs(self.max_relay_lag_s),
            },
            journey_actor: (!self.no_journey).then_some(actor),
            journey_deadline: Duration::from_secs(self.journey_timeout_s),
            client_user: self.client_user.clone().zip(self.client_password.clone()),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every role in one process (migrations, gateway, relay, projectors) until Ctrl-C.
    Up,
    /// Run the command gateway only (start more for scale-out: they share a queue group).
    Gateway,
    /// Run the outbox relay only (one is active; others stand by).
    Relay,
    /// Run an evaluation worker (start more to evaluate runs faster).
    Worker,
    /// Run the `policy.promoted` notifier only.
    Notifier,
    /// Run the releaser only: releases quarantine cases a newly promoted version allows.
    Releaser,
    /// Run the HTTP API only (GATEHOUSE_HTTP_ADDR, default 127.0.0.1:8080).
    Http,
    /// Run the flag monitor only (outcomes per window, auto-rollback).
    FlagMonitor,
    /// Run the search indexer only: keeps the search index of publish-ready items
    /// (GATEHOUSE_INDEXER_MAX_DELIVER, GATEHOUSE_INDEXER_RETRY_MS, GATEHOUSE_INDEXER_MAX_RETRY_MS).
    Indexer {
        /// Instead of running: index every artifact again from the event store (repairs what
        /// was dead-lettered), then exit.
        #[arg(long)]
        reindex: bool,
        /// With --reindex: empty the index first.
        #[arg(long, requires = "reindex")]
        from_scratch: bool,
    },
    /// Run the categoriser only (unit categories from the catalog stream and rules activations).
    Categoriser,
    /// Run the projectors only (every read model, or the one named).
    Projector {
        /// A read model name (`audit`, `policies`); all when omitted.
        #[arg(long)]
        model: Option<String>,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Versioned policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Evaluation runs: prepare, watch, diff, cancel, resume, promote.
    #[command(subcommand)]
    Run(run::RunCommand),
    /// The catalog: import items, look them up, read a policy's public catalog, search.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Roles: grant, revoke, list.
    #[command(subcommand)]
    Access(access::AccessCommand),
    /// Repos bound to a policy: bind, show.
    #[command(subcommand)]
    Repo(quarantine::RepoCommand),
    /// Ask for a publish or promote decision on an item of a repo.
    Decide(quarantine::DecideArgs),
    /// Quarantine cases: list, show, release, reject.
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
    /// Artifacts: may one be read?
    #[command(subcommand)]
    Artifact(quarantine::ArtifactCommand),
    /// Flags and progressive rollouts: create, set-rollout, stop, resume, evaluate, history, list.
    #[command(subcommand)]
    Flag(flag::FlagCommand),
    /// Unit categories: seed, draft and activate the rules; get, list, compute.
    #[command(subcommand)]
    Category(category::CategoryCommand),
    /// Global safe mode: every flag answers its off value while on.
    SafeMode {
        #[arg(value_enum)]
        state: flag::OnOff,
        #[arg(long)]
        reason: String,
    },
    /// Check a running system: migrations, streams and consumers as configured, permissions,
    /// queue health, and a synthetic journey (create, draft, import, prepare, promote, read,
    /// clean up). Prints every check with ok/FAIL; exits 1 when any failed.
    Doctor(DoctorArgs),
    /// Read-model maintenance.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Benchmarks, measured side by side with the raw Postgres / JetStream limits
    /// (runs `gatehouse-bench`, found beside this binary; `gatehouse bench --help` lists its options).
    #[command(disable_help_flag = true)]
    Bench {
        /// The scenario and its options, passed to `gatehouse-bench`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Rebuild a read model from the event store into a fresh table, then swap it in.
    Rebuild {
        /// The read model (`audit`, `policies`).
        name: String,
    },
    /// List the read models.
    List,
}

impl Cli {
    /// The actor for commands: `--actor`, else `$GATEHOUSE_ACTOR`, else the NATS user
    /// (`$NATS_USER`, whom the gateway records), else `$USER`.
    pub fn actor(&self) -> String {
        self.actor
            .clone()
            .filter(|a| !a.is_empty())
            .or_else(|| std::env::var("NATS_USER").ok().filter(|u| !u.is_empty()))
            .or_else(|| std::env::var("USER").ok())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "cli".to_owned())
    }

    pub fn sender(&self) -> crate::client::Sender {
        crate::client::Sender {
            actor: self.actor(),
            command_id: self
                .command_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            correlation_id: None,
        }
    }
}

/// Prints a command's outcome once queries show its effect (read-your-writes: the next
/// `gatehouse` command sees it), unless `--no-wait`. The command is recorded either way: a
/// read model still behind after the wait is a warning on stderr, not a failure.
pub async fn accepted(cli: &Cli, client: &Client, done: &CommandAccepted, message: &str) {
    if !cli.no_wait {
        if let Err(e) = client.wait_for(done).await {
            eprintln!("warning: recorded, but queries may not show it yet: {e}");
        }
    }
    if cli.json {
        return output::json(done);
    }
    let again = if done.duplicate {
        " (already done: this command id was seen before)"
    } else {
        ""
    };
    crate::outln!(
        "{message}{again} [sequence {}, command {}]",
        done.sequence,
        done.command_id
    );
}
