//! The flag monitor: counts the outcomes services report (`<ns>.outcomes.flag.<flag>`, stream
//! `<NS>_OUTCOMES`) per flag and window, and rolls a failing rollout back to 0%.
//!
//! Each fetched batch is counted in one Postgres transaction into `flag_outcome_windows`
//! (successes, errors, summed durations per `(flag, window_start, window_secs)`), together with
//! the monitor's checkpoint (the outcomes stream's sequence), so a redelivered outcome is never
//! counted twice; outcomes are not stored one by one. A window is the flag's
//! `auto_rollback.window_secs` (60 s without one), aligned to the epoch, of the outcomes'
//! publish times. After counting, each flag in the batch with an `auto_rollback`, above 0% and
//! neither stopped nor archived, is checked on its latest window: with at least `min_volume`
//! outcomes and an error rate above `max_error_rate` the monitor sends `flag.auto_rollback`
//! (command id `auto_rollback:<flag>:<flag sequence>`: once per rollout), which records the
//! rollout at 0% with `triggered_by: auto_rollback` and the numbers in the reason. With fewer
//! outcomes it holds: it never advances a rollout.
//!
//! It runs on the consumer runtime: an undecodable outcome is dead-lettered; an outage is
//! retried without limit.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::Message;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use gatehouse_events::envelope::RejectionCode;
use gatehouse_events::flag::{AutoRollbackFlag, FlagOutcome, FlagState};
use gatehouse_events::subjects;
use gatehouse_projections::consumer::{self, ConsumerSettings, Durable, Handler, Health, Outcome};
use gatehouse_projections::dead_letter;
use tokio_postgres::types::Json;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ClientError, Sender};
use crate::settings::Settings;
use crate::{broker, RoleError};

/// The window of flags without an `auto_rollback`.
pub const DEFAULT_WINDOW_SECS: u64 = 60;
/// Outcomes per handler call.
const BATCH: usize = 500;
/// Who the monitor's commands are recorded as.
const ACTOR: &str = "gatehouse";

/// The flag monitor's durable consumer of every flag outcome.
pub fn durable(ns: &str) -> Durable {
    Durable {
        stream: subjects::outcomes_stream(ns),
        config: pull::Config {
            durable_name: Some(subjects::projector_consumer(ns, "flag_monitor")),
            filter_subject: subjects::all_outcomes(ns),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            max_deliver: consumer::UNLIMITED_DELIVERIES,
            ack_wait: consumer::DEFAULT_ACK_WAIT,
            ..Default::default()
        },
    }
}

/// Runs the flag monitor until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    let nats = broker::connect(&settings, "flag-monitor").await?;
    let js = broker::jetstream(&nats);
    broker::ensure_outcomes_stream(&js, &settings).await?;
    let ns = settings.namespace.clone();
    dead_letter::ensure_stream(&js, &ns)
        .await
        .map_err(RoleError::broker("create the dead-letter stream"))?;
    let durable = durable(&ns);
    let name = durable.name().to_owned();
    let mut config = ConsumerSettings::new(name.clone(), ns.clone());
    config.batch = BATCH;
    config.ack_wait = durable.config.ack_wait;
    let consumer = js
        .get_stream(&durable.stream)
        .await
        .map_err(RoleError::broker("look up the outcomes stream"))?
        .create_consumer(durable.config)
        .await
        .map_err(RoleError::broker("create the flag monitor's consumer"))?;
    let pg = crate::db::pool(&settings.database_url, settings.db_pool_size.clamp(1, 4))?;
    let monitor = Monitor {
        pg,
        client: Client::new(nats.clone(), ns, settings.request_timeout),
        name,
    };
    consumer::run(consumer, js, config, Health::default(), monitor, shutdown).await;
    let _ = nats.drain().await;
    Ok(())
}

struct Monitor {
    pg: Pool,
    client: Client,
    name: String,
}

/// One decoded outcome with where and when it was published.
struct Reported {
    stream_seq: i64,
    at: DateTime<Utc>,
    outcome: FlagOutcome,
}

