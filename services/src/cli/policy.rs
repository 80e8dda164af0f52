//! `gatehouse policy ...`: create policies, draft and restore versions, read history and diffs.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use gatehouse_events::envelope::CommandAccepted;
use gatehouse_events::policy::{
    ConfigurePolicy, CreatePolicy, DiffVersions, DraftVersion, GetPolicy, GetVersion, ListPolicies,
    ListVersions, PolicyDiff, PolicySummary, PolicyVersion, RestoreVersion, RuleChange,
    VersionSummary, AGGREGATE,
};

use super::output::{self, clip, opt, table, time};
use super::Cli;
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create a policy with its attribute schema (no version yet).
    Create {
        /// The policy id: [a-z0-9][a-z0-9_-]*.
        policy_id: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// The attribute schema: a JSON file, or inline JSON such as '{"kind":"string"}'.
        #[arg(long)]
        attributes: String,
        /// Four-eyes promotion: a version's author may not promote it.
        #[arg(long)]
        require_second_approver: bool,
    },
    /// Draft a new immutable version from a rules document (JSON file).
    Draft {
        policy_id: String,
        /// The rules document: {"rules":[{"id","condition","decision","reason"}],"default_decision","score"}.
        #[arg(long)]
        file: PathBuf,
        /// Why this change.
        #[arg(long)]
        notes: String,
    },
    /// Restore an earlier version as a new version.
    Restore {
        policy_id: String,
        version: u32,
        #[arg(long, default_value = "")]
        notes: String,
    },
    /// Change a policy's settings (needs `admin`).
    Configure {
        policy_id: String,
        /// Four-eyes promotion: `true` (a version's author may not promote it) or `false`.
        #[arg(long, action = clap::ArgAction::Set)]
        require_second_approver: bool,
        /// Why: shown in the audit log.
        #[arg(long, default_value = "")]
        notes: String,
    },
    /// List policies.
    List {
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        offset: Option<u32>,
    },
    /// Show a policy, or one version's rules with --version.
    Show {
        policy_id: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// A policy's versions, newest first.
    Versions {
        policy_id: String,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        offset: Option<u32>,
    },
    /// Rule-by-rule differences between two versions.
    Diff {
        policy_id: String,
        from: u32,
        to: u32,
    },
}

/// Runs one policy command against a running Gatehouse.
pub async fn run(cli: &Cli, cmd: &PolicyCommand, client: &Client) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Create {
            policy_id,
            name,
            description,
            attributes,
            require_second_approver,
        } => {
            let attributes = serde_json::from_str(&read_inline_or_file(attributes)?)
                .context("--attributes is not a valid attribute schema")?;
            let body = CreatePolicy {
                policy_id: policy_id.clone(),
                name: name.clone(),
                description: description.clone(),
                attributes,
                require_second_approver: *require_second_approver,
            };
            let done = client
                .command(AGGREGATE, "create", &cli.sender(), body)
                .await?;
            super::accepted(cli, client, &done, &format!("policy {policy_id} created")).await;
        }
        PolicyCommand::Draft {
            policy_id,
            file,
            notes,
        } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let rules = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid rules document", file.display()))?;
            let body = DraftVersion {
                policy_id: policy_id.clone(),
                rules,
                notes: notes.clone(),
            };
            let done = client
                .command(AGGREGATE, "draft", &cli.sender(), body)
                .await?;
            super::accepted(
                cli,
                client,
                &done,
                &format!("policy {policy_id}: version {} drafted", version_of(&done)),
            )
            .await;
        }
        PolicyCommand::Restore {
            policy_id,
            version,
            notes,
        } => {
            let body = RestoreVersion {
                policy_id: policy_id.clone(),
                version: *version,
                notes: notes.clone(),
            };
            let done = client
                .command(AGGREGATE, "restore", &cli.sender(), body)
                .await?;
            let message = format!(
                "policy {policy_id}: version {} restores version {version}",
                version_of(&done)
            );
            super::accepted(cli, client, &done, &message).await;
        }
        PolicyCommand::Configure {
            policy_id,
            require_second_approver,
            notes,
        } => {
            let body = ConfigurePolicy {
                policy_id: policy_id.clone(),
                require_second_approver: *require_second_approver,
                notes: notes.clone(),
            };
            let done = client
                .command(AGGREGATE, "configure", &cli.sender(), body)
                .await?;
            let state = if *require_second_approver {
                "on"
            } else {
                "off"
            };
            let message = format!("policy {policy_id}: four-eyes promotion {state}");
            super::accepted(cli, client, &done, &message).await;
        }
        PolicyCommand::List { limit, offset } => {
            let q = ListPolicies {
                limit: *limit,
                offset: *offset,
            };
            let policies: Vec<PolicySummary> = client.query(AGGREGATE, "list", &q).await?;
            if cli.json {
                output::json(&policies);
                return Ok(());
            }
            let mut t = table(&["POLICY", "NAME", "LATEST", "ACTIVE", "UPDATED"]);
            for p in &policies {
                t.add_row(vec![
                    p.policy_id.clone(),
                    clip(&p.name, 40),
                    p.latest_version.to_string(),
                    opt(p.active_version),
                    time(&p.updated_at),
                ]);
            }
            crate::outln!("{t}");
        }
        PolicyCommand::Show {
            policy_id,
            version: None,
        } => {
            let p: PolicySummary = client
                .query(
                    AGGREGATE,
                    "get",
                    &GetPolicy {
                        policy_id: policy_id.clone(),
                    },
                )
                .await?;
            if cli.json {
                output::json(&p);
                return Ok(());
            }
            crate::outln!(
                "policy:         {}\nname:           {}",
                p.policy_id,
                p.name
            );
            if !p.description.is_empty() {
                crate::outln!("description:    {}", p.description);
            }
            crate::outln!(
                "latest version: {}\nactive version: {}",
                p.latest_version,
                opt(p.active_version)
            );
            crate::outln!(
                "four-eyes:      {}",
                if p.require_second_approver {
                    "on (a version's author may not promote it)"
                } else {
                    "off"
                }
            );
            crate::outln!(
                "created:        {} by {}",
                time(&p.created_at),
                p.created_by
            );
            crate::outln!("attributes:     {}", serde_json::to_string(&p.attributes)?);
        }
        PolicyCommand::Show {
            policy_id,
            version: Some(version),
        } => {
            let q = GetVersion {
                policy_id: policy_id.clone(),
                version: *version,
            };
            let v: PolicyVersion = client.query(AGGREGATE, "version", &q).await?;
            if cli.json {
                output::json(&v);
                return Ok(());
            }
            print_version(&v);
        }
        PolicyCommand::Versions {
            policy_id,
            limit,
            offset,
        } => {
            let q = ListVersions {
                policy_id: policy_id.clone(),
                limit: *limit,
                offset: *offset,
            };
            let versions: Vec<VersionSummary> = client.query(AGGREGATE, "versions", &q).await?;
            if cli.json {
                output::json(&versions);
                return Ok(());
            }
            let mut t = table(&[
                "VERSION",
                "AUTHOR",
                "DRAFTED",
                "RULES",
                "RESTORED FROM",
                "ACTIVE",
                "NOTES",
            ]);
            for v in &versions {
                t.add_row(vec![
                    v.version.to_string(),
                    v.author.clone(),
                    time(&v.drafted_at),
                    v.rule_count.to_string(),
                    opt(v.restored_from),
                    if v.active {
                        "yes".into()
                    } else {
                        String::new()
                    },
                    clip(&v.notes, 50),
                ]);
            }
            crate::outln!("{t}");
        }
        PolicyCommand::Diff {
            policy_id,
            from,
            to,
        } => {
            let q = DiffVersions {
                policy_id: policy_id.clone(),
                from: *from,
                to: *to,
            };
            let diff: PolicyDiff = client.query(AGGREGATE, "diff", &q).await?;
            if cli.json {
                output::json(&diff);
                return Ok(());
            }
            print_diff(&diff);
        }
    }
    Ok(())
}

