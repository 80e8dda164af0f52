//! `gatehouse catalog ...`: import items from a JSON-lines file onto the catalog stream, look
//! one up, count them, and read a policy's public catalog.
//!
//! Layout: this file (the commands and how they print); `import` (the import, callable as a
//! library function: [`import()`]); `publish` (pipelined publishes in file order); `progress`
//! (the import id, the side file with the saved progress, the progress bar).

mod import;
mod progress;
mod publish;

use std::path::{Path, PathBuf};

use clap::builder::RangedU64ValueParser;
use clap::Subcommand;
use gatehouse_events::catalog::{
    CatalogItem, CatalogStats, GetItem, IndexStatus, IndexStatusQuery, PublicCatalogPage,
    PublicCatalogQuery, SearchPage, SearchQuery,
};
use tokio_util::sync::CancellationToken;

pub use self::import::{
    import, BadLine, ImportError, ImportOptions, ImportReport, DEFAULT_IN_FLIGHT,
};
pub use self::progress::SIDE_FILE_SUFFIX;
use super::output::{self, clip, opt, table, time};
use super::Cli;
use crate::client::Client;

/// The query model the catalog queries are sent to (`<ns>.query.catalog.<query>`).
const MODEL: &str = "catalog";
/// Bad lines printed one by one; the rest are only counted.
const MAX_BAD_LINES_SHOWN: u64 = 1_000;

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Import catalog changes from a JSON-lines file: one {"op":"upsert","id","status",
    /// "attributes"} or {"op":"delete","id"} per line. Bad lines are reported by number and
    /// skipped. Progress is saved in <file>.gatehouse-import: running the same file again
    /// continues after it (delete that file to send everything again).
    Import {
        file: PathBuf,
        /// Fail unless there is saved progress of this very file to continue from.
        #[arg(long)]
        resume: bool,
        /// Publishes awaiting their acknowledgement at once; progress is saved every N lines.
        #[arg(long, default_value_t = DEFAULT_IN_FLIGHT,
            value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
        batch: usize,
    },
    /// One item as the catalog table holds it.
    Get { item_id: String },
    /// Counts of the catalog table.
    Stats,
    /// The items a policy's active version makes public, by id.
    Public {
        policy_id: String,
        #[arg(long)]
        limit: Option<u32>,
        /// Only items after this id (paging: pass the last id of the previous page).
        #[arg(long)]
        after: Option<String>,
    },
    /// Search the publish-ready items (allowed, or released) by words of their id, repo and
    /// attributes (web-search syntax: words, "phrases", or, -word), best first.
    Search {
        q: String,
        #[arg(long)]
        repo: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// The previous page's cursor (printed after a full page).
        #[arg(long)]
        after: Option<String>,
    },
    /// The search indexer: items indexed, events pending, lag, failed attempts, dead letters.
    IndexStatus,
}

/// Runs one catalog command against a running Gatehouse.
pub async fn run(cli: &Cli, cmd: &CatalogCommand, client: &Client) -> anyhow::Result<()> {
    match cmd {
        CatalogCommand::Import {
            file,
            resume,
            batch,
        } => import_file(cli, client, file, *resume, *batch).await?,
        CatalogCommand::Get { item_id } => {
            let q = GetItem {
                item_id: item_id.clone(),
            };
            let item: CatalogItem = client.query(MODEL, "get", &q).await?;
            if cli.json {
                output::json(&item);
                return Ok(());
            }
            crate::outln!("item:       {}", item.item_id);
            crate::outln!("status:     {}", item.status);
            crate::outln!("deleted:    {}", if item.deleted { "yes" } else { "no" });
            crate::outln!("updated:    {}", time(&item.updated_at));
            crate::outln!("attributes: {}", serde_json::to_string(&item.attributes)?);
        }
        CatalogCommand::Stats => {
            let stats: CatalogStats = client.query(MODEL, "stats", &serde_json::json!({})).await?;
            if cli.json {
                output::json(&stats);
                return Ok(());
            }
            let mut t = table(&["ITEMS", "READY", "DELETED"]);
            t.add_row(vec![
                stats.items.to_string(),
                stats.ready.to_string(),
                stats.deleted.to_string(),
            ]);
            crate::outln!("{t}");
        }
        CatalogCommand::Public {
            policy_id,
            limit,
            after,
        } => {
            let q = PublicCatalogQuery {
                policy_id: policy_id.clone(),
                after: after.clone(),
                limit: *limit,
            };
            let page: PublicCatalogPage = client.query(MODEL, "public", &q).await?;
            if cli.json {
                output::json(&page);
                return Ok(());
            }
            print_page(&page, *limit);
        }
        CatalogCommand::Search {
            q,
            repo,
            limit,
            after,
        } => {
            let q = SearchQuery {
                q: q.clone(),
                repo: repo.clone(),
                limit: *limit,
                after: after.clone(),
            };
            let page: SearchPage = client.query(MODEL, "search", &q).await?;
            if cli.json {
                output::json(&page);
                return Ok(());
            }
            let mut t = table(&["REPO", "ITEM", "READY BY", "RANK", "ATTRIBUTES"]);
            for hit in &page.hits {
                t.add_row(vec![
                    hit.repo.clone(),
                    hit.item_id.clone(),
                    hit.ready_by.clone(),
                    format!("{:.3}", hit.rank),
                    clip(&hit.attributes.to_string(), 50),
                ]);
            }
            crate::outln!("{t}");
            crate::outln!("{} hit(s)", page.hits.len());
            if let Some(next) = &page.next_after {
                crate::outln!("next page: --after '{next}'");
            }
        }
        CatalogCommand::IndexStatus => {
            let s: IndexStatus = client
                .query(MODEL, "index_status", &IndexStatusQuery {})
                .await?;
            if cli.json {
                output::json(&s);
                return Ok(());
            }
            let at = |t: &Option<chrono::DateTime<chrono::Utc>>| t.as_ref().map(time);
            crate::outln!("indexed items:    {}", s.indexed_items);
            crate::outln!(
                "last position:    {} at {}",
                s.last_position,
                opt(at(&s.last_indexed_at).as_deref())
            );
            crate::outln!(
                "pending events:   {} (lag {:.1} s)",
                s.pending,
                s.lag_seconds
            );
            crate::outln!(
                "failed attempts:  {} (last: {})",
                s.failed_attempts,
                opt(s.last_failure.as_deref())
            );
            if let Some(r) = &s.retrying {
                crate::outln!(
                    "retrying:         {} after delivery {}",
                    r.artifact_id,
                    r.deliveries
                );
            }
            crate::outln!(
                "dead letters:     {} (last: {})",
                s.dead_letters,
                opt(s.last_dead_letter_reason.as_deref())
            );
        }
    }
    Ok(())
}

