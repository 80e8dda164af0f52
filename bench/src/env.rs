//! The isolated system a benchmark runs against: a database of its own
//! (`bench_<scenario>_<unix-ts>_<rand>`, created on the server of `DATABASE_URL`, migrated,
//! dropped at the end unless `--keep`), a namespace of its own (`bench_<unix-ts>_<rand>`:
//! subjects, streams, consumers), and — for scenarios that need them — the gateway, the relay
//! and every projector running in this process (plus, for a scenario that asks, an evaluation
//! worker and the notifier), stopped gracefully at the end.
//!
//! The namespace's streams are deleted at the end too, unless `--keep`, as the `admin` NATS
//! user (`NATS_ADMIN_USER`): the service's own user may not delete streams.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use gatehouse_events::subjects;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use gatehouse::client::Client;
use gatehouse::settings::Settings;
use gatehouse::{broker, db, gateway, notifier, relay, roles, worker, RoleError};

/// How long a role may take to stop after it was told to.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// One running role.
struct Role {
    name: &'static str,
    task: JoinHandle<Result<(), RoleError>>,
    stop: CancellationToken,
}

impl Role {
    /// Tells the role to stop and waits until it did.
    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        match tokio::time::timeout(STOP_DEADLINE, self.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => {
                Err(anyhow::Error::new(e).context(format!("the {} role failed", self.name)))
            }
            Ok(Err(e)) => anyhow::bail!("the {} role panicked: {e}", self.name),
            Err(_) => anyhow::bail!(
                "the {} role did not stop within {STOP_DEADLINE:?}",
                self.name
            ),
        }
    }
}

/// A Gatehouse of the bench's own.
pub struct System {
    /// Settings pointing at the bench's database and namespace.
    pub settings: Settings,
    /// The bench database's name.
    pub database: String,
    /// A connection to the bench database for the scenario's own SQL.
    pub db: tokio_postgres::Client,
    /// A NATS connection of the bench's (not one of the load clients).
    pub nats: async_nats::Client,
    admin_url: String,
    roles: Vec<Role>,
    stop: CancellationToken,
    keep: bool,
}

impl System {
    /// Creates and migrates the database and picks the namespace; starts no role.
    pub async fn create(base: &Settings, scenario: &str, keep: bool) -> anyhow::Result<System> {
        let stamp = format!(
            "{}_{:04x}",
            chrono::Utc::now().timestamp(),
            rand::random::<u16>()
        );
        let database = format!("bench_{scenario}_{stamp}");
        let admin_url = base.database_url.clone();
        admin_sql(&admin_url, &format!("CREATE DATABASE {database}"))
            .await
            .with_context(|| format!("cannot create database {database}"))?;
        let mut settings = base.clone();
        settings.database_url = with_database(&admin_url, &database);
        settings.namespace = format!("bench_{stamp}");
        let system = async {
            db::migrate(&settings.database_url).await?;
            let (db, conn) = tokio_postgres::connect(&settings.database_url, NoTls).await?;
            tokio::spawn(conn);
            let nats = broker::connect(&settings, "bench").await?;
            anyhow::Ok((db, nats))
        }
        .await;
        let (db, nats) = match system {
            Ok(v) => v,
            Err(e) => {
                drop_database(&admin_url, &database, keep).await;
                return Err(e.context(format!("cannot set up database {database}")));
            }
        };
        Ok(System {
            settings,
            database,
            db,
            nats,
            admin_url,
            roles: Vec::new(),
            stop: CancellationToken::new(),
            keep,
        })
    }

