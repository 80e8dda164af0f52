//! Where a draft's time goes, measured on one thread after the `draft` phase: the CEL
//! validation of the rules document, and loading a drafted policy's stream the way the event
//! store does (fetch its events in sequence order, decode each payload, apply it).

use std::time::Instant;

use cqrs_es::Aggregate;
use gatehouse_events::policy::{PolicyEvent, AGGREGATE};

use crate::workload;
use gatehouse::policy::Policy;

/// Mean wall time of one validation of the bench's rules document, in µs, over `n` runs.
pub fn validate_us(n: u32) -> anyhow::Result<f64> {
    let schema = workload::create("p")?.attributes;
    let rules = workload::draft("p", 1)?.rules;
    let started = Instant::now();
    for _ in 0..n {
        gatehouse_rules::validate(&rules, &schema)
            .map_err(|e| anyhow::anyhow!("the bench rules are invalid: {e:?}"))?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(n.max(1)))
}

/// Mean wall time of loading policy `id`, in µs, over `n` loads.
pub async fn load_us(db: &tokio_postgres::Client, id: &str, n: u32) -> anyhow::Result<f64> {
    let events = db
        .prepare(
            "SELECT payload FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
             ORDER BY sequence",
        )
        .await?;
    let started = Instant::now();
    for _ in 0..n {
        let mut policy = Policy::default();
        for row in db.query(&events, &[&AGGREGATE, &id]).await? {
            let payload: serde_json::Value = row.try_get(0)?;
            policy.apply(serde_json::from_value::<PolicyEvent>(payload)?);
        }
        std::hint::black_box(&policy);
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(n.max(1)))
}