/// Imports `file`, reporting bad lines on stderr as they come and a summary at the end.
/// Ctrl-C stops it with its progress saved.
async fn import_file(
    cli: &Cli,
    client: &Client,
    file: &Path,
    resume: bool,
    batch: usize,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let ctrl_c = tokio::spawn({
        let stop = stop.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.cancel();
            }
        }
    });
    let options = ImportOptions {
        in_flight: batch,
        require_resume: resume,
        progress_bar: !cli.json,
    };
    let mut shown = 0;
    let mut on_bad = |bad: &BadLine| {
        shown += 1;
        if shown <= MAX_BAD_LINES_SHOWN {
            eprintln!("line {}: {}", bad.line, bad.error);
        }
    };
    let report = import(
        client.nats(),
        client.namespace(),
        file,
        &options,
        &stop,
        &mut on_bad,
    )
    .await;
    ctrl_c.abort();
    let report = report?;
    if cli.json {
        output::json(&report);
    } else {
        if report.bad_lines > MAX_BAD_LINES_SHOWN {
            eprintln!(
                "... and {} more bad lines",
                report.bad_lines - MAX_BAD_LINES_SHOWN
            );
        }
        crate::outln!("{}", summary(&report));
    }
    if !report.complete {
        anyhow::bail!(
            "stopped after line {}: run the same command again to resume",
            report.settled_line
        );
    }
    if report.bad_lines > 0 {
        anyhow::bail!(
            "{} bad lines were not imported (reported above by number)",
            report.bad_lines
        );
    }
    Ok(())
}

fn summary(r: &ImportReport) -> String {
    let mut s = format!(
        "{}: settled up to line {}: {} published, {} duplicates, {} bad lines",
        r.file, r.settled_line, r.published, r.duplicates, r.bad_lines
    );
    if r.resumed_after > 0 {
        s.push_str(&format!(" (resumed after line {})", r.resumed_after));
    }
    if r.republished > 0 {
        s.push_str(&format!(
            ", {} sent again to keep file order",
            r.republished
        ));
    }
    s
}

fn print_page(page: &PublicCatalogPage, limit: Option<u32>) {
    let Some(version) = page.active_version else {
        return crate::outln!(
            "policy {} has no active version: nothing is public",
            page.policy_id
        );
    };
    crate::outln!("policy {} at active version {version}", page.policy_id);
    let mut t = table(&["ITEM", "SCORE", "ATTRIBUTES"]);
    for item in &page.items {
        t.add_row(vec![
            item.item_id.clone(),
            format!("{:.3}", item.score),
            clip(&item.attributes.to_string(), 60),
        ]);
    }
    crate::outln!("{t}");
    if page.held_back > 0 {
        crate::outln!(
            "held back: {} ready item(s) in this page's range not yet evaluated against version {version} since their last change",
            page.held_back
        );
    }
    let full = limit.is_some_and(|l| page.items.len() >= l as usize);
    if full {
        let last = page.items.last().map(|i| i.item_id.as_str());
        crate::outln!("next page: --after {}", opt(last));
    }
}
