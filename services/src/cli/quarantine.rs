//! `gatehouse repo ...`, `gatehouse decide`, `gatehouse quarantine ...`,
//! `gatehouse artifact can-read`: the repo, decision, quarantine and artifact contexts.

use clap::{Args, Subcommand};
use gatehouse_events::artifact::{CanRead, ReadAllowed};
use gatehouse_events::decision::{Action, DecisionReply, EvaluateDecision};
use gatehouse_events::quarantine::{CaseDetail, CasePage, GetCase, ListCases, ResolveCase};
use gatehouse_events::repo::{BindRepo, GetRepo, ListRepos, RepoSummary};

use super::output::{self, clip, opt, table, time};
use super::Cli;
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Bind a repo to the policy whose active version decides (binding again records anew).
    Bind {
        repo: String,
        #[arg(long)]
        policy: String,
        /// Evaluation budget in ms (default 250, at most 5000); past it: policy_timeout.
        #[arg(long)]
        budget_ms: Option<u32>,
        /// Keep open cases for a person when a new version is promoted (default: auto-release).
        #[arg(long)]
        no_auto_release: bool,
    },
    /// One repo's binding.
    Show { repo: String },
    /// Repos, optionally those bound to one policy.
    List {
        #[arg(long)]
        policy: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    pub repo: String,
    pub item_id: String,
    /// `publish` or `promote`.
    #[arg(long, default_value = "publish", value_parser = parse_action)]
    pub action: Action,
    /// The item's attributes as a JSON object (default: the catalog item's).
    #[arg(long)]
    pub attributes: Option<String>,
    /// A content digest (`sha256:<hex>`); repeat for several.
    #[arg(long = "digest")]
    pub digests: Vec<String>,
}

fn parse_action(s: &str) -> Result<Action, String> {
    Action::parse(s).ok_or_else(|| format!("`{s}` is not an action (publish, promote)"))
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Cases, oldest opened first.
    List {
        #[arg(long)]
        repo: Option<String>,
        /// quarantined, released or rejected.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        offset: Option<u32>,
    },
    /// One item's case with its decision history.
    Get { repo: String, item_id: String },
    /// Release the open case (approver): reads are allowed again.
    Release {
        repo: String,
        item_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Reject the open case (approver): reads stay refused.
    Reject {
        repo: String,
        item_id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// May the item (or the items with a digest) be read? Exit 1 with quarantined_blob if not.
    CanRead {
        repo: String,
        /// The item id (or `--digest`).
        item_id: Option<String>,
        #[arg(long, conflicts_with = "item_id")]
        digest: Option<String>,
    },
}

pub async fn repo(cli: &Cli, cmd: &RepoCommand, client: &Client) -> anyhow::Result<()> {
    match cmd {
        RepoCommand::Bind {
            repo,
            policy,
            budget_ms,
            no_auto_release,
        } => {
            let bind = BindRepo {
                repo: repo.clone(),
                policy_id: policy.clone(),
                budget_ms: *budget_ms,
                auto_release: Some(!no_auto_release),
            };
            let done = client.command("repo", "bind", &cli.sender(), bind).await?;
            let message = format!(
                "repo {repo} bound to policy {policy} (budget {} ms, auto-release {})",
                done.detail["budget_ms"],
                if *no_auto_release { "off" } else { "on" }
            );
            super::accepted(cli, client, &done, &message).await;
        }
        RepoCommand::Show { repo } => {
            let r: RepoSummary = client
                .query("repo", "get", &GetRepo { repo: repo.clone() })
                .await?;
            if cli.json {
                output::json(&r);
                return Ok(());
            }
            crate::outln!(
                "repo:         {}\npolicy:       {}\nbudget:       {} ms\nauto-release: {}\nbound by:     {} at {}\ntimeouts:     {}",
                r.repo,
                r.policy_id,
                r.budget_ms,
                if r.auto_release { "on" } else { "off" },
                r.bound_by,
                time(&r.bound_at),
                r.timeouts
            );
        }
        RepoCommand::List { policy, limit } => {
            let q = ListRepos {
                policy_id: policy.clone(),
                limit: *limit,
                offset: None,
            };
            let repos: Vec<RepoSummary> = client.query("repo", "list", &q).await?;
            if cli.json {
                output::json(&repos);
                return Ok(());
            }
            let mut t = table(&["REPO", "POLICY", "BUDGET MS", "AUTO-RELEASE", "TIMEOUTS"]);
            for r in &repos {
                t.add_row(vec![
                    r.repo.clone(),
                    r.policy_id.clone(),
                    r.budget_ms.to_string(),
                    r.auto_release.to_string(),
                    r.timeouts.to_string(),
                ]);
            }
            crate::outln!("{t}");
        }
    }
    Ok(())
}

pub async fn decide(cli: &Cli, args: &DecideArgs, client: &Client) -> anyhow::Result<()> {
    let attributes = match &args.attributes {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| anyhow::anyhow!("--attributes is not a JSON object: {e}"))?,
        ),
        None => None,
    };
    let command = EvaluateDecision {
        repo: args.repo.clone(),
        item_id: args.item_id.clone(),
        action: args.action,
        attributes,
        digests: args.digests.clone(),
    };
    let reply: DecisionReply = client
        .command_reply("decision", "evaluate", &cli.sender(), command)
        .await?;
    if !cli.no_wait {
        if let Err(e) = client.wait_for(&reply.recorded).await {
            eprintln!("warning: recorded, but queries may not show it yet: {e}");
        }
    }
    print_decision(cli, &reply);
    Ok(())
}

