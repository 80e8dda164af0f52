//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Two kinds, named in `docs/runbook.md` (*Metrics*):
//! - **Per process** (counters and histograms since the process started): every operation by
//!   kind, name and outcome (`ok` or the rejection code) with its latency, decisions by outcome,
//!   decision timeouts, flag evaluations. [`crate::api::Operation::call`] records them, so a
//!   request counts the same over NATS and HTTP — in the process that answered it: `gatehouse
//!   up` counts everything it answers, `gatehouse http` alone only what came over HTTP.
//! - **Read at scrape time** from Postgres and JetStream, the same from any process: relay lag
//!   (unpublished outbox rows, age of the oldest), every consumer's pending, unacknowledged and
//!   redelivered messages and the age of its oldest pending one, dead letters per consumer,
//!   progress of every running run. `gatehouse_scrape_up{source}` says whether a source
//!   answered; a source that did not leaves its gauges out rather than reporting zeros.

use std::sync::LazyLock;
use std::time::Duration;

use deadpool_postgres::Pool;
use gatehouse_events::envelope::Rejection;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};
use serde_json::Value;

use crate::api::{App, Kind, Operation};
use crate::ops::queues;

/// Seconds: from a fast query (1 ms) to a request that hit its timeout (30 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// This process's counters.
struct Process {
    registry: Registry,
    operations: IntCounterVec,
    latency: HistogramVec,
    decisions: IntCounterVec,
    decision_timeouts: IntCounter,
    flag_evaluations: IntCounterVec,
}

static PROCESS: LazyLock<Process> = LazyLock::new(Process::new);

