//! The doctor's synthetic journey, seed 003's smoke test as one step list, under scratch names
//! in the live namespace: create policy `doctor-<id>`, draft version 1, import three catalog
//! items `doctor-<id>-<n>`, prepare, wait for the run, promote, read the policy's active
//! version, then delete the scratch items. The policy stays (the event log keeps everything):
//! it is bound to no repo, so it decides nothing.
//!
//! Every step goes through the gateway and the catalog stream like any client's, so a passing
//! journey means the gateway, relay, projectors and a worker all work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gatehouse_events::catalog::GetItem;
use gatehouse_events::envelope::CommandAccepted;
use gatehouse_events::policy::{CreatePolicy, DraftVersion, GetPolicy, PolicySummary};
use gatehouse_events::run::{GetRun, PrepareRun, PromoteRun, RunStatus, RunView};
use gatehouse_events::subjects;
use serde_json::json;

use super::ready::Check;
use crate::client::{Client, ClientError, Sender};

/// How many scratch items the journey imports.
const ITEMS: usize = 3;

/// Runs the journey as `actor`, waiting at most `deadline` for each eventual step; one check
/// per step, the journey stopping at the first that fails.
pub async fn run(client: &Client, actor: &str, deadline: Duration) -> Vec<Check> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let journey = Journey {
        client,
        actor,
        deadline,
        policy_id: format!("doctor-{}", &id[..12]),
        imported: AtomicBool::new(false),
    };
    let mut checks = Vec::new();
    match journey.steps().await {
        Ok(done) => checks.extend(done),
        Err((done, failure)) => {
            checks.extend(done);
            checks.push(failure);
        }
    }
    // Clean up even after a failure: the items would otherwise join every later snapshot.
    if journey.imported.load(Ordering::Relaxed) {
        checks.push(journey.clean_up().await);
    }
    checks
}

struct Journey<'a> {
    client: &'a Client,
    actor: &'a str,
    deadline: Duration,
    policy_id: String,
    /// Whether any scratch item was published (and so must be deleted).
    imported: AtomicBool,
}

type Steps = Result<Vec<Check>, (Vec<Check>, Check)>;