fn print_decision(cli: &Cli, reply: &DecisionReply) {
    if cli.json {
        return output::json(reply);
    }
    let o = &reply.outcome;
    crate::outln!(
        "{} {} of {} in {}: {} ({}: {}) [policy {} v{}, input {}]",
        o.decision.as_str().to_uppercase(),
        o.action,
        o.item_id,
        o.repo,
        o.decision,
        o.rule_id.as_deref().unwrap_or("default decision"),
        o.reason,
        o.policy_id,
        o.version,
        clip(&o.input_digest, 20),
    );
    if let Some(case) = o.case {
        let how = if o.case_opened { "opened" } else { "" };
        crate::outln!("case: {case} {how}");
    }
}

pub async fn quarantine(cli: &Cli, cmd: &QuarantineCommand, client: &Client) -> anyhow::Result<()> {
    match cmd {
        QuarantineCommand::List {
            repo,
            status,
            limit,
            offset,
        } => {
            let q = ListCases {
                repo: repo.clone(),
                status: status.clone(),
                limit: *limit,
                offset: *offset,
            };
            let page: CasePage = client.query("quarantine", "list", &q).await?;
            if cli.json {
                output::json(&page);
                return Ok(());
            }
            let mut t = table(&[
                "REPO",
                "ITEM",
                "STATUS",
                "POLICY",
                "RULE",
                "OPENED",
                "DECISIONS",
                "RESOLVED BY",
            ]);
            for c in &page.cases {
                t.add_row(vec![
                    c.repo.clone(),
                    c.item_id.clone(),
                    c.status.to_string(),
                    format!("{} v{}", c.policy_id, c.version),
                    opt(c.rule_id.as_deref()),
                    time(&c.opened_at),
                    c.decisions.to_string(),
                    opt(c.resolved_by.as_deref()),
                ]);
            }
            crate::outln!("{t}");
            crate::outln!("{} of {} cases", page.cases.len(), page.total);
        }
        QuarantineCommand::Get { repo, item_id } => {
            let q = GetCase {
                repo: repo.clone(),
                item_id: item_id.clone(),
            };
            let d: CaseDetail = client.query("quarantine", "get", &q).await?;
            if cli.json {
                output::json(&d);
                return Ok(());
            }
            let c = &d.case;
            crate::outln!(
                "case {} in {}: {}\nopened by {} at {} (policy {} v{}, rule {}: {})",
                c.item_id,
                c.repo,
                c.status,
                c.opened_by,
                time(&c.opened_at),
                c.policy_id,
                c.version,
                opt(c.rule_id.as_deref()),
                c.reason
            );
            if let (Some(by), Some(at)) = (&c.resolved_by, &c.resolved_at) {
                crate::outln!(
                    "{} by {by} at {}: {}",
                    c.status,
                    time(at),
                    c.resolution_reason.as_deref().unwrap_or("")
                );
            }
            let mut t = table(&[
                "POSITION", "ACTION", "DECISION", "RULE", "VERSION", "BY", "AT",
            ]);
            for e in &d.history {
                t.add_row(vec![
                    e.position.to_string(),
                    e.action.to_string(),
                    e.decision.to_string(),
                    opt(e.rule_id.as_deref()),
                    e.version.to_string(),
                    e.decided_by.clone(),
                    time(&e.decided_at),
                ]);
            }
            crate::outln!("{t}");
        }
        QuarantineCommand::Release {
            repo,
            item_id,
            reason,
        }
        | QuarantineCommand::Reject {
            repo,
            item_id,
            reason,
        } => {
            let (name, done_as) = match cmd {
                QuarantineCommand::Release { .. } => ("release", "released"),
                _ => ("reject", "rejected"),
            };
            let resolve = ResolveCase {
                repo: repo.clone(),
                item_id: item_id.clone(),
                reason: reason.clone(),
            };
            let done = client
                .command("quarantine", name, &cli.sender(), resolve)
                .await?;
            let message = format!("case {item_id} in {repo}: {done_as}");
            super::accepted(cli, client, &done, &message).await;
        }
    }
    Ok(())
}

pub async fn artifact(cli: &Cli, cmd: &ArtifactCommand, client: &Client) -> anyhow::Result<()> {
    let ArtifactCommand::CanRead {
        repo,
        item_id,
        digest,
    } = cmd;
    let q = CanRead {
        repo: repo.clone(),
        item_id: item_id.clone(),
        digest: digest.clone(),
    };
    let answer: ReadAllowed = client.query("artifact", "can_read", &q).await?;
    if cli.json {
        output::json(&answer);
        return Ok(());
    }
    let waiver = match answer.case {
        Some(status) => format!(" (case {status}: a waiver)"),
        None => String::new(),
    };
    crate::outln!(
        "allowed: {} in {}{waiver}",
        if answer.item_ids.is_empty() {
            "no known item".to_owned()
        } else {
            answer.item_ids.join(", ")
        },
        answer.repo
    );
    Ok(())
}
