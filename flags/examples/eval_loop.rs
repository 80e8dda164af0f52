//! The evaluation of `gatehouse bench flags` (a) without NATS, for instruction counts:
//! the same 40 flags × 1,000 users, evaluated in a loop on one thread through a read lock and a
//! map of flags as `FlagClient::evaluate` does.
//!
//! ```sh
//! cargo build --release -p gatehouse-flags --example eval_loop
//! valgrind --tool=callgrind $CARGO_TARGET_DIR/release/examples/eval_loop 200000
//! ```
//! (instructions per evaluation: the difference of two runs' totals over the difference of N).
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::RwLock;

use gatehouse_events::flag::{FlagState, Rollout};
use gatehouse_flags::{evaluate_with, CompiledFlag, EmergencyOverride};
use serde_json::{json, Map, Value};

fn state(key: &str, rollout: Value) -> FlagState {
    let rollout: Rollout = serde_json::from_value(rollout).unwrap();
    serde_json::from_value(json!({
        "flag": key, "description": "", "type": "boolean", "on_value": true, "off_value": false,
        "rollout": rollout, "sequence": 2, "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z", "updated_by": "t"
    }))
    .unwrap()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(400_000);
    let mut flags: HashMap<String, CompiledFlag, foldhash::fast::RandomState> = HashMap::default();
    let mut keys = Vec::new();
    let mut add = |key: String, rollout: Value| {
        flags.insert(key.clone(), CompiledFlag::new(state(&key, rollout)));
        keys.push(key);
    };
    for i in 0..16 {
        let p = (i * 6 + 5) % 100;
        add(
            format!("bench.pct-{i}"),
            json!({"percentage": p, "bucketing": "unleash", "stickiness": "userId"}),
        );
    }
    for i in 0..8 {
        let users: Vec<String> = (0..20)
            .map(|u| format!("user-{}", i * 37 + u * 11))
            .collect();
        add(
            format!("bench.list-{i}"),
            json!({"percentage": 0, "strategy": "whitelist", "include": users, "stickiness": "userId"}),
        );
    }
    for i in 0..8 {
        add(
            format!("bench.rule-{i}"),
            json!({"percentage": 50, "strategy": "rule", "rule": "plan == \"pro\"",
            "rule_attributes": {"plan": "string"}, "bucketing": "unleash", "stickiness": "userId"}),
        );
    }
    for i in 0..8 {
        add(
            format!("bench.on-{i}"),
            json!({"percentage": 100, "stickiness": "userId"}),
        );
    }
    let ctxs: Vec<Map<String, Value>> = (0..1000)
        .map(|u| {
            json!({"userId": format!("user-{u}"), "plan": if u % 3 == 0 {"pro"} else {"free"}})
                .as_object()
                .cloned()
                .unwrap()
        })
        .collect();
    let held = RwLock::new(flags);
    let env = EmergencyOverride::None;
    let mut on = 0usize;
    let started = std::time::Instant::now();
    for i in 0..n {
        let key = &keys[i % keys.len()];
        let h = held.read().unwrap();
        let e = evaluate_with(
            key,
            h.get(key.as_str()),
            &env,
            false,
            None,
            &ctxs[(i / keys.len()) % ctxs.len()],
        );
        on += black_box(e).enabled as usize;
    }
    let s = started.elapsed().as_secs_f64();
    println!("{on} on of {n}; {:.2} M evals/s", n as f64 / s / 1e6);
}