impl Journey<'_> {
    async fn steps(&self) -> Steps {
        let mut done = Vec::new();
        let fail = |done: &mut Vec<Check>, step: &str, why: String| {
            Err((
                std::mem::take(done),
                Check::failed(format!("journey: {step}"), why),
            ))
        };
        let p = &self.policy_id;
        if let Err(e) = self.create().await {
            return fail(&mut done, "create", format!("policy.create {p}: {e}"));
        }
        done.push(Check::ok("journey: create", format!("policy {p}")));
        let drafted = match self.draft().await {
            Ok(accepted) => accepted,
            Err(e) => return fail(&mut done, "draft", format!("policy.draft {p}: {e}")),
        };
        done.push(Check::ok("journey: draft", "version 1"));
        if let Err(why) = self.import().await {
            return fail(&mut done, "import", why);
        }
        done.push(Check::ok(
            "journey: import",
            format!("{ITEMS} catalog items in the catalog"),
        ));
        let run_id = match self.prepare(&drafted).await {
            Ok(run_id) => run_id,
            Err(why) => return fail(&mut done, "prepare", why),
        };
        done.push(Check::ok("journey: prepare", format!("run {run_id}")));
        match self.run_finished(&run_id).await {
            Ok(view) => done.push(Check::ok(
                "journey: run",
                format!("success: {} items evaluated", view.counters.processed),
            )),
            Err(why) => return fail(&mut done, "run", why),
        }
        let promoted = match self.promote(&run_id).await {
            Ok(accepted) => accepted,
            Err(e) => {
                return fail(
                    &mut done,
                    "promote",
                    format!("policy.promote {run_id}: {e}"),
                )
            }
        };
        done.push(Check::ok("journey: promote", format!("run {run_id}")));
        match self.read_active(&promoted).await {
            Ok(Some(1)) => done.push(Check::ok("journey: read", "active version 1")),
            Ok(other) => {
                return fail(
                    &mut done,
                    "read",
                    format!("policy.get {p}: active version {other:?}, expected 1"),
                )
            }
            Err(e) => return fail(&mut done, "read", format!("policy.get {p}: {e}")),
        }
        Ok(done)
    }

    fn sender(&self) -> Sender {
        Sender {
            actor: self.actor.to_owned(),
            command_id: uuid::Uuid::now_v7().to_string(),
            correlation_id: None,
        }
    }

    async fn create(&self) -> Result<CommandAccepted, ClientError> {
        let create: CreatePolicy = serde_json::from_value(json!({
            "policy_id": self.policy_id,
            "name": "gatehouse doctor",
            "description": "scratch policy of a `gatehouse doctor` journey; bound to no repo",
            "attributes": {}
        }))
        .map_err(|e| ClientError::Decode(e.to_string()))?;
        self.client
            .command("policy", "create", &self.sender(), create)
            .await
    }

    async fn draft(&self) -> Result<CommandAccepted, ClientError> {
        let draft: DraftVersion = serde_json::from_value(json!({
            "policy_id": self.policy_id,
            "notes": "gatehouse doctor",
            "rules": {
                "rules": [{"id": "never", "condition": "false", "decision": "deny",
                           "reason": "the doctor's journey denies nothing"}],
                "default_decision": "allow",
                "score": "0.0"
            }
        }))
        .map_err(|e| ClientError::Decode(e.to_string()))?;
        self.client
            .command("policy", "draft", &self.sender(), draft)
            .await
    }

    fn item(&self, n: usize) -> String {
        format!("{}-{n}", self.policy_id)
    }

    /// Publishes the scratch items on the catalog stream and waits until the catalog has them.
    async fn import(&self) -> Result<(), String> {
        let ns = self.client.namespace();
        self.imported.store(true, Ordering::Relaxed);
        for n in 1..=ITEMS {
            let body = json!({"op": "upsert", "id": self.item(n), "status": "ready",
                              "attributes": {"doctor": true}});
            self.publish(&subjects::catalog_item(ns, &self.item(n)), body)
                .await?;
        }
        for n in 1..=ITEMS {
            let item = self.item(n);
            self.eventually(|| async {
                let found: Result<serde_json::Value, _> = self
                    .client
                    .query("catalog", "get", &GetItem { item_id: item.clone() })
                    .await;
                found.is_ok()
            })
            .await
            .map_err(|_| format!("catalog item {item} not in the catalog after {:?} (is the catalog projector running?)", self.deadline))?;
        }
        Ok(())
    }

    async fn publish(&self, subject: &str, body: serde_json::Value) -> Result<(), String> {
        let js = crate::broker::jetstream(self.client.nats());
        let payload = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        js.publish(subject.to_owned(), payload.into())
            .await
            .map_err(|e| format!("publish {subject}: {e}"))?
            .await
            .map_err(|e| format!("publish {subject}: {e}"))?;
        Ok(())
    }

    async fn prepare(&self, drafted: &CommandAccepted) -> Result<String, String> {
        // The version must be visible to prepare's validation: wait for the draft first.
        self.client
            .wait_for(drafted)
            .await
            .map_err(|e| format!("the draft is not visible: {e}"))?;
        let prepare = PrepareRun {
            policy_id: self.policy_id.clone(),
            version: 1,
            batch_size: None,
            coverage_threshold: None,
            max_errors: None,
        };
        let accepted = self
            .client
            .command("policy", "prepare", &self.sender(), prepare)
            .await
            .map_err(|e| format!("policy.prepare {}: {e}", self.policy_id))?;
        accepted
            .detail
            .get("run_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("policy.prepare {} answered no run id", self.policy_id))
    }

    fn get(&self) -> GetPolicy {
        GetPolicy {
            policy_id: self.policy_id.clone(),
        }
    }

    /// Polls `run.get` until the run ends (the run read model may not show it at first).
    async fn run_finished(&self, run_id: &str) -> Result<RunView, String> {
        let query = GetRun {
            run_id: run_id.to_owned(),
        };
        let until = tokio::time::Instant::now() + self.deadline;
        loop {
            let seen: Result<RunView, _> = self.client.query("run", "get", &query).await;
            let waiting = match seen {
                Ok(view) if view.status == RunStatus::Success => return Ok(view),
                Ok(view) if view.status == RunStatus::Running => format!(
                    "still running: {} of {} items (is a worker running?)",
                    view.counters.processed, view.counters.total_ready_snapshot
                ),
                Ok(view) => {
                    return Err(format!(
                        "run {run_id} ended {}: {}",
                        view.status.as_str(),
                        view.failure.unwrap_or_default()
                    ))
                }
                Err(e) => format!("run.get: {e}"),
            };
            if tokio::time::Instant::now() >= until {
                return Err(format!("run {run_id} after {:?}: {waiting}", self.deadline));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn promote(&self, run_id: &str) -> Result<CommandAccepted, ClientError> {
        let promote = PromoteRun {
            run_id: run_id.to_owned(),
            coverage_threshold: None,
            max_errors: None,
        };
        self.client
            .command("policy", "promote", &self.sender(), promote)
            .await
    }

    async fn read_active(&self, promoted: &CommandAccepted) -> Result<Option<u32>, ClientError> {
        let wait = gatehouse_events::envelope::WaitFor::after(promoted);
        let summary: PolicySummary = self
            .client
            .query_after("policy", "get", &self.get(), &wait)
            .await?;
        Ok(summary.active_version)
    }

    /// Deletes the scratch items from the catalog.
    async fn clean_up(&self) -> Check {
        let ns = self.client.namespace();
        for n in 1..=ITEMS {
            let body = json!({"op": "delete", "id": self.item(n)});
            if let Err(why) = self
                .publish(&subjects::catalog_item(ns, &self.item(n)), body)
                .await
            {
                return Check::failed("journey: clean up", why);
            }
        }
        Check::ok(
            "journey: clean up",
            format!(
                "{ITEMS} scratch items deleted; policy {} left unbound",
                self.policy_id
            ),
        )
    }

    async fn eventually<F, Fut>(&self, mut check: F) -> Result<(), ()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let until = tokio::time::Instant::now() + self.deadline;
        while tokio::time::Instant::now() < until {
            if check().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(())
    }
}
