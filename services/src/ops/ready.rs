//! Readiness: Postgres answers, every migration this build knows is applied, NATS is
//! connected, and every stream the system needs exists with its expected configuration.
//! `GET /readyz` answers these; `gatehouse doctor` starts with them.

use async_nats::jetstream::{self, stream};
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::{json, Value};

use super::expected;
use super::queues::existing_stream;

/// One check's verdict: its name (`postgres`, `migrations`, `nats`, `stream <NAME>`, ...),
/// whether it holds, and what was found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn failed(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            ok: false,
            detail: detail.into(),
        }
    }

    /// As an entry of a rejection's `details`.
    pub fn to_json(&self) -> Value {
        json!({"check": self.name, "ok": self.ok, "message": self.detail})
    }
}

/// Postgres answers, and every migration of this build is applied (the missing ones named).
pub async fn database(pg: &Pool) -> Vec<Check> {
    let client = match pg.get().await {
        Ok(client) => client,
        Err(e) => {
            return vec![
                Check::failed("postgres", format!("cannot connect: {e}")),
                Check::failed("migrations", "unknown: Postgres does not answer"),
            ]
        }
    };
    let mut checks = vec![Check::ok("postgres", "answers")];
    let applied = client
        .query("SELECT version FROM refinery_schema_history", &[])
        .await
        .map(|rows| rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>());
    checks.push(match applied {
        Ok(applied) => migrations(&applied),
        Err(e) => Check::failed("migrations", format!("cannot read the history: {e}")),
    });
    checks
}

/// Which of this build's migrations are missing from `applied`.
fn migrations(applied: &[i32]) -> Check {
    let missing: Vec<String> = crate::db::expected_migrations()
        .into_iter()
        .filter(|v| !applied.contains(v))
        .map(|v| format!("V{v}"))
        .collect();
    let latest = crate::db::latest_migration();
    if missing.is_empty() {
        Check::ok("migrations", format!("all applied, up to V{latest}"))
    } else {
        Check::failed(
            "migrations",
            format!(
                "not applied: {} (run `gatehouse migrate`)",
                missing.join(", ")
            ),
        )
    }
}

/// The connection to NATS is up.
pub fn nats(client: &async_nats::Client) -> Check {
    match client.connection_state() {
        async_nats::connection::State::Connected => Check::ok("nats", "connected"),
        other => Check::failed("nats", format!("not connected ({other})")),
    }
}

/// Each stream in `expected` exists with its configuration; a difference is named.
pub async fn streams(js: &jetstream::Context, expected: &[stream::Config]) -> Vec<Check> {
    let mut checks = Vec::new();
    for want in expected {
        let name = format!("stream {}", want.name);
        let found = match existing_stream(js, &want.name).await {
            Ok(Some(mut stream)) => stream.info().await.map(|i| i.config.clone()).ok(),
            Ok(None) => {
                checks.push(Check::failed(
                    name,
                    "missing (a role creates it at start: run `gatehouse up`)",
                ));
                continue;
            }
            Err(e) => {
                checks.push(Check::failed(name, format!("cannot read it: {e}")));
                continue;
            }
        };
        let Some(actual) = found else {
            checks.push(Check::failed(name, "cannot read its configuration"));
            continue;
        };
        let drift = expected::stream_drift(want, &actual);
        checks.push(if drift.is_empty() {
            Check::ok(name, "as configured")
        } else {
            Check::failed(name, drift.join("; "))
        });
    }
    checks
}

/// Every readiness check of `app`: the database, and NATS with the streams when `app` has a
/// broker connection (else `nats` fails: the process was started without one).
pub async fn checks(app: &crate::api::App) -> Vec<Check> {
    let mut checks = database(&app.pg).await;
    match &app.broker {
        Some(broker) => {
            let nats = nats(&broker.client);
            let connected = nats.ok;
            checks.push(nats);
            if connected {
                let js = crate::broker::jetstream(&broker.client);
                checks.extend(streams(&js, &broker.streams).await);
            }
        }
        None => checks.push(Check::failed("nats", "this process has no NATS connection")),
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_migration_is_named() {
        let all = crate::db::expected_migrations();
        let some: Vec<i32> = all.iter().copied().filter(|v| *v != 3).collect();
        let check = migrations(&some);
        assert!(!check.ok);
        assert!(check.detail.starts_with("not applied: V3 "), "{check:?}");
        assert!(migrations(&all).ok);
    }
}
