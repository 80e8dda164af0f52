//! Live evaluation: every catalog change (durable `<ns>_live` on `<NS>_CATALOG`, shared by
//! every worker process) is evaluated against the live targets — each policy's active version,
//! and the version of each run that is running or succeeded and not promoted yet — re-read for
//! every batch, so results stay current for items that change during or after a run.
//!
//! A change's stream sequence is its `item_seq` (the catalog projector writes the same number
//! into `catalog_items.stream_seq`), so the upsert guard keeps the newest evaluation whichever
//! writer (batch, sweep, live) comes last. Messages that are not catalog changes are skipped:
//! the catalog projector records them as rejections.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream::Message;
use async_trait::async_trait;
use gatehouse_projections::catalog;
use gatehouse_projections::consumer::{Handler, Outcome};
use gatehouse_rules::CompiledPolicy;
use tracing::Instrument;

use super::completion::evaluate_blocking;
use super::delivery::WorkError;
use super::evaluate::{Attributes, Candidate, ItemState, Verdict};
use super::store::{self, Results};
use super::Worker;

/// Live evaluation's handler: `live_batch` catalog changes per call, evaluated as one.
pub(crate) struct Live(pub Arc<Worker>);

#[async_trait]
impl Handler for Live {
    async fn handle(&self, batch: &[Message]) -> Outcome {
        let items = latest_changes(batch);
        let span = tracing::info_span!(
            "evaluate_changes",
            messages = batch.len(),
            items = items.len()
        );
        match evaluate(&self.0, items).instrument(span).await {
            Ok(written) => {
                tracing::debug!(written, "catalog changes evaluated");
                Outcome::Ack
            }
            Err(e) => e.outcome(),
        }
    }
}

/// The newest change of each item in the batch; messages that are not valid changes (as the
/// catalog projector reads them: it records them as rejections) are left out.
fn latest_changes(batch: &[Message]) -> Vec<Candidate> {
    let mut latest: HashMap<String, Candidate> = HashMap::with_capacity(batch.len());
    for message in batch {
        let Ok(info) = message.info() else { continue };
        let item_seq = info.stream_sequence as i64;
        let Ok(change) = catalog::read_change(&message.subject, &message.payload) else {
            continue;
        };
        let state = if change.deleted {
            ItemState::Pending("deleted")
        } else {
            let text = change.attributes.get();
            // Valid JSON nested within the limit: it parses (as text it would still evaluate).
            let attributes = serde_json::from_str(text)
                .map_or_else(|_| Attributes::Text(text.into()), Attributes::Json);
            ItemState::of(&change.status, false, attributes)
        };
        if latest
            .get(change.id.as_ref())
            .is_some_and(|seen| seen.item_seq > item_seq)
        {
            continue;
        }
        let item_id = change.id.into_owned();
        latest.insert(
            item_id.clone(),
            Candidate {
                item_id,
                item_seq,
                state,
            },
        );
    }
    latest.into_values().collect()
}

/// Evaluates `items` against every live target and upserts the results; returns rows written.
async fn evaluate(worker: &Worker, items: Vec<Candidate>) -> Result<u64, WorkError> {
    if items.is_empty() {
        return Ok(0);
    }
    let targets = targets(worker).await?;
    if targets.is_empty() {
        return Ok(0);
    }
    let mut items = items;
    let mut evaluated: Vec<(String, u32, Vec<Verdict>)> = Vec::with_capacity(targets.len());
    for (policy_id, version, policy) in targets {
        let (back, verdicts) = evaluate_blocking(worker, &policy, items).await?;
        items = back;
        evaluated.push((policy_id, version, verdicts));
    }
    let results: Vec<Results<'_>> = evaluated
        .iter()
        .map(|(policy_id, version, verdicts)| Results {
            policy_id,
            version: *version,
            run_id: None,
            items: &items,
            verdicts,
        })
        .collect();
    let mut client = worker.pg.get().await?;
    let tx = client.transaction().await?;
    let written = store::upsert(&tx, &results).await?;
    tx.commit().await?;
    Ok(written)
}

/// The live targets with their compiled versions. A version that does not compile is left out
/// (and logged): its run fails in the batch workers.
async fn targets(worker: &Worker) -> Result<Vec<(String, u32, Arc<CompiledPolicy>)>, WorkError> {
    let client = worker.pg.get().await?;
    let rows = client
        .query(
            "SELECT policy_id, active_version FROM policies WHERE active_version IS NOT NULL
             UNION
             SELECT policy_id, version FROM runs
              WHERE status IN ('running', 'success') AND NOT promoted",
            &[],
        )
        .await?;
    drop(client);
    let mut targets = Vec::with_capacity(rows.len());
    for row in rows {
        let (policy_id, version): (String, i32) = (row.get(0), row.get(1));
        let version = version as u32;
        match worker.policies.get(&worker.pg, &policy_id, version).await {
            Ok(policy) => targets.push((policy_id, version, policy)),
            Err(WorkError::Fatal(why)) => {
                tracing::error!(policy_id, version, why, "a live target cannot be evaluated")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(targets)
}