    /// Starts the gateway, the relay and every projector, and waits until the gateway answers.
    pub async fn start_roles(&mut self) -> anyhow::Result<()> {
        let s = self.settings.clone();
        self.spawn("gateway", |stop| gateway::run(s, stop));
        self.start_downstream();
        let client = self.client("bench-probe").await?;
        let query = gatehouse_events::policy::ListPolicies::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            self.check_roles()?;
            let answer = client
                .query::<_, serde_json::Value>("policy", "list", &query)
                .await;
            match answer {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    anyhow::bail!("the bench gateway never answered: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Starts what runs after a commit: the relay and the projectors.
    pub fn start_downstream(&mut self) {
        let s = self.settings.clone();
        self.spawn("relay", |stop| relay::run(s, stop));
        let s = self.settings.clone();
        self.spawn("projector", |stop| roles::projector(s, None, stop));
    }

    /// Starts an evaluation worker (`gatehouse worker`, its settings from the environment).
    pub fn start_worker(&mut self) {
        let s = self.settings.clone();
        self.spawn("worker", |stop| worker::run(s, stop));
    }

    /// Starts the notifier, which announces promotions to external subscribers.
    pub fn start_notifier(&mut self) {
        let s = self.settings.clone();
        self.spawn("notifier", |stop| notifier::run(s, stop));
    }

    /// Stops every role but the gateway gracefully (commits then pile up in the outbox).
    pub async fn stop_downstream(&mut self) -> anyhow::Result<()> {
        let (downstream, rest) = std::mem::take(&mut self.roles)
            .into_iter()
            .partition(|r| r.name != "gateway");
        self.roles = rest;
        for role in downstream {
            role.stop().await?;
        }
        Ok(())
    }

    fn spawn<F>(&mut self, name: &'static str, role: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = Result<(), RoleError>> + Send + 'static,
    {
        let stop = self.stop.child_token();
        self.roles.push(Role {
            name,
            task: tokio::spawn(role(stop.clone())),
            stop,
        });
    }

    /// Fails if a role stopped on its own (it would make every figure meaningless).
    pub fn check_roles(&self) -> anyhow::Result<()> {
        match self.roles.iter().find(|r| r.task.is_finished()) {
            Some(role) => anyhow::bail!("the {} role stopped during the benchmark", role.name),
            None => Ok(()),
        }
    }

    /// A Gatehouse client on a NATS connection of its own.
    pub async fn client(&self, name: &str) -> anyhow::Result<Client> {
        let nats = broker::connect(&self.settings, name).await?;
        Ok(Client::new(
            nats,
            self.settings.namespace.clone(),
            self.settings.request_timeout,
        ))
    }

    /// A plain connection to the bench database.
    pub async fn connect_db(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(&self.settings.database_url, NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Waits until the relay published every stored event and every projector applied every
    /// event it reads; returns how long that took (the backlog a load left behind).
    pub async fn settle(&self, deadline: Duration) -> anyhow::Result<Duration> {
        let started = tokio::time::Instant::now();
        loop {
            self.check_roles()?;
            let pending: i64 = self
                .db
                .query_one(
                    "SELECT count(*) FROM event_outbox WHERE published_at IS NULL",
                    &[],
                )
                .await?
                .get(0);
            let behind = self.projectors_behind().await?;
            if pending == 0 && behind.is_empty() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > deadline {
                anyhow::bail!(
                    "the system did not catch up within {deadline:?}: {pending} events \
                     unpublished, projectors behind: {behind:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The read models with events of their interest past their checkpoint.
    async fn projectors_behind(&self) -> anyhow::Result<Vec<&'static str>> {
        let mut behind = Vec::new();
        for model in gatehouse_projections::read_models() {
            let types = model.interest().aggregate_types().map(<[_]>::to_vec);
            let row = self
                .db
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM events
                      WHERE global_position > coalesce((SELECT last_position
                              FROM projector_checkpoints WHERE projector = $1), 0)
                        AND ($2::text[] IS NULL OR aggregate_type = ANY($2)))",
                    &[&model.name(), &types],
                )
                .await?;
            if row.get::<_, bool>(0) {
                behind.push(model.name());
            }
        }
        Ok(behind)
    }

    /// Stops the roles gracefully, then drops the database unless it is kept.
    pub async fn stop(self) {
        self.stop.cancel();
        for role in self.roles {
            if let Err(e) = role.stop().await {
                eprintln!("bench: {e:#}");
            }
        }
        drop(self.db);
        let _ = self.nats.drain().await;
        drop_database(&self.admin_url, &self.database, self.keep).await;
        delete_streams(&self.settings, self.keep).await;
    }
}

/// Deletes the namespace's streams unless they are kept (when the environment names an admin
/// user, as the scripts do).
async fn delete_streams(settings: &Settings, keep: bool) {
    if keep {
        eprintln!(
            "bench: kept the streams of namespace {}",
            settings.namespace
        );
    } else if let Err(e) = broker::delete_streams(settings, streams(&settings.namespace)).await {
        eprintln!(
            "bench: could not delete the streams of {}: {e:#}",
            settings.namespace
        );
    }
}

/// Every stream a benchmark may make in namespace `ns`: the service's, and the scratch streams
/// of the raw limits.
fn streams(ns: &str) -> impl Iterator<Item = String> {
    let scratch = [
        super::delivery::send::scratch_stream_name(ns),
        super::ingest::raw::scratch_stream_name(ns),
    ];
    subjects::namespace_streams(ns).into_iter().chain(scratch)
}

async fn drop_database(admin_url: &str, database: &str, keep: bool) {
    if keep {
        eprintln!("bench: kept database {database}");
        return;
    }
    let sql = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
    if let Err(e) = admin_sql(admin_url, &sql).await {
        eprintln!("bench: could not drop database {database}: {e:#}");
    }
}

async fn admin_sql(admin_url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(admin_url, NoTls).await?;
    let conn = tokio::spawn(conn);
    client.batch_execute(sql).await?;
    drop(client);
    let _ = conn.await;
    Ok(())
}

/// `url` with its database replaced by `database` (URL or `key=value` form).
fn with_database(url: &str, database: &str) -> String {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return format!("{url} dbname={database}");
    }
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5/gatehouse?sslmode=disable", "b"),
            "postgres://u@h:5/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:5", "b"), "postgres://u@h:5/b");
    }

    #[test]
    fn a_key_value_string_gets_a_dbname() {
        assert_eq!(
            with_database("host=h user=u", "b"),
            "host=h user=u dbname=b"
        );
    }
}
