//! `gatehouse audit ...`: the audit log, and replays of one aggregate from the event store.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use gatehouse_events::audit::{
    AuditEntry, AuditLogQuery, Denial, DenialsQuery, Replay, ReplayQuery,
};

use super::output::{self, clip, table, time};
use super::Cli;
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Audit rows, oldest first, filtered; with `--denied`, the refused requests instead.
    Log {
        /// The requests refused `forbidden` (filters: `--actor` for the user, `--after`,
        /// `--limit`).
        #[arg(long)]
        denied: bool,
        /// Aggregate type, e.g. `policy`.
        #[arg(long)]
        aggregate: Option<String>,
        /// Aggregate id.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        /// Event type, e.g. `PolicyVersionDrafted`.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// RFC 3339 time: only events recorded at or after it.
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// RFC 3339 time: only events recorded before it.
        #[arg(long)]
        until: Option<DateTime<Utc>>,
        /// Only events after this position (paging).
        #[arg(long)]
        after: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// An aggregate's full history from the event store, as JSON lines.
    Replay {
        aggregate: String,
        id: String,
        /// RFC 3339 time: print only the history up to it, then the state it produced.
        #[arg(long)]
        as_of: Option<DateTime<Utc>>,
    },
}

pub async fn run(cli: &Cli, cmd: &AuditCommand, client: &Client) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Log {
            denied: true,
            actor,
            after,
            limit,
            ..
        } => denials(cli, client, actor, after, limit).await?,
        AuditCommand::Log {
            denied: false,
            aggregate,
            id,
            actor,
            event_type,
            since,
            until,
            after,
            limit,
        } => {
            let q = AuditLogQuery {
                aggregate: aggregate.clone(),
                aggregate_id: id.clone(),
                actor: actor.clone(),
                event_type: event_type.clone(),
                since: *since,
                until: *until,
                after_position: *after,
                limit: Some(*limit),
            };
            let rows: Vec<AuditEntry> = client.query("audit", "log", &q).await?;
            if cli.json {
                output::json(&rows);
                return Ok(());
            }
            let mut t = table(&[
                "POS",
                "TIME",
                "ACTOR",
                "AGGREGATE",
                "SEQ",
                "EVENT",
                "COMMAND",
                "CORRELATION",
            ]);
            for r in &rows {
                t.add_row(vec![
                    r.position.to_string(),
                    time(&r.recorded_at),
                    match &r.delegated_by {
                        Some(delegate) => format!("{} (via {delegate})", r.actor),
                        None => r.actor.clone(),
                    },
                    format!("{}/{}", r.aggregate, r.aggregate_id),
                    r.sequence.to_string(),
                    r.event_type.clone(),
                    clip(&r.command_id, 20),
                    clip(&r.correlation_id, 20),
                ]);
            }
            crate::outln!("{t}");
        }
        AuditCommand::Replay {
            aggregate,
            id,
            as_of,
        } => {
            let q = ReplayQuery {
                aggregate: aggregate.clone(),
                aggregate_id: id.clone(),
                as_of: *as_of,
            };
            let replay: Replay = client.query("audit", "replay", &q).await?;
            output::json_lines(&replay.events);
            if as_of.is_some() {
                let state = serde_json::json!({"as_of": replay.as_of, "state": replay.state});
                crate::outln!("{}", serde_json::to_string(&state)?);
            }
        }
    }
    Ok(())
}

/// `audit log --denied`: the refused requests as a table.
async fn denials(
    cli: &Cli,
    client: &Client,
    user: &Option<String>,
    after: &Option<i64>,
    limit: &u32,
) -> anyhow::Result<()> {
    let q = DenialsQuery {
        user: user.clone(),
        operation: None,
        after_position: *after,
        limit: Some(*limit),
    };
    let rows: Vec<Denial> = client.query("audit", "denials", &q).await?;
    if cli.json {
        output::json(&rows);
        return Ok(());
    }
    let mut t = table(&[
        "POS",
        "TIME",
        "USER",
        "ACCOUNT",
        "OPERATION",
        "MISSING ROLE",
    ]);
    for r in &rows {
        t.add_row(vec![
            r.position.to_string(),
            time(&r.denied_at),
            match &r.delegated_by {
                Some(delegate) => format!("{} (via {delegate})", r.user),
                None => r.user.clone(),
            },
            r.account.clone(),
            r.operation.clone(),
            r.missing_role.clone(),
        ]);
    }
    crate::outln!("{t}");
    Ok(())
}
