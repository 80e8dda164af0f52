//! `gatehouse category ...`: categorisation rules (seed, draft, activate, show) and units'
//! categories (get, list, compute).

use clap::{Subcommand, ValueEnum};
use gatehouse_events::category::{
    seed_rules, ActivateCategoryRules, CategorisationRules, Categorised, Category, ComputeCategory,
    DraftCategoryRules, GetCategoryRules, GetUnitCategory, ListUnitCategories, RulesState,
    UnitCategory,
};
use gatehouse_events::envelope::CommandAccepted;

use super::output::{self, opt, table, time};
use super::{accepted, Cli};
use crate::client::Client;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CategoryArg {
    Test,
    Small,
    Medium,
    Large,
    Enterprise,
}

impl From<CategoryArg> for Category {
    fn from(c: CategoryArg) -> Category {
        match c {
            CategoryArg::Test => Category::Test,
            CategoryArg::Small => Category::Small,
            CategoryArg::Medium => Category::Medium,
            CategoryArg::Large => Category::Large,
            CategoryArg::Enterprise => Category::Enterprise,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CategoryCommand {
    /// Draft the seed rules (stars, contributors, PRs per week) as a new version.
    Seed {
        #[arg(long, default_value = "seed categorisation rules")]
        reason: String,
    },
    /// Draft a rules document (a JSON file) as a new version.
    Draft {
        file: std::path::PathBuf,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Put a drafted version in force (every unit is recomputed).
    Activate {
        version: u32,
        #[arg(long)]
        reason: String,
    },
    /// The rules' versions and the active one.
    Rules,
    /// A unit's category and priority.
    Get { unit: String },
    /// Units with their categories, highest priority first.
    List {
        #[arg(long, value_enum)]
        category: Option<CategoryArg>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// The category of attributes given as JSON object text, by the active rules.
    Compute { attributes: String },
}

async fn command<C: serde::Serialize>(
    cli: &Cli,
    client: &Client,
    name: &str,
    c: C,
    message: &str,
) -> anyhow::Result<()> {
    let done: CommandAccepted = client.command("category", name, &cli.sender(), c).await?;
    let version = done.detail.get("version").cloned().unwrap_or_default();
    accepted(cli, client, &done, &format!("{message} {version}")).await;
    Ok(())
}

fn units(cli: &Cli, rows: &[UnitCategory]) {
    if cli.json {
        return output::json(&rows);
    }
    let mut t = table(&["UNIT", "CATEGORY", "PRIORITY", "RULES", "RULE", "UPDATED"]);
    for u in rows {
        t.add_row(vec![
            u.unit.clone(),
            u.category.as_str().to_owned(),
            u.priority.to_string(),
            u.rules_version.to_string(),
            opt(u.rule.as_ref()),
            time(&u.updated_at),
        ]);
    }
    crate::outln!("{t}");
}

pub async fn run(cli: &Cli, cmd: &CategoryCommand, client: &Client) -> anyhow::Result<()> {
    match cmd {
        CategoryCommand::Seed { reason } => {
            let c = DraftCategoryRules {
                document: seed_rules(),
                reason: reason.clone(),
            };
            command(
                cli,
                client,
                "draft_rules",
                c,
                "drafted categorisation rules version",
            )
            .await
        }
        CategoryCommand::Draft { file, reason } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let document: CategorisationRules = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let c = DraftCategoryRules {
                document,
                reason: reason.clone(),
            };
            command(
                cli,
                client,
                "draft_rules",
                c,
                "drafted categorisation rules version",
            )
            .await
        }
        CategoryCommand::Activate { version, reason } => {
            let c = ActivateCategoryRules {
                version: *version,
                reason: reason.clone(),
            };
            command(
                cli,
                client,
                "activate_rules",
                c,
                "activated categorisation rules version",
            )
            .await
        }
        CategoryCommand::Rules => {
            let state: RulesState = client
                .query("category", "rules", &GetCategoryRules {})
                .await?;
            if cli.json {
                output::json(&state);
                return Ok(());
            }
            let mut t = table(&["VERSION", "ACTIVE", "RULES", "DRAFTED BY", "AT"]);
            for v in &state.versions {
                t.add_row(vec![
                    v.version.to_string(),
                    if state.active == Some(v.version) {
                        "yes"
                    } else {
                        ""
                    }
                    .to_owned(),
                    v.document.rules.len().to_string(),
                    v.drafted_by.clone(),
                    time(&v.drafted_at),
                ]);
            }
            crate::outln!("{t}");
            Ok(())
        }
        CategoryCommand::Get { unit } => {
            let q = GetUnitCategory { unit: unit.clone() };
            let u: UnitCategory = client.query("category", "get", &q).await?;
            units(cli, std::slice::from_ref(&u));
            Ok(())
        }
        CategoryCommand::List { category, limit } => {
            let q = ListUnitCategories {
                category: category.map(Category::from),
                limit: *limit,
            };
            let rows: Vec<UnitCategory> = client.query("category", "list", &q).await?;
            units(cli, &rows);
            Ok(())
        }
        CategoryCommand::Compute { attributes } => {
            let attributes = match serde_json::from_str(attributes) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => anyhow::bail!("attributes: a JSON object"),
            };
            let c: Categorised = client
                .query("category", "compute", &ComputeCategory { attributes })
                .await?;
            if cli.json {
                output::json(&c);
                return Ok(());
            }
            crate::outln!(
                "{} priority {} (rules version {}, rule {})",
                c.category.as_str(),
                c.priority,
                c.rules_version,
                opt(c.rule.as_ref())
            );
            Ok(())
        }
    }
}
