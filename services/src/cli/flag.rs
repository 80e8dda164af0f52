//! `gatehouse flag ...` and `gatehouse safe-mode on|off`: flags and progressive rollouts.

use clap::{Subcommand, ValueEnum};
use gatehouse_events::envelope::CommandAccepted;
use gatehouse_events::flag::{
    AutoRollback, Bucketing, CreateFlag, EvaluateFlag, Evaluation, FlagHistory, FlagState,
    FlagStats, FlagType, ListFlags, OutcomeWindow, RolloutChange, SetRollout, SetSafeMode,
    StopFlag, Strategy,
};

use super::output::{self, clip, opt, table, time};
use super::{accepted, Cli};
use crate::client::Client;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TypeArg {
    Boolean,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StrategyArg {
    Percentage,
    Whitelist,
    Category,
    Rule,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BucketingArg {
    Default,
    Unleash,
}

#[derive(Debug, Subcommand)]
pub enum FlagCommand {
    /// Create a flag at 0%.
    Create {
        flag: String,
        #[arg(long, value_enum, default_value = "boolean")]
        r#type: TypeArg,
        #[arg(long, default_value = "")]
        description: String,
        /// JSON flags: the JSON Schema of the values (JSON text).
        #[arg(long)]
        schema: Option<String>,
        /// The on value (JSON text; boolean flags: `true`).
        #[arg(long)]
        on: Option<String>,
        /// The safe off value (JSON text; boolean flags: `false`).
        #[arg(long)]
        off: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Set a flag's rollout (the whole rollout: fields not given take their defaults).
    SetRollout {
        flag: String,
        /// 0–100, at most two decimals.
        #[arg(long)]
        percentage: f64,
        #[arg(long, value_enum, default_value = "percentage")]
        strategy: StrategyArg,
        /// Units always on (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        include: Vec<String>,
        /// Units always off.
        #[arg(long, value_delimiter = ',')]
        exclude: Vec<String>,
        /// The category strategy's categories (test, small, medium, large, enterprise).
        #[arg(long, value_delimiter = ',')]
        categories: Vec<String>,
        /// The rule strategy's CEL condition over the context.
        #[arg(long)]
        rule: Option<String>,
        /// The context attributes the rule reads, as JSON (`{"plan": "string"}`).
        #[arg(long)]
        rule_attributes: Option<String>,
        /// The context attribute that identifies a unit (default: the request's unit).
        #[arg(long)]
        stickiness: Option<String>,
        #[arg(long)]
        group: Option<String>,
        #[arg(long, value_enum, default_value = "default")]
        bucketing: BucketingArg,
        /// Auto-rollback: error rate (0–1) above which the rollout goes to 0%.
        #[arg(long, requires_all = ["min_volume", "window_secs"])]
        max_error_rate: Option<f64>,
        #[arg(long)]
        min_volume: Option<u64>,
        #[arg(long)]
        window_secs: Option<u64>,
        #[arg(long)]
        reason: String,
    },
    /// Emergency stop: the flag answers its off value at once.
    Stop {
        flag: String,
        #[arg(long)]
        reason: String,
    },
    /// Lift an emergency stop.
    Resume {
        flag: String,
        #[arg(long)]
        reason: String,
    },
    /// Evaluate a flag for a unit (remotely, as `flag.evaluate`).
    Evaluate {
        flag: String,
        #[arg(long)]
        unit: Option<String>,
        /// The evaluation context, JSON object text.
        #[arg(long)]
        context: Option<String>,
    },
    /// A flag's rollout history, newest first (`*`: safe-mode changes).
    History {
        flag: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// A flag's outcome windows: counts, error rate, average duration (newest first).
    Stats {
        flag: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Flags by key.
    List {
        #[arg(long)]
        archived: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

fn json_arg(name: &str, text: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| anyhow::anyhow!("--{name} is not JSON: {e}"))
}

fn opt_json(name: &str, text: &Option<String>) -> anyhow::Result<Option<serde_json::Value>> {
    text.as_deref().map(|t| json_arg(name, t)).transpose()
}

async fn command<C: serde::Serialize>(
    cli: &Cli,
    client: &Client,
    aggregate: &str,
    name: &str,
    c: C,
    message: &str,
) -> anyhow::Result<()> {
    let done: CommandAccepted = client.command(aggregate, name, &cli.sender(), c).await?;
    accepted(cli, client, &done, message).await;
    Ok(())
}

pub async fn safe_mode(
    cli: &Cli,
    state: OnOff,
    reason: &str,
    client: &Client,
) -> anyhow::Result<()> {
    let on = matches!(state, OnOff::On);
    let c = SetSafeMode {
        on,
        reason: reason.to_owned(),
    };
    let message = if on {
        "safe mode is on: every flag answers its off value"
    } else {
        "safe mode is off"
    };
    command(cli, client, "global", "safe_mode", c, message).await
}

pub async fn run(cli: &Cli, cmd: &FlagCommand, client: &Client) -> anyhow::Result<()> {
    match cmd {
        FlagCommand::Create {
            flag,
            r#type,
            description,
            schema,
            on,
            off,
            reason,
        } => {
            let c = CreateFlag {
                flag: flag.clone(),
                description: description.clone(),
                flag_type: match r#type {
                    TypeArg::Boolean => FlagType::Boolean,
                    TypeArg::Json => FlagType::Json,
                },
                schema: opt_json("schema", schema)?,
                on_value: opt_json("on", on)?,
                off_value: opt_json("off", off)?,
                reason: reason.clone(),
            };
            command(
                cli,
                client,
                "flag",
                "create",
                c,
                &format!("created flag {flag} at 0%"),
            )
            .await
        }
        FlagCommand::SetRollout {
            flag,
            percentage,
            strategy,
            include,
            exclude,
            categories,
            rule,
            rule_attributes,
            stickiness,
            group,
            bucketing,
            max_error_rate,
            min_volume,
            window_secs,
            reason,
        } => {
            let c = SetRollout {
                flag: flag.clone(),
                percentage: *percentage,
                strategy: match strategy {
                    StrategyArg::Percentage => Strategy::Percentage,
                    StrategyArg::Whitelist => Strategy::Whitelist,
                    StrategyArg::Category => Strategy::Category,
                    StrategyArg::Rule => Strategy::Rule,
                },
                include: include.clone(),
                exclude: exclude.clone(),
                categories: categories.clone(),
                rule: rule.clone(),
                rule_attributes: match rule_attributes {
                    Some(t) => serde_json::from_str(t)
                        .map_err(|e| anyhow::anyhow!("--rule-attributes: {e}"))?,
                    None => Default::default(),
                },
                stickiness: stickiness.clone(),
                group: group.clone(),
                bucketing: match bucketing {
                    BucketingArg::Default => Bucketing::Default,
                    BucketingArg::Unleash => Bucketing::Unleash,
                },
                auto_rollback: max_error_rate.map(|max_error_rate| AutoRollback {
                    max_error_rate,
                    min_volume: min_volume.unwrap_or(1),
                    window_secs: window_secs.unwrap_or(60),
                }),
                reason: reason.clone(),
            };
            command(
                cli,
                client,
                "flag",
                "set_rollout",
                c,
                &format!("flag {flag} rolled out to {percentage}%"),
            )
            .await
        }
        FlagCommand::Stop { flag, reason } => {
            let c = StopFlag {
                flag: flag.clone(),
                reason: reason.clone(),
            };
            command(
                cli,
                client,
                "flag",
                "emergency_stop",
                c,
                &format!("flag {flag} stopped: it answers its off value"),
            )
            .await
        }
        FlagCommand::Resume { flag, reason } => {
            let c = StopFlag {
                flag: flag.clone(),
                reason: reason.clone(),
            };
            command(
                cli,
                client,
                "flag",
                "resume",
                c,
                &format!("flag {flag} resumed"),
            )
            .await
        }
        FlagCommand::Evaluate {
            flag,
            unit,
            context,
        } => {
            let context = match context {
                Some(t) => match json_arg("context", t)? {
                    serde_json::Value::Object(m) => m,
                    _ => anyhow::bail!("--context is a JSON object"),
                },
                None => Default::default(),
            };
            let q = EvaluateFlag {
                flag: flag.clone(),
                unit: unit.clone(),
                context,
            };
            let e: Evaluation = client.query("flag", "evaluate", &q).await?;
            if cli.json {
                output::json(&e);
            } else {
                crate::outln!(
                    "{}: {} = {} ({}{})",
                    e.flag,
                    if e.enabled { "on" } else { "off" },
                    e.value,
                    e.reason.as_str(),
                    e.bucket
                        .map(|b| format!(", bucket {b}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        FlagCommand::History { flag, limit } => {
            let q = FlagHistory {
                flag: flag.clone(),
                limit: Some(*limit),
            };
            let rows: Vec<RolloutChange> = client.query("flag", "history", &q).await?;
            if cli.json {
                output::json(&rows);
                return Ok(());
            }
            let mut t = table(&[
                "TIME",
                "CHANGE",
                "PERCENTAGE",
                "STRATEGY",
                "TRIGGERED BY",
                "ACTOR",
                "REASON",
            ]);
            for r in &rows {
                t.add_row(vec![
                    time(&r.at),
                    r.change.clone(),
                    format!("{} → {}", opt(r.previous_percentage), opt(r.percentage)),
                    format!(
                        "{} → {}",
                        opt(r.previous_strategy.map(|s| s.as_str())),
                        opt(r.strategy.map(|s| s.as_str()))
                    ),
                    r.triggered_by.as_str().to_owned(),
                    r.actor.clone(),
                    clip(&r.reason, 60),
                ]);
            }
            crate::outln!("{t}");
            Ok(())
        }
        FlagCommand::Stats { flag, limit } => {
            let q = FlagStats {
                flag: flag.clone(),
                limit: Some(*limit),
            };
            let rows: Vec<OutcomeWindow> = client.query("flag", "stats", &q).await?;
            if cli.json {
                output::json(&rows);
                return Ok(());
            }
            let mut t = table(&["WINDOW", "SECS", "TOTAL", "ERRORS", "ERROR RATE", "AVG MS"]);
            for w in &rows {
                t.add_row(vec![
                    time(&w.window_start),
                    w.window_secs.to_string(),
                    w.total.to_string(),
                    w.errors.to_string(),
                    format!("{:.2}%", w.error_rate * 100.0),
                    format!("{:.1}", w.avg_duration_ms),
                ]);
            }
            crate::outln!("{t}");
            Ok(())
        }
        FlagCommand::List { archived } => {
            let rows: Vec<FlagState> = client
                .query(
                    "flag",
                    "list",
                    &ListFlags {
                        include_archived: *archived,
                    },
                )
                .await?;
            if cli.json {
                output::json(&rows);
                return Ok(());
            }
            let mut t = table(&[
                "FLAG",
                "TYPE",
                "PERCENTAGE",
                "STRATEGY",
                "STOPPED",
                "UPDATED",
                "BY",
            ]);
            for f in &rows {
                t.add_row(vec![
                    f.flag.clone(),
                    format!("{:?}", f.flag_type).to_lowercase(),
                    f.rollout.percentage.to_string(),
                    f.rollout.strategy.as_str().to_owned(),
                    if f.archived {
                        "archived".into()
                    } else if f.emergency_stop.is_some() {
                        "stopped".into()
                    } else {
                        String::new()
                    },
                    time(&f.updated_at),
                    f.updated_by.clone(),
                ]);
            }
            crate::outln!("{t}");
            Ok(())
        }
    }
}