#[derive(Default)]
struct Counts {
    successes: i64,
    errors: i64,
    duration_ms: f64,
}

fn window_secs(state: Option<&FlagState>) -> u64 {
    state
        .and_then(|s| s.rollout.auto_rollback.as_ref())
        .map_or(DEFAULT_WINDOW_SECS, |a| a.window_secs.max(1))
}

fn window_start(at: DateTime<Utc>, secs: u64) -> DateTime<Utc> {
    let secs = secs as i64;
    let t = at.timestamp();
    DateTime::from_timestamp(t - t.rem_euclid(secs), 0).unwrap_or(at)
}

fn db_failure(doing: &str, e: &tokio_postgres::Error) -> Outcome {
    match crate::store::failure(e) {
        crate::store::Failure::Unavailable => Outcome::Transient(format!("{doing}: {e}")),
        _ => Outcome::Poison(format!("{doing}: {e}")),
    }
}

fn decode(messages: &[Message]) -> Result<Vec<Reported>, String> {
    messages
        .iter()
        .map(|m| {
            let info = m.info().map_err(|e| format!("no stream info: {e}"))?;
            let outcome: FlagOutcome = serde_json::from_slice(&m.payload)
                .map_err(|e| format!("undecodable outcome: {e}"))?;
            let published = info.published;
            let at = DateTime::from_timestamp(published.unix_timestamp(), published.nanosecond())
                .unwrap_or_else(Utc::now);
            Ok(Reported {
                stream_seq: info.stream_sequence as i64,
                at,
                outcome,
            })
        })
        .collect()
}

#[async_trait]
impl Handler for Monitor {
    async fn handle(&self, messages: &[Message]) -> Outcome {
        let reported = match decode(messages) {
            Ok(r) => r,
            Err(poison) => return Outcome::Poison(poison),
        };
        let keys: Vec<String> = reported
            .iter()
            .map(|r| r.outcome.flag.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let states = match self.count(&reported, &keys).await {
            Ok(states) => states,
            Err(outcome) => return outcome,
        };
        for key in &keys {
            let latest = reported
                .iter()
                .filter(|r| &r.outcome.flag == key)
                .map(|r| r.at)
                .max();
            if let (Some(state), Some(latest)) = (states.get(key), latest) {
                if let Err(outcome) = self.check(state, latest).await {
                    return outcome;
                }
            }
        }
        Outcome::Ack
    }
}

impl Monitor {
    /// Counts the outcomes not counted yet; answers the flags' states (the `flags` read model).
    async fn count(
        &self,
        reported: &[Reported],
        keys: &[String],
    ) -> Result<HashMap<String, FlagState>, Outcome> {
        let mut db = self
            .pg
            .get()
            .await
            .map_err(|e| Outcome::Transient(format!("no database connection: {e}")))?;
        let tx = db
            .transaction()
            .await
            .map_err(|e| db_failure("begin", &e))?;
        let last: i64 = tx
            .query_opt(
                "SELECT last_stream_seq FROM flag_outcome_checkpoint WHERE consumer = $1 FOR UPDATE",
                &[&self.name],
            )
            .await
            .map_err(|e| db_failure("read the checkpoint", &e))?
            .map_or(0, |r| r.get(0));
        let states: HashMap<String, FlagState> = tx
            .query("SELECT state FROM flags WHERE flag_key = ANY($1)", &[&keys])
            .await
            .map_err(|e| db_failure("read the flags", &e))?
            .iter()
            .filter_map(|r| {
                r.try_get::<_, Json<FlagState>>(0)
                    .ok()
                    .map(|Json(s)| (s.flag.clone(), s))
            })
            .collect();
        let mut windows: BTreeMap<(String, DateTime<Utc>, u64), Counts> = BTreeMap::new();
        let mut high = last;
        for r in reported.iter().filter(|r| r.stream_seq > last) {
            high = high.max(r.stream_seq);
            let secs = window_secs(states.get(&r.outcome.flag));
            let counts = windows
                .entry((r.outcome.flag.clone(), window_start(r.at, secs), secs))
                .or_default();
            if r.outcome.success {
                counts.successes += 1;
            } else {
                counts.errors += 1;
            }
            if r.outcome.duration_ms.is_finite() && r.outcome.duration_ms >= 0.0 {
                counts.duration_ms += r.outcome.duration_ms;
            }
        }
        for ((flag, start, secs), c) in &windows {
            let secs = *secs as i32;
            tx.execute(
                "INSERT INTO flag_outcome_windows AS w \
                     (flag_key, window_start, window_secs, successes, errors, duration_ms_sum) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (flag_key, window_start, window_secs) DO UPDATE SET \
                     successes = w.successes + EXCLUDED.successes, errors = w.errors + EXCLUDED.errors, \
                     duration_ms_sum = w.duration_ms_sum + EXCLUDED.duration_ms_sum",
                &[flag, start, &secs, &c.successes, &c.errors, &c.duration_ms],
            )
            .await
            .map_err(|e| db_failure("count outcomes", &e))?;
        }
        if high > last {
            tx.execute(
                "INSERT INTO flag_outcome_checkpoint (consumer, last_stream_seq) VALUES ($1, $2) \
                 ON CONFLICT (consumer) DO UPDATE SET last_stream_seq = EXCLUDED.last_stream_seq",
                &[&self.name, &high],
            )
            .await
            .map_err(|e| db_failure("move the checkpoint", &e))?;
        }
        tx.commit()
            .await
            .map_err(|e| db_failure("commit the counts", &e))?;
        Ok(states)
    }

