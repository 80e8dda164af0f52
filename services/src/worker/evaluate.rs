//! One catalog item's outcome under a compiled policy version, and a batch of items split
//! across threads. Pure: no I/O, so the outcome rules are tested here.
//!
//! An item that is deleted or not `ready` is `pending` (its decision is deferred); one whose
//! attributes do not fit the schema, or whose evaluation fails, is an `error` with the message
//! (never dropped); otherwise the policy decides.

use std::sync::Arc;

use gatehouse_events::rules::Decision;
use gatehouse_events::run::{ErrorSample, RunCounters, MAX_ERROR_MESSAGE, MAX_ERROR_SAMPLES};
use gatehouse_rules::CompiledPolicy;
use serde_json::Value as Json;

/// Below this many items a batch is evaluated on one thread.
const PARALLEL_FROM: usize = 256;

/// The outcome stored in `eval_results.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny,
    Quarantine,
    Pending,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Quarantine => "quarantine",
            Outcome::Pending => "pending",
            Outcome::Error => "error",
        }
    }
}

impl From<Decision> for Outcome {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Allow => Outcome::Allow,
            Decision::Deny => Outcome::Deny,
            Decision::Quarantine => Outcome::Quarantine,
        }
    }
}

/// A catalog item to evaluate: its id, the catalog change it reflects, and its state then.
#[derive(Debug)]
pub struct Candidate {
    pub item_id: String,
    /// The catalog stream sequence of the item's latest change (0: not in the catalog).
    pub item_seq: i64,
    pub state: ItemState,
}

/// What decides how an item is evaluated.
#[derive(Debug)]
pub enum ItemState {
    /// Ready: its attributes, as JSON text (from Postgres) or parsed (from a catalog message).
    Ready(Attributes),
    /// Deleted, not ready, or gone: the decision is deferred, for this reason.
    Pending(&'static str),
}

#[derive(Debug)]
pub enum Attributes {
    Text(Vec<u8>),
    Json(Json),
}

impl ItemState {
    /// The state of a catalog row or change.
    pub fn of(status: &str, deleted: bool, attributes: Attributes) -> Self {
        if deleted {
            ItemState::Pending("deleted")
        } else if status != gatehouse_events::catalog::READY {
            ItemState::Pending("not ready")
        } else {
            ItemState::Ready(attributes)
        }
    }
}

/// One item's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub rule_id: Option<Arc<str>>,
    pub reason: Arc<str>,
    pub score: f64,
}

impl Verdict {
    fn pending(reason: &str) -> Self {
        Verdict {
            outcome: Outcome::Pending,
            rule_id: None,
            reason: reason.into(),
            score: 0.0,
        }
    }

    fn error(message: impl std::fmt::Display) -> Self {
        let message: String = message
            .to_string()
            .chars()
            .take(MAX_ERROR_MESSAGE)
            .collect();
        Verdict {
            outcome: Outcome::Error,
            rule_id: None,
            reason: message.into(),
            score: 0.0,
        }
    }
}

/// Evaluates one item.
pub(crate) fn evaluate(policy: &CompiledPolicy, state: &ItemState) -> Verdict {
    // An error's message is the verdict's reason: text that is not JSON reads "attributes
    // are not JSON: ...", attributes that do not fit the schema name the attribute.
    let item = match state {
        ItemState::Pending(reason) => return Verdict::pending(reason),
        ItemState::Ready(Attributes::Json(json)) => policy.item(json).map_err(Verdict::error),
        ItemState::Ready(Attributes::Text(text)) => {
            policy.item_from_text(text).map_err(Verdict::error)
        }
    };
    let item = match item {
        Ok(item) => item,
        Err(verdict) => return verdict,
    };
    match policy.evaluate(&item) {
        Ok(evaluation) => Verdict {
            outcome: evaluation.decision.into(),
            rule_id: evaluation.rule_id,
            reason: evaluation.reason,
            score: evaluation.score,
        },
        Err(e) => Verdict::error(e),
    }
}

/// Evaluates `items` in order, split across up to `threads` threads. Blocking: call it from a
/// blocking task.
pub fn evaluate_all(policy: &CompiledPolicy, items: &[Candidate], threads: usize) -> Vec<Verdict> {
    let one = |part: &[Candidate]| -> Vec<Verdict> {
        part.iter().map(|c| evaluate(policy, &c.state)).collect()
    };
    if threads <= 1 || items.len() < PARALLEL_FROM {
        return one(items);
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut parts = items.chunks(chunk);
        let first = parts.next().unwrap_or_default();
        let others: Vec<_> = parts.map(|part| scope.spawn(move || one(part))).collect();
        let mut verdicts = one(first);
        for handle in others {
            match handle.join() {
                Ok(part) => verdicts.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        verdicts
    })
}

/// A batch's counters and its first error samples.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Tally {
    pub counters: RunCounters,
    pub samples: Vec<ErrorSample>,
}

/// Counts each outcome; `processed` is the number of items.
pub(crate) fn tally(items: &[Candidate], verdicts: &[Verdict]) -> Tally {
    let mut tally = Tally::default();
    for (item, verdict) in items.iter().zip(verdicts) {
        let c = &mut tally.counters;
        c.processed += 1;
        match verdict.outcome {
            Outcome::Allow => c.eligible += 1,
            Outcome::Deny => c.ineligible += 1,
            Outcome::Quarantine => c.quarantined += 1,
            Outcome::Pending => c.pending += 1,
            Outcome::Error => {
                c.errors += 1;
                if tally.samples.len() < MAX_ERROR_SAMPLES {
                    tally.samples.push(ErrorSample {
                        item_id: item.item_id.clone(),
                        message: verdict.reason.to_string(),
                    });
                }
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests;
