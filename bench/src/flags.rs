//! Scenario `flags` (issue 11 part 8): how fast flags are evaluated and how fast a change
//! reaches a service.
//!
//! - `local`: in-process evaluations through the client crate (`FlagClient::evaluate`, fed by
//!   the events of a running Gatehouse) of a realistic flag set — 16 gradual rollouts, 8 user
//!   lists, 8 rollouts behind a constraint (`plan == "pro"`), 8 fully on — over 1,000 users, on
//!   one thread, beside Unleash's own Rust engine (`unleash-yggdrasil`) evaluating the
//!   equivalent toggles (flexibleRollout, userWithId, a constraint `plan IN [pro]`, default) on
//!   the same contexts in the same run; `local.agreement` is the share of answers they agree on.
//! - `remote`: `flag.evaluate` over NATS, closed loop with `--concurrency` clients.
//! - `propagation`: from sending a `set_rollout` to the client crate holding the new rollout
//!   (an upper bound of commit → visible: it includes the command's own latency).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use gatehouse::client::Client;
use gatehouse_events::flag::EvaluateFlag;
use gatehouse_flags::client::{ClientOptions, FlagClient};
use serde_json::{json, Map, Value};
use unleash_yggdrasil::{ClientFeatures, Context, EngineState, UpdateMessage};

use super::figures::{Spec, Target};
use super::load::{closed_loop, Worker};
use super::stats::Latencies;
use super::Bench;

/// Every figure of the scenario.
pub const SPECS: &[Spec] = &[
    Spec::plain(
        "local.rate",
        "evals/s",
        "client crate, in-process, one thread",
    )
    .versus("unleash.rate")
    .target(Target::RatioAtLeast { ratio: 1.0 }),
    Spec::plain(
        "unleash.rate",
        "evals/s",
        "Unleash's engine (unleash-yggdrasil), same toggles, one thread",
    ),
    Spec::plain("local.agreement", "%", "answers on which the two agree"),
    Spec::plain("remote.rate", "req/s", "flag.evaluate over NATS"),
    Spec::plain("remote.p50_ms", "ms", "flag.evaluate latency"),
    Spec::plain("remote.p99_ms", "ms", "flag.evaluate latency"),
    Spec::plain("remote.errors", "requests", "failed flag.evaluate requests"),
    Spec::plain(
        "propagation.p50_ms",
        "ms",
        "set_rollout sent → the client crate holds it",
    ),
    Spec::plain(
        "propagation.p99_ms",
        "ms",
        "set_rollout sent → the client crate holds it",
    )
    .target(Target::AtMost { value: 50.0 }),
];

pub fn run(bench: &mut Bench) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(flags(bench))
}

/// Users evaluated.
const USERS: usize = 1_000;

/// One flag of the set, as Gatehouse and Unleash each express it.
struct BenchFlag {
    key: String,
    rollout: Value,
    toggle: Value,
}

fn flag_set() -> Vec<BenchFlag> {
    let mut set = Vec::new();
    for i in 0..16 {
        let key = format!("bench.pct-{i}");
        let p = (i * 6 + 5) % 100;
        set.push(BenchFlag {
            rollout: json!({"percentage": p, "bucketing": "unleash", "stickiness": "userId"}),
            toggle: json!({"name": key, "enabled": true, "strategies": [{"name": "flexibleRollout",
                "parameters": {"rollout": p.to_string(), "stickiness": "userId", "groupId": key}}]}),
            key,
        });
    }
    for i in 0..8 {
        let key = format!("bench.list-{i}");
        let users: Vec<String> = (0..20)
            .map(|u| format!("user-{}", i * 37 + u * 11))
            .collect();
        set.push(BenchFlag {
            rollout: json!({"percentage": 0, "strategy": "whitelist", "include": users, "stickiness": "userId"}),
            toggle: json!({"name": key, "enabled": true, "strategies": [{"name": "userWithId",
                "parameters": {"userIds": users.join(",")}}]}),
            key,
        });
    }
    for i in 0..8 {
        let key = format!("bench.rule-{i}");
        set.push(BenchFlag {
            rollout: json!({"percentage": 50, "strategy": "rule", "rule": "plan == \"pro\"",
                "rule_attributes": {"plan": "string"}, "bucketing": "unleash", "stickiness": "userId"}),
            toggle: json!({"name": key, "enabled": true, "strategies": [{"name": "flexibleRollout",
                "parameters": {"rollout": "50", "stickiness": "userId", "groupId": key},
                "constraints": [{"contextName": "plan", "operator": "IN", "values": ["pro"]}]}]}),
            key,
        });
    }
    for i in 0..8 {
        let key = format!("bench.on-{i}");
        set.push(BenchFlag {
            rollout: json!({"percentage": 100, "stickiness": "userId"}),
            toggle: json!({"name": key, "enabled": true, "strategies": [{"name": "default"}]}),
            key,
        });
    }
    set
}

