//! `gatehouse doctor`: every check an operator runs after a deploy, each printed with `ok` or
//! `FAIL` and what is wrong; the exit code is 1 when any failed.
//!
//! In order: Postgres and migrations; NATS and every stream as configured; every durable
//! consumer the roles create, as they create it (missing ones and drift named); permissions
//! (the gateway answers on its service subjects; a client-account user cannot read the events
//! stream); queue health against thresholds (oldest pending age, redeliveries, relay lag,
//! dead letters); and the synthetic journey ([`super::journey`]).

use std::time::Duration;

use async_nats::jetstream;
use gatehouse_events::subjects;
use serde::Serialize;

use super::expected::{self, RoleSettings};
use super::ready::{self, Check};
use super::{journey, queues};
use crate::client::Client;
use crate::settings::Settings;

/// When a queue is unhealthy.
#[derive(Debug, Clone)]
pub struct Thresholds {
    /// A consumer's oldest unacknowledged message older than this fails (default 300 s).
    pub oldest_pending: Duration,
    /// More unacknowledged redelivered messages than this fails (default 10).
    pub redeliveries: u64,
    /// More dead letters than this fails, per consumer (default 0).
    pub dead_letters: u64,
    /// The outbox's oldest unpublished event older than this fails (default 60 s).
    pub relay_lag: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            oldest_pending: Duration::from_secs(300),
            redeliveries: 10,
            dead_letters: 0,
            relay_lag: Duration::from_secs(60),
        }
    }
}

/// What the doctor checks against.
#[derive(Debug, Clone)]
pub struct Options {
    pub roles: RoleSettings,
    pub thresholds: Thresholds,
    /// Run the synthetic journey as this actor; `None` skips it.
    pub journey_actor: Option<String>,
    /// How long the journey waits for each eventual step.
    pub journey_deadline: Duration,
    /// A user of the `CLIENTS` account and its password: it must not read the events stream.
    pub client_user: Option<(String, String)>,
}

/// Every check's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Self {
        Report {
            ok: checks.iter().all(|c| c.ok),
            checks,
        }
    }

    /// One line per check: `ok   name: detail` or `FAIL name: detail`, then a summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            out.push_str(&format!("{mark} {}: {}\n", c.name, c.detail));
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        if failed == 0 {
            out.push_str(&format!("all {} checks passed\n", self.checks.len()));
        } else {
            out.push_str(&format!(
                "{failed} of {} checks failed\n",
                self.checks.len()
            ));
        }
        out
    }
}

/// Runs every check against the system `settings` name.
pub async fn run(settings: &Settings, options: &Options) -> Report {
    let mut checks = match crate::db::pool(&settings.database_url, 2) {
        Ok(pg) => {
            let mut checks = ready::database(&pg).await;
            checks.push(relay_lag(&pg, &options.thresholds).await);
            checks
        }
        Err(e) => vec![Check::failed("postgres", e.to_string())],
    };
    let nats = match crate::broker::connect(settings, "doctor").await {
        Ok(nats) => nats,
        Err(e) => {
            let cause = std::error::Error::source(&e).map(ToString::to_string);
            checks.push(Check::failed(
                "nats",
                format!("{e}: {}", cause.unwrap_or_default()),
            ));
            return Report::new(checks);
        }
    };
    checks.push(ready::nats(&nats));
    let js = crate::broker::jetstream(&nats);
    checks.extend(ready::streams(&js, &expected::streams(settings)).await);
    checks.extend(broker_checks(&js, settings, options).await);
    let client = Client::new(nats, settings.namespace.clone(), settings.request_timeout);
    checks.push(gateway_answers(&client).await);
    checks.push(client_account_is_confined(settings, options).await);
    if let Some(actor) = &options.journey_actor {
        checks.extend(journey::run(&client, actor, options.journey_deadline).await);
    }
    Report::new(checks)
}

/// Consumers as configured, their health, and dead letters.
async fn broker_checks(
    js: &jetstream::Context,
    settings: &Settings,
    options: &Options,
) -> Vec<Check> {
    let ns = &settings.namespace;
    let actual = match queues::consumers(js, ns).await {
        Ok(actual) => actual,
        Err(e) => return vec![Check::failed("consumers", format!("cannot list them: {e}"))],
    };
    let mut checks = Vec::new();
    for want in expected::consumers(settings, &options.roles) {
        let name = format!("consumer {}", want.name);
        let found = actual
            .iter()
            .find(|c| c.stream == want.stream && c.name == want.name);
        let Some(found) = found else {
            checks.push(Check::failed(
                name,
                format!(
                    "missing on {} (the {} role creates it at start)",
                    want.stream, want.role
                ),
            ));
            continue;
        };
        let drift = expected::consumer_drift(&want, &found.config);
        if !drift.is_empty() {
            checks.push(Check::failed(name, drift.join("; ")));
            continue;
        }
        checks.push(health(name, found, &options.thresholds));
    }
    checks.push(match queues::dead_letters(js, ns).await {
        Ok(letters) => dead_letters(ns, &letters, options.thresholds.dead_letters),
        Err(e) => Check::failed("dead letters", format!("cannot read them: {e}")),
    });
    checks
}