    /// Rolls `state` back when its window at `latest` breaks its limits.
    async fn check(&self, state: &FlagState, latest: DateTime<Utc>) -> Result<(), Outcome> {
        let Some(limits) = &state.rollout.auto_rollback else {
            return Ok(());
        };
        if state.rollout.percentage == 0.0 || state.emergency_stop.is_some() || state.archived {
            return Ok(());
        }
        let secs = window_secs(Some(state));
        let start = window_start(latest, secs);
        let db = self
            .pg
            .get()
            .await
            .map_err(|e| Outcome::Transient(format!("no database connection: {e}")))?;
        let row = db
            .query_opt(
                "SELECT successes, errors FROM flag_outcome_windows \
                  WHERE flag_key = $1 AND window_start = $2 AND window_secs = $3",
                &[&state.flag, &start, &(secs as i32)],
            )
            .await
            .map_err(|e| db_failure("read the window", &e))?;
        let Some(row) = row else { return Ok(()) };
        let (successes, errors): (i64, i64) = (row.get(0), row.get(1));
        let total = (successes + errors).max(0) as u64;
        let errors = errors.max(0) as u64;
        // Too little data: hold (never advance).
        if total < limits.min_volume || (errors as f64 / total as f64) <= limits.max_error_rate {
            return Ok(());
        }
        let command = AutoRollbackFlag {
            flag: state.flag.clone(),
            window_start: start,
            window_secs: secs,
            total,
            errors,
        };
        let sender = Sender {
            actor: ACTOR.into(),
            command_id: format!("auto_rollback:{}:{}", state.flag, state.sequence),
            correlation_id: None,
        };
        match self
            .client
            .command("flag", "auto_rollback", &sender, command)
            .await
        {
            Ok(done) => {
                tracing::warn!(flag = %state.flag, errors, total, sequence = done.sequence, "flag rolled back to 0%");
                Ok(())
            }
            Err(ClientError::Rejected(r))
                if !matches!(
                    r.code,
                    RejectionCode::Conflict | RejectionCode::Unavailable | RejectionCode::Internal
                ) =>
            {
                tracing::info!(flag = %state.flag, rejection = %r, "auto-rollback refused");
                Ok(())
            }
            Err(e) => Err(Outcome::Transient(format!(
                "cannot send flag.auto_rollback: {e}"
            ))),
        }
    }
}