fn plan(u: usize) -> &'static str {
    if u.is_multiple_of(3) {
        "pro"
    } else {
        "free"
    }
}

async fn flags(b: &mut Bench) -> anyhow::Result<()> {
    let set = flag_set();
    let client = b.system.client("bench-flags").await?;
    create(&client, &set).await?;
    let local = FlagClient::start(
        b.system.nats.clone(),
        &b.system.settings.namespace,
        ClientOptions::default(),
    )
    .await;
    let loaded = Instant::now();
    while set
        .iter()
        .any(|f| local.flag(&f.key).is_none_or(|s| s.sequence < 2))
    {
        anyhow::ensure!(
            loaded.elapsed() < Duration::from_secs(30),
            "the client crate did not load the flags"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let engine = EngineState::default();
    let features: ClientFeatures = serde_json::from_value(json!({
        "version": 2, "features": set.iter().map(|f| f.toggle.clone()).collect::<Vec<_>>()
    }))?;
    engine.take_state(UpdateMessage::FullResponse(features));
    let ours: Vec<Map<String, Value>> = (0..USERS)
        .map(|u| {
            let v = json!({"userId": format!("user-{u}"), "plan": plan(u)});
            v.as_object().cloned().unwrap_or_default()
        })
        .collect();
    let theirs: Vec<Context> = (0..USERS)
        .map(|u| {
            serde_json::from_value(
                json!({"userId": format!("user-{u}"), "properties": {"plan": plan(u)}}),
            )
        })
        .collect::<Result<_, _>>()?;
    let keys: Vec<String> = set.iter().map(|f| f.key.clone()).collect();
    b.push(
        "local.agreement",
        agreement(&local, &engine, &keys, &ours, &theirs),
    )?;
    let local = Arc::new(local);
    let engine = Arc::new(engine);
    let (keys, ours, theirs) = (Arc::new(keys), Arc::new(ours), Arc::new(theirs));
    let n = b.params.concurrency;
    let mut workers = Vec::with_capacity(n);
    for i in 0..n {
        workers.push(Remote {
            client: b.system.client(&format!("bench-eval-{i}")).await?,
            keys: Arc::clone(&keys),
            offset: i * 7919,
        });
    }
    b.parameter("flags", keys.len());
    b.parameter("users", USERS);
    for _ in 0..b.params.reps {
        let duration = b.params.duration;
        let (l, k, o) = (Arc::clone(&local), Arc::clone(&keys), Arc::clone(&ours));
        let rate = tokio::task::spawn_blocking(move || {
            timed(duration, |i| {
                let key = &k[i % k.len()];
                l.evaluate(key, None, &o[(i / k.len()) % o.len()]).enabled
            })
        })
        .await?;
        b.push("local.rate", rate)?;
        let (e, k, t) = (Arc::clone(&engine), Arc::clone(&keys), Arc::clone(&theirs));
        let rate = tokio::task::spawn_blocking(move || {
            timed(duration, |i| {
                let key = &k[i % k.len()];
                e.is_enabled(key, &t[(i / k.len()) % t.len()], &None)
            })
        })
        .await?;
        b.push("unleash.rate", rate)?;
        let (outcome, back) = closed_loop(workers, duration).await;
        workers = back;
        outcome.record(&mut b.figures, "remote")?;
        propagation(b, &client, &local).await?;
    }
    Ok(())
}

/// Evaluations per second of `eval` (called with 0, 1, 2, ...) for `duration`.
fn timed(duration: Duration, mut eval: impl FnMut(usize) -> bool) -> f64 {
    let started = Instant::now();
    let mut done = 0usize;
    while started.elapsed() < duration {
        for _ in 0..1_000 {
            black_box(eval(done));
            done += 1;
        }
    }
    done as f64 / started.elapsed().as_secs_f64()
}

/// The share (%) of flag × user answers on which Gatehouse and Unleash agree.
fn agreement(
    local: &FlagClient,
    engine: &EngineState,
    keys: &[String],
    ours: &[Map<String, Value>],
    theirs: &[Context],
) -> f64 {
    let mut same = 0usize;
    for key in keys {
        for (o, t) in ours.iter().zip(theirs) {
            if local.evaluate(key, None, o).enabled == engine.is_enabled(key, t, &None) {
                same += 1;
            }
        }
    }
    100.0 * same as f64 / (keys.len() * ours.len()) as f64
}

async fn create(client: &Client, set: &[BenchFlag]) -> anyhow::Result<()> {
    let sender = |i: &str| gatehouse::client::Sender {
        actor: "bench".into(),
        command_id: format!("bench-flags:{i}:{}", uuid::Uuid::now_v7()),
        correlation_id: None,
    };
    for f in set {
        let create = json!({"flag": f.key, "description": "bench", "reason": "bench"});
        client
            .command("flag", "create", &sender(&f.key), create)
            .await?;
        let mut rollout = f.rollout.clone();
        rollout["flag"] = json!(f.key);
        rollout["reason"] = json!("bench");
        client
            .command("flag", "set_rollout", &sender(&f.key), rollout)
            .await?;
    }
    Ok(())
}

/// `flag.evaluate` requests, one after another.
struct Remote {
    client: Client,
    keys: Arc<Vec<String>>,
    offset: usize,
}

impl Worker for Remote {
    async fn op(&mut self, n: u64) -> anyhow::Result<()> {
        let i = self.offset + n as usize;
        let u = (i / self.keys.len()) % USERS;
        let q = EvaluateFlag {
            flag: self.keys[i % self.keys.len()].clone(),
            unit: None,
            context: json!({"userId": format!("user-{u}"), "plan": plan(u)})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let _: Value = self.client.query("flag", "evaluate", &q).await?;
        Ok(())
    }
}

/// Rollout changes sent one at a time; each timed until the client crate holds it.
async fn propagation(b: &mut Bench, client: &Client, local: &FlagClient) -> anyhow::Result<()> {
    let changes = if b.params.quick { 20 } else { 200 };
    let key = "bench.pct-0";
    let mut samples = Vec::with_capacity(changes);
    let mut percentages: HashMap<bool, f64> = HashMap::new();
    percentages.insert(false, 41.0);
    percentages.insert(true, 42.0);
    for k in 0..changes {
        let current = local.flag(key).map(|s| s.rollout.percentage);
        let target = percentages[&(current == Some(41.0))];
        let sender = gatehouse::client::Sender {
            actor: "bench".into(),
            command_id: uuid::Uuid::now_v7().to_string(),
            correlation_id: None,
        };
        let body = json!({"flag": key, "percentage": target, "bucketing": "unleash",
            "stickiness": "userId", "reason": format!("bench change {k}")});
        let started = Instant::now();
        client.command("flag", "set_rollout", &sender, body).await?;
        while local.flag(key).map(|s| s.rollout.percentage) != Some(target) {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "the client crate never saw the change"
            );
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        samples.push(started.elapsed());
    }
    if let Some(l) = Latencies::of(&samples) {
        b.push("propagation.p50_ms", l.p50)?;
        b.push("propagation.p99_ms", l.p99)?;
    }
    Ok(())
}
