//! `spawn_app()`: a Gatehouse of its own for each test — its own database (`t_<uuid>` plus the
//! migrations) and its own namespace (subjects, streams, consumers) — with every role running
//! in-process against the real nats-server and Postgres that `scripts/test.sh` started.
//!
//! `TestApp::client` connects as `gatehouse` (`NATS_USER`), a user of Gatehouse's own account:
//! its requests carry no `Nats-Request-Info`, so the gateway records the envelope's actor as
//! sent, and the domain tests can act as `alice` and `bob` through one connection.
//! [`TestApp::client_as`] connects as a development user of the `CLIENTS` account instead,
//! whose requests are recorded as that user (the identity tests).

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use gatehouse::client::{Client, Sender};
use gatehouse::relay;
use gatehouse::settings::Settings;
use gatehouse_projections::ProjectorSettings;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

/// One running role: its task and the token that stops it gracefully.
pub struct Role {
    pub task: JoinHandle<()>,
    pub stop: CancellationToken,
}

impl Role {
    fn spawn<F>(name: &'static str, f: impl FnOnce(CancellationToken) -> F) -> Role
    where
        F: Future<Output = Result<(), gatehouse::RoleError>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let fut = f(stop.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = fut.await {
                eprintln!("role {name} failed: {e:?}");
            }
        });
        Role { task, stop }
    }

    /// Stops the role gracefully (as by SIGTERM) and waits until it did.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Kills the role where it stands: its task is dropped mid-flight, as by SIGKILL.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub struct TestApp {
    pub settings: Settings,
    pub client: Client,
    pub db: tokio_postgres::Client,
    pub database: String,
    /// The server the database was created on (dropped there at the end).
    pub admin_url: String,
    pub gateway: Option<Role>,
    pub relay: Option<Role>,
    pub projector: Option<Role>,
    pub notifier: Option<Role>,
    pub worker: Option<Role>,
    pub releaser: Option<Role>,
    pub indexer: Option<Role>,
    pub projector_settings: ProjectorSettings,
}

/// The environment `scripts/test.sh` exports.
pub fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with scripts/test.sh"))
}

/// A connection as `user` of `nats.conf`, with the password `scripts/test.sh` exported in
/// `password_var` (and the inbox prefix the user is confined to, if any).
pub async fn connect_as(user: &str, password_var: &str, inbox: Option<&str>) -> async_nats::Client {
    let mut options =
        async_nats::ConnectOptions::with_user_and_password(user.into(), env(password_var));
    if let Some(prefix) = inbox {
        options = options.custom_inbox_prefix(prefix);
    }
    options
        .connect(env("NATS_URL"))
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {e}"))
}

/// A fresh database and namespace with every role running.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with the roles of the development users nats.conf ships seeded (as
/// `scripts/up.sh` does): alice holds every human role, bob is a viewer, svc a service, console
/// a delegate. Without it, only Gatehouse's own connection may call anything (and nothing is
/// stored before the test's first command).
pub async fn spawn_app_with_users() -> TestApp {
    spawn_app_with(|s| s.grants = gatehouse::api::Grants::development()).await
}

/// Like [`spawn_app`], after `configure` adjusted the settings.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let nats_user = std::env::var("NATS_USER").ok();
    let nats_password = std::env::var("NATS_PASSWORD").ok();
    spawn_app_at(&env("DATABASE_URL"), &env("NATS_URL"), |settings| {
        settings.nats_user = nats_user;
        settings.nats_password = nats_password;
        configure(settings)
    })
    .await
}