impl Process {
    fn new() -> Self {
        let registry = Registry::new();
        let operations = IntCounterVec::new(
            Opts::new(
                "gatehouse_operations_total",
                "Commands and queries answered by this process, by outcome (ok or the rejection code)",
            ),
            &["kind", "operation", "outcome"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "gatehouse_operation_duration_seconds",
                "Time to answer a command or query in this process, by outcome",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["kind", "operation", "outcome"],
        )
        .expect("valid metric");
        let decisions = IntCounterVec::new(
            Opts::new(
                "gatehouse_decisions_total",
                "decision.evaluate answers of this process: allow, deny, quarantine or the rejection code",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let decision_timeouts = IntCounter::new(
            "gatehouse_decision_timeouts_total",
            "Decisions of this process that exceeded their repo's budget (policy_timeout)",
        )
        .expect("valid metric");
        let flag_evaluations = IntCounterVec::new(
            Opts::new(
                "gatehouse_flag_evaluations_total",
                "Flag evaluations answered by this process (flag.evaluate, flag.evaluate_batch, OFREP)",
            ),
            &["flag"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(operations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(decisions.clone()),
            Box::new(decision_timeouts.clone()),
            Box::new(flag_evaluations.clone()),
        ] {
            registry
                .register(metric)
                .expect("each metric is registered once");
        }
        Process {
            registry,
            operations,
            latency,
            decisions,
            decision_timeouts,
            flag_evaluations,
        }
    }
}

/// Records one answered operation: its outcome, its latency, and what it decided or evaluated.
pub fn record(op: &Operation, outcome: &Result<Value, Rejection>, elapsed: Duration) {
    let p = &*PROCESS;
    let kind = match op.kind {
        Kind::Command => "command",
        Kind::Query => "query",
    };
    let code = match outcome {
        Ok(_) => "ok",
        Err(r) => r.code.as_str(),
    };
    let labels = [kind, op.name, code];
    p.operations.with_label_values(&labels).inc();
    p.latency
        .with_label_values(&labels)
        .observe(elapsed.as_secs_f64());
    match (op.name, outcome) {
        ("decision.evaluate", Ok(reply)) => {
            let decision = reply["decision"].as_str().unwrap_or("unknown");
            p.decisions.with_label_values(&[decision]).inc();
        }
        ("decision.evaluate", Err(r)) => {
            p.decisions.with_label_values(&[r.code.as_str()]).inc();
            if r.code == gatehouse_events::envelope::RejectionCode::PolicyTimeout {
                p.decision_timeouts.inc();
            }
        }
        ("flag.evaluate", Ok(evaluation)) => flag_evaluated(&evaluation["flag"]),
        ("flag.evaluate_batch", Ok(Value::Array(evaluations))) => {
            evaluations.iter().for_each(|e| flag_evaluated(&e["flag"]))
        }
        _ => {}
    }
}

fn flag_evaluated(flag: &Value) {
    flag_evaluations(flag.as_str().unwrap_or("unknown"), 1);
}

/// Counts `n` evaluations of `flag` answered outside the operation table (OFREP).
pub fn flag_evaluations(flag: &str, n: u64) {
    PROCESS
        .flag_evaluations
        .with_label_values(&[flag])
        .inc_by(n);
}

/// Everything `/metrics` answers, in the text exposition format.
pub async fn scrape(app: &App) -> String {
    let scraped = Registry::new();
    let up = gauge(
        &scraped,
        "gatehouse_scrape_up",
        "1 when the source answered this scrape, 0 when its gauges are missing",
        &["source"],
    );
    let postgres = postgres_gauges(&scraped, &app.pg).await;
    up.with_label_values(&["postgres"])
        .set(f64::from(u8::from(postgres)));
    let nats = match &app.broker {
        Some(broker) => broker_gauges(&scraped, &broker.client, &app.namespace).await,
        None => false,
    };
    up.with_label_values(&["nats"])
        .set(f64::from(u8::from(nats)));
    let mut families = PROCESS.registry.gather();
    families.extend(scraped.gather());
    let mut text = Vec::new();
    // Encoding into a Vec fails only on an invalid family, which the registries rule out.
    let _ = TextEncoder::new().encode(&families, &mut text);
    String::from_utf8(text).unwrap_or_default()
}

/// The content type of [`scrape`]'s text.
pub fn content_type() -> &'static str {
    prometheus::TEXT_FORMAT
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let gauge = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(gauge.clone()))
        .expect("each gauge is registered once per scrape");
    gauge
}

/// Relay lag and run progress; `false` when Postgres did not answer.
async fn postgres_gauges(registry: &Registry, pg: &Pool) -> bool {
    let Ok(client) = pg.get().await else {
        return false;
    };
    let relay = client
        .query_one(
            "SELECT count(*)::float8, \
                    coalesce(extract(epoch FROM now() - min(recorded_at)), 0)::float8 \
             FROM event_outbox WHERE published_at IS NULL",
            &[],
        )
        .await;
    let runs = client
        .query(
            "SELECT r.run_id, r.policy_id, coalesce(p.processed, 0)::float8, \
                    r.total_ready_snapshot::float8 \
             FROM runs r LEFT JOIN run_progress p USING (run_id) WHERE r.status = 'running'",
            &[],
        )
        .await;
    let (Ok(relay), Ok(runs)) = (relay, runs) else {
        return false;
    };
    gauge(
        registry,
        "gatehouse_relay_unpublished_events",
        "Events stored in Postgres and not yet published to the events stream",
        &[],
    )
    .with_label_values(&[] as &[&str])
    .set(relay.get(0));
    gauge(
        registry,
        "gatehouse_relay_oldest_unpublished_age_seconds",
        "Age of the oldest event waiting in the outbox (0 when none waits)",
        &[],
    )
    .with_label_values(&[] as &[&str])
    .set(relay.get(1));
    let processed = gauge(
        registry,
        "gatehouse_run_processed_items",
        "Items a running run has evaluated",
        &["run_id", "policy_id"],
    );
    let snapshot = gauge(
        registry,
        "gatehouse_run_snapshot_items",
        "Items in a running run's frozen snapshot",
        &["run_id", "policy_id"],
    );
    for row in runs {
        let labels = [row.get::<_, String>(0), row.get(1)];
        let labels = [labels[0].as_str(), labels[1].as_str()];
        processed.with_label_values(&labels).set(row.get(2));
        snapshot.with_label_values(&labels).set(row.get(3));
    }
    true
}

/// Consumers and dead letters; `false` when JetStream did not answer.
async fn broker_gauges(registry: &Registry, client: &async_nats::Client, ns: &str) -> bool {
    let js = crate::broker::jetstream(client);
    let (Ok(consumers), Ok(dead)) = (
        queues::consumers(&js, ns).await,
        queues::dead_letters(&js, ns).await,
    ) else {
        return false;
    };
    let labels = ["stream", "consumer"];
    let pending = gauge(
        registry,
        "gatehouse_consumer_pending_messages",
        "Messages of a consumer's stream it has not been delivered yet",
        &labels,
    );
    let unacked = gauge(
        registry,
        "gatehouse_consumer_ack_pending_messages",
        "Messages delivered to a consumer and not yet acknowledged",
        &labels,
    );
    let redelivered = gauge(
        registry,
        "gatehouse_consumer_redelivered_messages",
        "Unacknowledged messages of a consumer delivered more than once",
        &labels,
    );
    let oldest = gauge(
        registry,
        "gatehouse_consumer_oldest_pending_age_seconds",
        "Age of a consumer's oldest unacknowledged message (0 when it is caught up)",
        &labels,
    );
    for c in &consumers {
        let l = [c.stream.as_str(), c.name.as_str()];
        pending.with_label_values(&l).set(c.pending as f64);
        unacked.with_label_values(&l).set(c.ack_pending as f64);
        redelivered.with_label_values(&l).set(c.redelivered as f64);
        oldest
            .with_label_values(&l)
            .set(c.oldest_pending_age.map_or(0.0, |a| a.as_secs_f64()));
    }
    let letters = gauge(
        registry,
        "gatehouse_dead_letters",
        "Messages parked in the dead-letter stream, by the consumer that gave up on them",
        &["consumer"],
    );
    for (consumer, count) in dead {
        letters
            .with_label_values(&[consumer.as_str()])
            .set(count as f64);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_events::envelope::RejectionCode;

    fn decision_op() -> &'static Operation {
        crate::api::operation(Kind::Command, "decision.evaluate").expect("declared")
    }

    fn text() -> String {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&PROCESS.registry.gather(), &mut text)
            .unwrap();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn an_operation_is_counted_by_its_outcome_with_its_latency() {
        let op = decision_op();
        record(
            op,
            &Err(Rejection::new(RejectionCode::PolicyTimeout, "slow")),
            Duration::from_millis(3),
        );
        let text = text();
        assert!(
            text.contains(
                "gatehouse_operations_total{kind=\"command\",operation=\"decision.evaluate\",outcome=\"policy_timeout\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains("gatehouse_operation_duration_seconds_bucket{kind=\"command\",operation=\"decision.evaluate\",outcome=\"policy_timeout\",le=\"0.005\"}"),
            "{text}"
        );
        assert!(
            text.contains("gatehouse_decision_timeouts_total "),
            "{text}"
        );
        assert!(
            text.contains("gatehouse_decisions_total{outcome=\"policy_timeout\"}"),
            "{text}"
        );
    }

    #[test]
    fn a_decision_is_counted_by_what_it_decided() {
        record(
            decision_op(),
            &Ok(serde_json::json!({"decision": "quarantine"})),
            Duration::from_millis(1),
        );
        assert!(text().contains("gatehouse_decisions_total{outcome=\"quarantine\"}"));
    }

    #[test]
    fn every_flag_of_a_batch_is_counted() {
        let op = crate::api::operation(Kind::Query, "flag.evaluate_batch").expect("declared");
        let before = PROCESS
            .flag_evaluations
            .with_label_values(&["batch-flag"])
            .get();
        record(
            op,
            &Ok(serde_json::json!([{"flag": "batch-flag"}, {"flag": "batch-flag"}])),
            Duration::from_millis(1),
        );
        let after = PROCESS
            .flag_evaluations
            .with_label_values(&["batch-flag"])
            .get();
        assert_eq!(after - before, 2);
    }
}
