//! Worker processes of the `activation` scenario: real `gatehouse worker` processes, started
//! with the bench's database and namespace, each watched for its peak RSS and stopped with
//! SIGTERM (graceful) at the end.
//!
//! The binary is `GATEHOUSE_BIN` if set, else the `gatehouse` beside this executable
//! (`gatehouse-bench` is built into the same `target/<profile>/`), else the one in the directory
//! above (a test binary lives in `target/<profile>/deps/`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use gatehouse::settings::Settings;

/// How long a worker may take to start (connect, set up its consumers).
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a worker may take to stop after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// The last log lines of a worker kept to explain a failure.
const KEPT_LINES: usize = 20;
/// What a worker logs once its loops run.
const STARTED: &str = "worker started";

/// One running worker process.
pub struct WorkerProcess {
    child: Child,
    pid: u32,
    lines: Arc<Mutex<VecDeque<String>>>,
}

/// The `gatehouse` binary to start workers from.
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("GATEHOUSE_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe()?;
    // `gatehouse-bench` sits beside `gatehouse`; a test binary one level down, in `deps/`.
    let candidates = [me.parent(), me.parent().and_then(|deps| deps.parent())];
    let found = candidates
        .into_iter()
        .flatten()
        .map(|dir| dir.join("gatehouse"))
        .find(|path| path.is_file());
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "worker processes need the gatehouse binary: build it (cargo build --bin gatehouse) \
                 or set GATEHOUSE_BIN"
        )
    })
}

impl WorkerProcess {
    /// Starts `gatehouse worker` against `settings` and waits until it runs.
    pub async fn start(settings: &Settings, index: usize) -> anyhow::Result<WorkerProcess> {
        let mut command = Command::new(binary()?);
        command
            .arg("worker")
            .env("DATABASE_URL", &settings.database_url)
            .env("NATS_URL", &settings.nats_url)
            .env("GATEHOUSE_NAMESPACE", &settings.namespace)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in [
            ("NATS_USER", &settings.nats_user),
            ("NATS_PASSWORD", &settings.nats_password),
        ] {
            match value {
                Some(v) => command.env(key, v),
                None => command.env_remove(key),
            };
        }
        let mut child = command.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("worker exited at once"))?;
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let (started_tx, mut started) = watch::channel(false);
        let stderr = child.stderr.take().expect("stderr is piped");
        let kept = Arc::clone(&lines);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if line.contains(STARTED) {
                    let _ = started_tx.send(true);
                }
                let mut kept = kept.lock().expect("log lines lock");
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        let mut worker = WorkerProcess { child, pid, lines };
        let ready = tokio::time::timeout(START_DEADLINE, async {
            started.wait_for(|s| *s).await.map(|_| ())
        })
        .await;
        match ready {
            Ok(Ok(())) => Ok(worker),
            _ => {
                let _ = worker.child.kill().await;
                anyhow::bail!(
                    "worker {index} did not start within {START_DEADLINE:?}; its last lines:\n{}",
                    worker.last_lines()
                )
            }
        }
    }

    /// Fails if the worker exited (its figures would mean nothing).
    pub fn check(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "a worker process exited ({status}) during the run; its last lines:\n{}",
                self.last_lines()
            );
        }
        Ok(())
    }

    /// The peak resident set size so far, in MiB (`VmHWM`).
    pub fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no VmHWM for worker {}", self.pid))?;
        Ok(kib / 1024.0)
    }

    /// Stops the worker gracefully (SIGTERM), killing it if it does not stop in time.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        match tokio::time::timeout(STOP_DEADLINE, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => anyhow::bail!(
                "worker {} stopped with {status}; its last lines:\n{}",
                self.pid,
                self.last_lines()
            ),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                let _ = self.child.kill().await;
                anyhow::bail!("worker {} did not stop within {STOP_DEADLINE:?}", self.pid)
            }
        }
    }

    fn last_lines(&self) -> String {
        let lines = self.lines.lock().expect("log lines lock");
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}