/// A consumer's queue against the thresholds.
fn health(name: String, c: &queues::ConsumerState, t: &Thresholds) -> Check {
    let age = c.oldest_pending_age.unwrap_or_default();
    let state = format!(
        "as configured; pending {}, unacknowledged {}, redelivered {}, oldest pending {} s",
        c.pending,
        c.ack_pending,
        c.redelivered,
        age.as_secs()
    );
    if age > t.oldest_pending {
        Check::failed(
            name,
            format!(
                "{state}: older than {} s (stuck?)",
                t.oldest_pending.as_secs()
            ),
        )
    } else if c.redelivered > t.redeliveries {
        Check::failed(
            name,
            format!("{state}: more redeliveries than {}", t.redeliveries),
        )
    } else {
        Check::ok(name, state)
    }
}

/// The dead-letter depth per consumer against the threshold.
fn dead_letters(ns: &str, letters: &[(String, u64)], threshold: u64) -> Check {
    let over: Vec<String> = letters
        .iter()
        .filter(|(_, n)| *n > threshold)
        .map(|(consumer, n)| format!("{n} on {}", subjects::dead_letter(ns, consumer)))
        .collect();
    let total: u64 = letters.iter().map(|(_, n)| n).sum();
    if over.is_empty() {
        Check::ok(
            "dead letters",
            format!("{total} in {}", subjects::dead_letter_stream(ns)),
        )
    } else {
        Check::failed(
            "dead letters",
            format!(
                "{} (threshold {threshold} per consumer; see docs/runbook.md, Dead letters)",
                over.join(", ")
            ),
        )
    }
}

/// Events stored and not yet relayed, against the threshold.
async fn relay_lag(pg: &deadpool_postgres::Pool, t: &Thresholds) -> Check {
    let row = match pg.get().await {
        Ok(client) => client
            .query_one(
                "SELECT count(*), coalesce(extract(epoch FROM now() - min(recorded_at)), 0)::float8 \
                 FROM event_outbox WHERE published_at IS NULL",
                &[],
            )
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match row {
        Ok(row) => {
            let (waiting, age): (i64, f64) = (row.get(0), row.get(1));
            let detail = format!("{waiting} events unpublished, oldest {age:.0} s");
            if age > t.relay_lag.as_secs_f64() {
                Check::failed(
                    "relay",
                    format!(
                        "{detail}: older than {} s (is the relay running?)",
                        t.relay_lag.as_secs()
                    ),
                )
            } else {
                Check::ok("relay", detail)
            }
        }
        Err(e) => Check::failed("relay", format!("cannot read the outbox: {e}")),
    }
}

/// The gateway answers a query on its service subject.
async fn gateway_answers(client: &Client) -> Check {
    let query = gatehouse_events::policy::ListPolicies::default();
    let name = "permissions: gateway";
    let subject = subjects::query(client.namespace(), "policy", "list");
    match client
        .query::<_, serde_json::Value>("policy", "list", &query)
        .await
    {
        Ok(_) => Check::ok(name, format!("{subject} answers")),
        // Refused is an answer too: the gateway is there, this user lacks a role.
        Err(crate::client::ClientError::Rejected(r)) => {
            Check::ok(name, format!("{subject} answers ({})", r.code.as_str()))
        }
        Err(e) => Check::failed(name, format!("{subject}: {e}")),
    }
}

/// A `CLIENTS` user cannot read the events stream through JetStream.
async fn client_account_is_confined(settings: &Settings, options: &Options) -> Check {
    let name = "permissions: client account";
    let Some((user, password)) = &options.client_user else {
        return Check::ok(
            name,
            "skipped: set GATEHOUSE_DOCTOR_CLIENT_USER and GATEHOUSE_DOCTOR_CLIENT_PASSWORD",
        );
    };
    // Not broker::connect: its callback would log the refusal this check provokes.
    let urls: Vec<&str> = settings.nats_url.split(',').map(str::trim).collect();
    let connected =
        async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            .name("gatehouse-doctor-probe")
            .connect(urls.as_slice())
            .await;
    let nats = match connected {
        Ok(nats) => nats,
        Err(e) => return Check::failed(name, format!("cannot connect as {user}: {e}")),
    };
    let stream = subjects::events_stream(&settings.namespace);
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(nats.clone());
    let read = js.get_stream(&stream).await;
    let _ = nats.drain().await;
    match read {
        Ok(_) => Check::failed(
            name,
            format!(
                "{user} can read stream {stream}: the CLIENTS account must not see the event log"
            ),
        ),
        Err(_) => Check::ok(name, format!("{user} cannot read stream {stream}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_is_named_by_its_subject() {
        let check = dead_letters("gatehouse", &[("gatehouse_indexer".into(), 1)], 0);
        assert!(!check.ok);
        assert!(
            check
                .detail
                .starts_with("1 on gatehouse.dlq.gatehouse_indexer"),
            "{check:?}"
        );
        assert!(dead_letters("gatehouse", &[], 0).ok);
    }

    #[test]
    fn the_report_says_how_many_checks_failed() {
        let report = Report::new(vec![
            Check::ok("postgres", "answers"),
            Check::failed("consumer x", "missing"),
        ]);
        assert!(!report.ok);
        assert_eq!(
            report.text(),
            "ok   postgres: answers\nFAIL consumer x: missing\n1 of 2 checks failed\n"
        );
    }
}
