//! Typed settings for every role, read from the environment with documented defaults.

use std::time::Duration;

use gatehouse_events::subjects;

use crate::api::roles::Grants;

/// Everything a Gatehouse process needs to know, one per process.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`: the Postgres database holding the event store and read models.
    pub database_url: String,
    /// `NATS_URL`: one or more comma-separated NATS server URLs.
    pub nats_url: String,
    /// `NATS_USER` / `NATS_PASSWORD`: the credentials (async-nats ignores credentials in URLs).
    pub nats_user: Option<String>,
    pub nats_password: Option<String>,
    /// `GATEHOUSE_NAMESPACE`: prefix of every subject and stream (default `gatehouse`).
    pub namespace: String,
    /// `GATEHOUSE_DB_POOL`: connections per pool (default 16).
    pub db_pool_size: usize,
    /// `GATEHOUSE_REQUEST_TIMEOUT_MS`: how long a client waits for a reply (default 10 s).
    pub request_timeout: Duration,
    /// `GATEHOUSE_MAX_INFLIGHT`: concurrent requests one gateway instance handles (default 256).
    pub max_inflight: usize,
    /// `GATEHOUSE_EVENTS_DUPLICATE_WINDOW_S`: the events stream's dedupe window (default 600 s).
    pub events_duplicate_window: Duration,
    /// `GATEHOUSE_HTTP_ADDR`: where the HTTP API listens (default `127.0.0.1:8080`).
    pub http_addr: String,
    /// `GATEHOUSE_HTTP_TIMEOUT_MS`: how long the HTTP adapter works on one request before it
    /// answers 503 `unavailable` (default 30 s).
    pub http_timeout: Duration,
    /// `GATEHOUSE_ADMIN_USER`: the first admin, granted `admin` at start-up while nobody holds
    /// it (default: none; an operator on Gatehouse's own account can always grant).
    pub admin_user: Option<String>,
    /// `GATEHOUSE_ROLES`: grants seeded at start-up, each once, `user=role+role,...`, or
    /// `development` for [`DEVELOPMENT_GRANTS`](crate::api::roles::DEVELOPMENT_GRANTS) (what
    /// `scripts/lib.sh` sets with its own nats-server). Default: none, so a client-account user
    /// may do nothing until an admin grants a role (`access.grant`).
    pub grants: Grants,
}

/// Where the HTTP API listens unless `GATEHOUSE_HTTP_ADDR` says otherwise.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

/// How long the HTTP adapter works on a request unless `GATEHOUSE_HTTP_TIMEOUT_MS` says otherwise.
pub const DEFAULT_HTTP_TIMEOUT_MS: u64 = 30_000;

impl Settings {
    /// Reads the settings from the environment; `DATABASE_URL` and `NATS_URL` are required.
    pub fn from_env() -> Result<Self, SettingsError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let required = |k: &'static str| var(k).ok_or(SettingsError::Missing(k));
        let number = |k: &'static str, default: u64| -> Result<u64, SettingsError> {
            var(k).map_or(Ok(default), |v| {
                v.parse().map_err(|_| SettingsError::Invalid(k, v))
            })
        };
        let namespace =
            var("GATEHOUSE_NAMESPACE").unwrap_or_else(|| subjects::DEFAULT_NAMESPACE.into());
        if !subjects::is_valid_namespace(&namespace) {
            return Err(SettingsError::Invalid("GATEHOUSE_NAMESPACE", namespace));
        }
        Ok(Settings {
            database_url: required("DATABASE_URL")?,
            nats_url: required("NATS_URL")?,
            nats_user: var("NATS_USER"),
            nats_password: var("NATS_PASSWORD"),
            namespace,
            db_pool_size: number("GATEHOUSE_DB_POOL", 16)? as usize,
            request_timeout: Duration::from_millis(number("GATEHOUSE_REQUEST_TIMEOUT_MS", 10_000)?),
            max_inflight: number("GATEHOUSE_MAX_INFLIGHT", 256)? as usize,
            events_duplicate_window: Duration::from_secs(number(
                "GATEHOUSE_EVENTS_DUPLICATE_WINDOW_S",
                600,
            )?),
            admin_user: var("GATEHOUSE_ADMIN_USER"),
            http_addr: var("GATEHOUSE_HTTP_ADDR").unwrap_or_else(|| DEFAULT_HTTP_ADDR.into()),
            http_timeout: match number("GATEHOUSE_HTTP_TIMEOUT_MS", DEFAULT_HTTP_TIMEOUT_MS)? {
                0 => {
                    return Err(SettingsError::Invalid(
                        "GATEHOUSE_HTTP_TIMEOUT_MS",
                        "0".into(),
                    ))
                }
                ms => Duration::from_millis(ms),
            },
            grants: match var("GATEHOUSE_ROLES") {
                Some(raw) => Grants::parse(&raw)
                    .map_err(|why| SettingsError::Invalid("GATEHOUSE_ROLES", why))?,
                None => Grants::default(),
            },
        })
    }

    /// Settings with defaults for the given URLs (tests change only what they need).
    pub fn new(
        database_url: impl Into<String>,
        nats_url: impl Into<String>,
        namespace: impl Into<String>,
    ) -> Self {
        Settings {
            database_url: database_url.into(),
            nats_url: nats_url.into(),
            nats_user: None,
            nats_password: None,
            namespace: namespace.into(),
            db_pool_size: 16,
            request_timeout: Duration::from_secs(10),
            max_inflight: 256,
            events_duplicate_window: Duration::from_secs(600),
            admin_user: None,
            http_addr: DEFAULT_HTTP_ADDR.into(),
            http_timeout: Duration::from_millis(DEFAULT_HTTP_TIMEOUT_MS),
            grants: Grants::default(),
        }
    }
}

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A required variable is not set.
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    /// A variable holds a value of the wrong form.
    #[error("environment variable {0} has an invalid value `{1}`")]
    Invalid(&'static str, String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::roles::Role;

    #[test]
    fn nobody_holds_a_role_or_delegates_unless_configured() {
        let s = Settings::new("postgres://x", "nats://x", "gatehouse");
        assert_eq!(s.grants, Grants::default());
        assert!(s.admin_user.is_none());
        for role in [Role::Viewer, Role::Author, Role::Approver, Role::Admin] {
            assert!(!s.grants.holds("alice", role), "{role:?}");
        }
    }
}
