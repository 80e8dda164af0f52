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

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use gatehouse_projections::catalog;
use gatehouse_rules::CompiledPolicy;
use tokio_util::sync::CancellationToken;

use super::completion::evaluate_blocking;
use super::delivery::{self, WorkError};
use super::evaluate::{Attributes, Candidate, ItemState, Verdict};
use super::store::{self, Results};
use super::Worker;

/// Pulls and evaluates catalog changes until `shutdown`, finishing the batch in hand.
pub(crate) async fn run(worker: Arc<Worker>, consumer: PullConsumer, shutdown: CancellationToken) {
    let mut failures = 0;
    while !shutdown.is_cancelled() {
        let max = worker.settings.live_batch.max(1);
        match delivery::fetch(&consumer, max, worker.settings.fetch_expiry).await {
            Ok(batch) if batch.is_empty() => failures = 0,
            Ok(batch) => {
                failures = 0;
                handle(&worker, batch).await;
            }
            Err(e) => {
                failures += 1;
                let pause = delivery::fetch_pause(failures);
                tracing::error!(error.message = %e, ?pause, "could not fetch catalog changes");
                if delivery::sleep_or_shutdown(pause, &shutdown).await {
                    break;
                }
            }
        }
    }
    // Acks are fire-and-forget: make sure the last batch's reached the server.
    if let Err(e) = worker.js.client().flush().await {
        tracing::warn!(error.message = %e, "could not flush the last acks");
    }
}

/// Evaluates one batch of changes and answers every message.
async fn handle(worker: &Worker, batch: Vec<Message>) {
    let period = delivery::heartbeat_period(worker.settings.ack_wait);
    let Some(first) = batch.first() else { return };
    let items = latest_changes(&batch);
    let span = tracing::info_span!(
        "evaluate_changes",
        messages = batch.len(),
        items = items.len()
    );
    let result = tracing::Instrument::instrument(
        delivery::with_heartbeat(&batch, period, evaluate(worker, items)),
        span,
    )
    .await;
    let kind = match result {
        Ok(written) => {
            tracing::debug!(written, "catalog changes evaluated");
            AckKind::Ack
        }
        Err(e) => {
            let delivered = delivery::delivered(first);
            let delay = delivery::retry_delay(worker.settings.retry_delay, delivered);
            tracing::warn!(error.message = %e, delivered, ?delay, "catalog changes will be re-evaluated");
            AckKind::Nak(Some(delay))
        }
    };
    for message in &batch {
        delivery::answer(message, kind).await;
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