fn version_of(done: &CommandAccepted) -> String {
    done.detail
        .get("version")
        .map_or_else(|| "?".into(), |v| v.to_string())
}

fn read_inline_or_file(arg: &str) -> anyhow::Result<String> {
    if arg.trim_start().starts_with('{') {
        return Ok(arg.to_owned());
    }
    std::fs::read_to_string(arg).with_context(|| format!("cannot read {arg}"))
}

fn print_version(v: &PolicyVersion) {
    let s = &v.summary;
    crate::outln!(
        "policy {} version {}{}",
        v.policy_id,
        s.version,
        if s.active { " (active)" } else { "" }
    );
    crate::outln!(
        "drafted {} by {}: {}",
        time(&s.drafted_at),
        s.author,
        s.notes
    );
    if let Some(from) = s.restored_from {
        crate::outln!("restored from version {from}");
    }
    let mut t = table(&["#", "RULE", "DECISION", "CONDITION", "REASON"]);
    for (i, r) in v.rules.rules.iter().enumerate() {
        t.add_row(vec![
            i.to_string(),
            r.id.clone(),
            r.decision.to_string(),
            r.condition.clone(),
            r.reason.clone(),
        ]);
    }
    t.add_row(vec![
        "-".into(),
        "(default)".into(),
        v.rules.default_decision.to_string(),
        String::new(),
        v.rules.default_reason.clone(),
    ]);
    crate::outln!("{t}\nscore: {}", v.rules.score);
}

fn print_diff(d: &PolicyDiff) {
    crate::outln!("policy {}: version {} → {}", d.policy_id, d.from, d.to);
    if d.is_empty() {
        return crate::outln!("no differences");
    }
    for change in &d.rules {
        match change {
            RuleChange::Added { position, rule } => {
                crate::outln!(
                    "+ rule {} at #{position}: {} when {} ({})",
                    rule.id,
                    rule.decision,
                    rule.condition,
                    rule.reason
                )
            }
            RuleChange::Removed { position, rule } => {
                crate::outln!(
                    "- rule {} (was #{position}): {} when {}",
                    rule.id,
                    rule.decision,
                    rule.condition
                )
            }
            RuleChange::Modified {
                id,
                from_position,
                to_position,
                condition,
                decision,
                reason,
            } => {
                crate::outln!("~ rule {id} (#{from_position} → #{to_position})");
                if let Some(c) = condition {
                    crate::outln!("    condition: {}  →  {}", c.from, c.to);
                }
                if let Some(c) = decision {
                    crate::outln!("    decision:  {}  →  {}", c.from, c.to);
                }
                if let Some(c) = reason {
                    crate::outln!("    reason:    {}  →  {}", c.from, c.to);
                }
            }
            RuleChange::Moved {
                id,
                from_position,
                to_position,
            } => {
                crate::outln!("↕ rule {id} moved #{from_position} → #{to_position}")
            }
        }
    }
    if let Some(c) = &d.default_decision {
        crate::outln!("~ default decision: {} → {}", c.from, c.to);
    }
    if let Some(c) = &d.default_reason {
        crate::outln!("~ default reason: {} → {}", c.from, c.to);
    }
    if let Some(c) = &d.score {
        crate::outln!("~ score: {} → {}", c.from, c.to);
    }
    crate::outln!("unchanged rules: {}", d.unchanged.len());
}