/// Like [`spawn_app_with`], on the Postgres server of `admin_url` and the nats-server of
/// `nats_url` (a test's own instances), without NATS credentials unless `configure` sets them.
pub async fn spawn_app_at(
    admin_url: &str,
    nats_url: &str,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let database = format!("t_{}", &id[..16]);
    let admin_url = admin_url.to_owned();
    create_database(&admin_url, &database)
        .await
        .expect("create the test database");
    let mut settings = Settings::new(
        with_database(&admin_url, &database),
        nats_url.to_owned(),
        database.clone(),
    );
    settings.db_pool_size = 4;
    configure(&mut settings);
    gatehouse::db::migrate(&settings.database_url)
        .await
        .expect("migrate the test database");
    let (db, conn) = tokio_postgres::connect(&settings.database_url, NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let nats = gatehouse::broker::connect(&settings, "test")
        .await
        .expect("connect to NATS");
    let client = Client::new(nats, settings.namespace.clone(), Duration::from_secs(10));
    let mut projector_settings = ProjectorSettings::new(settings.namespace.clone());
    projector_settings.ack_wait = Duration::from_secs(2);
    projector_settings.fetch_expiry = Duration::from_millis(500);
    projector_settings.retry_delay = Duration::from_millis(100);
    let mut app = TestApp {
        settings,
        client,
        db,
        database,
        admin_url,
        gateway: None,
        relay: None,
        projector: None,
        notifier: None,
        worker: None,
        releaser: None,
        indexer: None,
        projector_settings,
    };
    app.start_gateway();
    app.start_relay(relay::Hooks::default());
    app.start_projector();
    app.start_notifier();
    app.wait_for_gateway().await;
    app
}

impl TestApp {
    pub fn start_gateway(&mut self) {
        let s = self.settings.clone();
        self.gateway = Some(Role::spawn("gateway", move |stop| {
            gatehouse::gateway::run(s, stop)
        }));
    }

    pub fn start_relay(&mut self, hooks: relay::Hooks) {
        let s = self.settings.clone();
        self.relay = Some(Role::spawn("relay", move |stop| {
            relay::run_with_hooks(s, hooks, stop)
        }));
    }

    pub fn start_projector(&mut self) {
        let s = self.settings.clone();
        let ps = self.projector_settings.clone();
        self.projector = Some(Role::spawn("projector", move |stop| {
            gatehouse::roles::projector_with(s, None, ps, stop)
        }));
    }

    pub fn start_notifier(&mut self) {
        let s = self.settings.clone();
        self.notifier = Some(Role::spawn("notifier", move |stop| {
            gatehouse::notifier::run(s, stop)
        }));
    }

    /// Starts an evaluation worker (not started by default: some tests need runs to wait).
    pub fn start_worker(&mut self) {
        let s = self.settings.clone();
        self.worker = Some(Role::spawn("worker", move |stop| {
            gatehouse::worker::run(s, stop)
        }));
    }

    /// Starts the releaser (auto-release of quarantine cases on a promotion; not started by
    /// default).
    pub fn start_releaser(&mut self) {
        let s = self.settings.clone();
        self.releaser = Some(Role::spawn("releaser", move |stop| {
            gatehouse::quarantine::releaser::run(s, stop)
        }));
    }

    /// Starts the search indexer with `indexer` settings (not started by default).
    pub fn start_indexer(&mut self, indexer: gatehouse::catalog::indexer::IndexerSettings) {
        let s = self.settings.clone();
        self.indexer = Some(Role::spawn("indexer", move |stop| {
            gatehouse::catalog::indexer::run_with(
                s,
                indexer,
                gatehouse_projections::consumer::Health::default(),
                stop,
            )
        }));
    }

    /// Starts an evaluation worker with `worker` settings.
    pub fn start_worker_with(&mut self, worker: gatehouse::worker::WorkerSettings) {
        let s = self.settings.clone();
        self.worker = Some(Role::spawn("worker", move |stop| {
            gatehouse::worker::run_with(s, worker, stop)
        }));
    }

    /// Connects `db` again (after the test restarted its Postgres).
    pub async fn reconnect_db(&mut self) {
        let (db, conn) = tokio_postgres::connect(&self.settings.database_url, NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        self.db = db;
    }

    /// Waits until a gateway answers on this namespace.
    async fn wait_for_gateway(&self) {
        let q = gatehouse_events::policy::ListPolicies::default();
        eventually(Duration::from_secs(20), || async {
            self.client
                .query::<_, serde_json::Value>("policy", "list", &q)
                .await
                .is_ok()
        })
        .await
        .expect("the gateway never answered");
    }

    /// Creates policy `id` (`fixtures::create_policy`) and drafts one version per threshold.
    pub async fn policy_with_versions(&self, id: &str, thresholds: &[f64]) {
        let create = crate::fixtures::create_policy(id);
        self.client
            .command("policy", "create", &self.sender("alice"), create)
            .await
            .unwrap();
        for (i, threshold) in thresholds.iter().enumerate() {
            let draft = crate::fixtures::draft(id, *threshold, &format!("v{}", i + 1));
            self.client
                .command("policy", "draft", &self.sender("bob"), draft)
                .await
                .unwrap();
        }
    }

    /// A client of this namespace connected as `user` of the `CLIENTS` account (`alice`, `bob`,
    /// `svc`, `console`; password in `GATEHOUSE_<USER>_PASSWORD`).
    pub async fn client_as(&self, user: &str) -> Client {
        let var = format!("GATEHOUSE_{}_PASSWORD", user.to_uppercase());
        let nats = connect_as(user, &var, None).await;
        Client::new(
            nats,
            self.settings.namespace.clone(),
            Duration::from_secs(10),
        )
    }

    /// A sender with a fresh command id.
    pub fn sender(&self, actor: &str) -> Sender {
        Sender {
            actor: actor.into(),
            command_id: uuid::Uuid::new_v4().to_string(),
            correlation_id: None,
        }
    }

    /// One number from SQL (e.g. `SELECT count(*) FROM events`).
    pub async fn count(&self, sql: &str) -> i64 {
        self.db
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Messages currently in the events stream.
    pub async fn stream_messages(&self) -> u64 {
        let js = gatehouse::broker::jetstream(self.client.nats());
        let mut stream = js
            .get_stream(gatehouse_events::subjects::events_stream(
                &self.settings.namespace,
            ))
            .await
            .expect("events stream");
        stream.info().await.expect("stream info").state.messages
    }

    /// Waits until the audit read model holds as many rows as the event store.
    pub async fn audit_caught_up(&self) {
        eventually(Duration::from_secs(30), || async {
            let events = self.count("SELECT count(*) FROM events").await;
            events == self.count("SELECT count(*) FROM audit_log").await
        })
        .await
        .expect("the audit read model did not catch up");
    }

    /// Stops every role gracefully and drops the database.
    pub async fn stop(mut self) {
        for role in [
            self.gateway.take(),
            self.relay.take(),
            self.projector.take(),
            self.notifier.take(),
            self.worker.take(),
            self.releaser.take(),
            self.indexer.take(),
        ]
        .into_iter()
        .flatten()
        {
            role.stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), role.task).await;
        }
        drop(self.db);
        let _ = drop_database(&self.admin_url, &self.database).await;
        delete_streams(&self.settings).await;
    }
}

/// Deletes the test namespace's streams (when the environment names an admin user, as
/// `scripts/test.sh` does): else they pile up in the development server's store, run after run.
async fn delete_streams(settings: &Settings) {
    let streams = gatehouse_events::subjects::namespace_streams(&settings.namespace);
    if let Err(e) = gatehouse::broker::delete_streams(settings, streams).await {
        eprintln!(
            "could not delete the streams of {}: {e:#}",
            settings.namespace
        );
    }
}

/// Polls `check` until it holds or `deadline` passes.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    let mut pause = Duration::from_millis(10);
    loop {
        if check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= until {
            anyhow::bail!("condition not met within {deadline:?}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

async fn create_database(admin_url: &str, database: &str) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(admin_url, NoTls)
        .await
        .context("connect as admin")?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await?;
    Ok(())
}

async fn drop_database(admin_url: &str, database: &str) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(admin_url, NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await?;
    Ok(())
}
