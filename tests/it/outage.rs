//! Outages: Postgres stopped for 30 s and for 3 minutes, nats-server restarted, each in the
//! middle of a Prepare run with a live catalog change and command traffic. Nothing is
//! dead-lettered, no run fails, no change is lost, work resumes within seconds, and the run's
//! counters are exact.
//!
//! Each test stops servers of its own — a Postgres cluster (`initdb` into a temp dir, as the
//! `postgres` user when run as root, like `scripts/lib.sh`) or a nats-server (the repo's
//! `.gatehouse/venv/bin/nats-server`, JetStream in a temp store dir) — so other tests are
//! unaffected.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use gatehouse::worker::WorkerSettings;
use gatehouse_events::catalog::CatalogChange;
use gatehouse_events::subjects;
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fixtures::create_policy;
use crate::helpers::{env, eventually, spawn_app_at, TestApp};
use crate::runs::{
    attributes, create, insert_items, item_id, predicted, prepare, progress, publish, recount,
    wait_status,
};

const ITEMS: i64 = 4_000;
const BATCH: u32 = 5;
/// How soon work must resume once the server is back.
const RESUME: Duration = Duration::from_secs(20);
const DEADLINE: Duration = Duration::from_secs(180);

#[tokio::test]
async fn postgres_stopped_for_30_seconds_mid_run_loses_nothing() {
    postgres_outage(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn postgres_stopped_for_3_minutes_mid_run_loses_nothing() {
    postgres_outage(Duration::from_secs(180)).await;
}

#[tokio::test]
async fn nats_server_restarted_mid_run_loses_nothing() {
    let nats = Nats::init().await;
    let mut app = spawn_app_at(&env("DATABASE_URL"), &nats.url(), |_| {}).await;
    let mut workload = Workload::start(&mut app).await;
    nats.stop().await;
    // Written while the broker is down: the outbox keeps them until the relay reconnects.
    tokio::time::sleep(Duration::from_secs(10)).await;
    nats.start().await;
    workload.change_live(&app).await;
    workload.finish(&mut app).await;
    app.stop().await;
}

async fn postgres_outage(outage: Duration) {
    let pg = Postgres::init().await;
    let mut app = spawn_app_at(&pg.admin_url(), &env("NATS_URL"), |settings| {
        settings.nats_user = std::env::var("NATS_USER").ok();
        settings.nats_password = std::env::var("NATS_PASSWORD").ok();
    })
    .await;
    let mut workload = Workload::start(&mut app).await;
    pg.stop().await;
    // Catalog changes come through NATS: they keep coming while the database is down.
    workload.change_live(&app).await;
    tokio::time::sleep(outage).await;
    pg.start().await;
    app.reconnect_db().await;
    workload.finish(&mut app).await;
    app.stop().await;
}

/// A Prepare run in progress, a live catalog change, and commands sent all along.
struct Workload {
    run_id: String,
    worker: WorkerSettings,
    /// Batches done shortly before the outage began.
    done_before: i32,
    /// The live change: its item and catalog sequence.
    live: Option<(String, i64)>,
    stop_traffic: CancellationToken,
    traffic: tokio::task::JoinHandle<usize>,
}

impl Workload {
    /// Starts the run and the traffic; returns once the run is well under way.
    async fn start(app: &mut TestApp) -> Workload {
        create(app, "media", &[0.5]).await;
        insert_items(app, ITEMS).await;
        let worker = WorkerSettings {
            jobs_in_flight: 1,
            ..WorkerSettings::default()
        };
        app.start_worker_with(worker.clone());
        let run_id = prepare(app, "media", 1, BATCH).await;
        // A change after the snapshot (so outside it), so the live change of item 1 has a newer
        // catalog sequence than the rows inserted with sequences 1..=ITEMS.
        publish(app, &upsert("new-1", 0.9)).await;
        eventually(DEADLINE, || async {
            progress(&app.db, &run_id).await.1 >= 20
        })
        .await
        .expect("the run is under way");
        let done_before = progress(&app.db, &run_id).await.1;
        assert!(done_before < batches(), "the outage lands mid-run");
        let stop_traffic = CancellationToken::new();
        let traffic = tokio::spawn(commands(app.client.clone(), stop_traffic.clone()));
        Workload {
            run_id,
            worker,
            done_before,
            live: None,
            stop_traffic,
            traffic,
        }
    }

    /// Publishes a change of a snapshot item: quality 0.9 (allowed; the run denied it).
    async fn change_live(&mut self, app: &TestApp) {
        let item = item_id(1);
        let seq = loop {
            // After a broker restart the first publishes may fail until the client reconnects.
            match tokio::time::timeout(Duration::from_secs(5), publish_change(app, &item)).await {
                Ok(Ok(seq)) => break seq,
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        self.live = Some((item, seq));
    }

    /// After the outage: work resumes within seconds and ends exactly as without one.
    async fn finish(self, app: &mut TestApp) {
        let back = Instant::now();
        let at_return = try_progress(app, &self.run_id)
            .await
            .unwrap_or(self.done_before);
        assert!(
            at_return < batches(),
            "the run was still going when the outage ended"
        );
        eventually(RESUME, || async {
            matches!(try_progress(app, &self.run_id).await, Some(done) if done > at_return)
                || status(app, &self.run_id).await.as_deref() == Some("success")
        })
        .await
        .unwrap_or_else(|_| panic!("the run did not resume within {RESUME:?}"));
        eprintln!("the run resumed {:?} after the outage", back.elapsed());

        wait_status(app, &self.run_id, "success").await;
        let (counters, done) = progress(&app.db, &self.run_id).await;
        assert_eq!(done, batches());
        assert_eq!(counters, predicted(ITEMS, 0.5));
        // The results now hold the live change of item 1 (denied by the run, allowed since).
        let mut current = counters;
        current.ineligible -= 1;
        current.eligible += 1;
        assert_eq!(recount(app, &self.run_id).await, current);

        let (item, seq) = self.live.expect("a live change was sent");
        eventually(DEADLINE, || async {
            live_result(app, &item).await == Some((seq, "allow".to_owned()))
        })
        .await
        .expect("the live change was evaluated");

        self.stop_traffic.cancel();
        let sent = self.traffic.await.expect("the command traffic");
        assert!(sent > 0);
        eventually(DEADLINE, || async {
            app.count("SELECT count(*) FROM policies WHERE policy_id LIKE 'cmd-%'")
                .await
                == sent as i64
        })
        .await
        .unwrap_or_else(|_| panic!("not every one of {sent} accepted commands was projected"));
        app.audit_caught_up().await;
        assert_eq!(dead_letters(app).await, 0, "nothing is dead-lettered");
        assert_eq!(
            app.count("SELECT count(*) FROM runs WHERE status = 'failed'")
                .await,
            0
        );
        eventually(Duration::from_secs(30), || async {
            self.worker.health.is_healthy() && app.projector_settings.health.is_healthy()
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "still degraded: {:?} {:?}",
                self.worker.health.degraded(),
                app.projector_settings.health.degraded()
            )
        });
    }
}

fn batches() -> i32 {
    (ITEMS as u64).div_ceil(u64::from(BATCH)) as i32
}

fn upsert(id: &str, quality: f64) -> CatalogChange {
    let serde_json::Value::Object(mut attributes) = attributes(3) else {
        unreachable!("the fixture's attributes are an object")
    };
    attributes.insert("quality".into(), quality.into());
    CatalogChange::Upsert {
        id: id.into(),
        status: "ready".into(),
        attributes,
    }
}

async fn publish_change(app: &TestApp, item: &str) -> Result<i64, async_nats::Error> {
    let js = gatehouse::broker::jetstream(app.client.nats());
    let change = upsert(item, 0.9);
    let subject = subjects::catalog_item(&app.settings.namespace, change.id());
    let ack = js
        .publish(subject, serde_json::to_vec(&change)?.into())
        .await?
        .await?;
    Ok(ack.sequence as i64)
}

/// Creates policies `cmd-<n>` one after the other until `stop`, each retried with its own
/// command id until it is accepted; returns how many were accepted.
async fn commands(client: gatehouse::client::Client, stop: CancellationToken) -> usize {
    let mut accepted = 0;
    while !stop.is_cancelled() {
        let id = format!("cmd-{accepted}");
        let sender = gatehouse::client::Sender {
            actor: "alice".into(),
            command_id: id.clone(),
            correlation_id: None,
        };
        // A command sent during the outage fails or times out: the same command id again
        // returns the first reply, so a retry never creates a policy twice.
        while client
            .command("policy", "create", &sender, create_policy(&id))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        accepted += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    accepted
}

async fn try_progress(app: &TestApp, run_id: &str) -> Option<i32> {
    let row = app
        .db
        .query_opt(
            "SELECT batches_done FROM run_progress WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .ok()??;
    Some(row.get(0))
}

async fn status(app: &TestApp, run_id: &str) -> Option<String> {
    let row = app
        .db
        .query_opt("SELECT status FROM runs WHERE run_id = $1", &[&run_id])
        .await
        .ok()??;
    Some(row.get(0))
}

async fn live_result(app: &TestApp, item: &str) -> Option<(i64, String)> {
    let row = app
        .db
        .query_opt(
            "SELECT item_seq, outcome FROM eval_results
              WHERE policy_id = 'media' AND version = 1 AND item_id = $1",
            &[&item],
        )
        .await
        .ok()??;
    Some((row.get(0), row.get(1)))
}

/// Messages in the namespace's dead-letter stream.
async fn dead_letters(app: &TestApp) -> u64 {
    let js = gatehouse::broker::jetstream(app.client.nats());
    let name = subjects::dead_letter_stream(&app.settings.namespace);
    match js.get_stream(&name).await {
        Ok(mut stream) => stream.info().await.expect("DLQ info").state.messages,
        Err(_) => 0,
    }
}

/// A free loopback port.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A temp dir of the test's own; when run as root, owned by `owner`.
fn temp_dir(kind: &str, owner: Option<&str>) -> PathBuf {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("gh-{kind}-{}", &id[..12]));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    if let Some(owner) = owner {
        let status = std::process::Command::new("chown")
            .arg(format!("{owner}:{owner}"))
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown {}", dir.display());
    }
    dir
}

async fn run(command: &mut Command, what: &str) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A Postgres cluster of the test's own, on a free loopback port.
struct Postgres {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    /// `initdb` and `pg_ctl` refuse to run as root: then they run as `postgres`.
    as_postgres: bool,
}

impl Postgres {
    async fn init() -> Postgres {
        let as_postgres = is_root();
        let root = temp_dir("pg", as_postgres.then_some("postgres"));
        let pg = Postgres {
            bin: pg_bindir(),
            port: free_port(),
            root,
            as_postgres,
        };
        let data = pg.data();
        run(
            pg.tool("initdb").arg("-D").arg(&data).args([
                "-U",
                "gatehouse",
                "-A",
                "trust",
                "--encoding=UTF8",
                "--locale=C",
            ]),
            "initdb",
        )
        .await;
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             max_connections = 200\nfsync = off\n",
            pg.port,
            pg.root.display()
        );
        let path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).expect("read postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&path, text).expect("write postgresql.conf");
        pg.start_server().await;
        pg
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn admin_url(&self) -> String {
        format!("postgres://gatehouse@127.0.0.1:{}/postgres", self.port)
    }

    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        // runuser keeps the cwd, which postgres may not be allowed to read.
        command.current_dir(&self.root);
        command
    }

    async fn start_server(&self) {
        let log = self.root.join("server.log");
        run(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(log)
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        )
        .await;
    }

    async fn start(&self) {
        self.start_server().await;
    }

    async fn stop(&self) {
        run(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "fast", "-w", "-t", "60", "stop"]),
            "pg_ctl stop",
        )
        .await;
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = std::process::Command::new(if self.as_postgres { "runuser" } else { "sh" });
        let pg_ctl = self.bin.join("pg_ctl");
        if self.as_postgres {
            stop.args(["-u", "postgres", "--"]).arg(pg_ctl);
        } else {
            stop.arg("-c").arg("exec \"$0\" \"$@\"").arg(pg_ctl);
        }
        let _ = stop
            .current_dir(&self.root)
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The newest `/usr/lib/postgresql/*/bin` with a server (or `GATEHOUSE_PG_BINDIR`), as
/// `scripts/lib.sh` finds it.
fn pg_bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("GATEHOUSE_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL in /usr/lib/postgresql (or set GATEHOUSE_PG_BINDIR)")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("a PostgreSQL server in /usr/lib/postgresql")
        .1
}

/// A nats-server of the test's own: JetStream in a temp store dir, a free loopback port.
struct Nats {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: tokio::sync::Mutex<Option<tokio::process::Child>>,
}

impl Nats {
    async fn init() -> Nats {
        let dir = temp_dir("nats", None);
        let port = free_port();
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: \"{}\"\n}}\n",
            dir.join("store").display()
        );
        std::fs::write(dir.join("nats.conf"), config).expect("write nats.conf");
        let nats = Nats {
            bin: nats_bin(),
            dir,
            port,
            child: tokio::sync::Mutex::new(None),
        };
        nats.start_server().await;
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn start_server(&self) {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("log file");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.join("nats.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        *self.child.lock().await = Some(child);
        let port = self.port;
        eventually(Duration::from_secs(30), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await
        .expect("nats-server listens");
    }

    async fn start(&self) {
        self.start_server().await;
    }

    /// Stops the server as `SIGTERM` does (JetStream flushes its store) and waits for it.
    async fn stop(&self) {
        let mut child = self.child.lock().await.take().expect("a running server");
        let pid = child.id().expect("the server's pid");
        run(
            Command::new("kill").args(["-TERM", &pid.to_string()]),
            "kill",
        )
        .await;
        tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("nats-server stops")
            .expect("nats-server's exit status");
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.get_mut().take() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The repo's nats-server (`GATEHOUSE_NATS_BIN`, or `.gatehouse/venv/bin/nats-server` of this
/// checkout or of the main checkout of its repository), else the one on the `PATH`.
fn nats_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("GATEHOUSE_NATS_BIN") {
        return PathBuf::from(bin);
    }
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let repo = Path::new(&manifest)
        .parent()
        .expect("the workspace")
        .to_path_buf();
    let mut roots = vec![repo.clone()];
    if let Ok(out) = std::process::Command::new("git")
        .args(["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .current_dir(&repo)
        .output()
    {
        let common = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        roots.extend(common.parent().map(Path::to_path_buf));
    }
    roots
        .into_iter()
        .map(|root| root.join(".gatehouse/venv/bin/nats-server"))
        .find(|bin| bin.exists())
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}
