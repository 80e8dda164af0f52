//! Throughput of convert + evaluate on the reference workload (shared/reference/rule-engine.md):
//! 200,000 generated items, five first-match rules and a score. Run by hand:
//! `cargo test -p gatehouse-rules --release -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use gatehouse_rules::{validate, AttributeSchema, CompiledPolicy, Item, RulesDocument};
use serde_json::{json, Value as Json};

const ITEMS: usize = 200_000;
const THREADS: usize = 2;

#[test]
#[ignore = "a benchmark: run by hand in release mode"]
fn convert_and_evaluate_throughput() {
    let schema = schema();
    let started = Instant::now();
    let policy = validate(&reference_doc(), &schema).expect("the reference policy is valid");
    let compile = started.elapsed();
    let policy = Arc::new(policy);
    let items = generate(ITEMS);

    let started = Instant::now();
    let items_converted: Vec<Item> = items
        .iter()
        .map(|j| Item::from_json(j, &schema).unwrap())
        .collect();
    let convert = started.elapsed();
    let started = Instant::now();
    let evaluated = items_converted
        .iter()
        .filter(|item| policy.evaluate(item).is_ok())
        .count();
    let eval = started.elapsed();
    assert_eq!(evaluated, ITEMS);
    let rule_ids: Vec<&str> = policy.rule_ids().collect();
    let mismatches = items_converted
        .iter()
        .zip(&items)
        .filter(|(item, json)| decide(&policy, &rule_ids, item) != expected(json))
        .count();
    assert_eq!(
        mismatches, 0,
        "decisions differ from the hand-written reference"
    );
    drop(items_converted);

    let started = Instant::now();
    let converted = items
        .iter()
        .filter(|j| Item::from_json(j, &schema).is_ok())
        .count();
    let convert_drop = started.elapsed();
    assert_eq!(converted, ITEMS);

    let started = Instant::now();
    let decided = convert_and_evaluate(&policy, &schema, &items);
    let one_thread = started.elapsed();
    assert_eq!(decided, ITEMS);

    let started = Instant::now();
    let chunk = ITEMS.div_ceil(THREADS);
    let decided: usize = std::thread::scope(|s| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let (policy, schema) = (Arc::clone(&policy), &schema);
                s.spawn(move || convert_and_evaluate(&policy, schema, part))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let threads = started.elapsed();
    assert_eq!(decided, ITEMS);

    let rate = |d: std::time::Duration| ITEMS as f64 / d.as_secs_f64();
    let per_item = |d: std::time::Duration| d.as_nanos() as f64 / ITEMS as f64;
    println!("{ITEMS} items, reference policy (5 rules + score), validated in {compile:?}");
    println!(
        "  convert, keep all   {:>9.0} items/s ({:.0} ns/item)",
        rate(convert),
        per_item(convert)
    );
    println!(
        "  convert + drop      {:>9.0} items/s ({:.0} ns/item)",
        rate(convert_drop),
        per_item(convert_drop)
    );
    println!(
        "  evaluate only       {:>9.0} items/s ({:.0} ns/item)",
        rate(eval),
        per_item(eval)
    );
    println!(
        "  convert + evaluate  {:>9.0} items/s, 1 thread",
        rate(one_thread)
    );
    println!(
        "  convert + evaluate  {:>9.0} items/s, {THREADS} threads",
        rate(threads)
    );
}

fn convert_and_evaluate(
    policy: &CompiledPolicy,
    schema: &AttributeSchema,
    items: &[Json],
) -> usize {
    items
        .iter()
        .filter(|json| {
            let item = Item::from_json(json, schema).expect("generated items fit the schema");
            policy.evaluate(&item).is_ok()
        })
        .count()
}

/// (rule index or 5 for the default, score)
fn decide(policy: &CompiledPolicy, rule_ids: &[&str], item: &Item) -> (usize, i64) {
    let evaluation = policy
        .evaluate(item)
        .expect("generated items have every attribute");
    let rule = evaluation
        .rule_id
        .map_or(5, |id| rule_ids.iter().position(|r| *r == &*id).unwrap());
    (rule, (evaluation.score * 1e6).round() as i64)
}

/// The hand-written reference decision of the rule-engine study.
fn expected(it: &Json) -> (usize, i64) {
    let f = |k: &str| it[k].as_f64().unwrap();
    let rule = if it["scan"]["status"] != "clean" {
        0
    } else if it["scan"]["critical"].as_i64().unwrap() > 0 {
        1
    } else if f("quality") < 0.4 {
        2
    } else if it["tags"].as_array().unwrap().iter().any(|t| t == "banned") {
        3
    } else if it["kind"] == "video" && it["age_days"].as_i64().unwrap() > 365 && f("rating") < 2.0 {
        4
    } else {
        5
    };
    (
        rule,
        ((f("trending") * 0.7 + f("rating") * 10.0 * 0.3) * 1e6).round() as i64,
    )
}

fn schema() -> AttributeSchema {
    serde_json::from_value(json!({
        "id": "string", "kind": "string", "status": "string", "quality": "double",
        "rating": "double", "trending": "double", "tags": "list<string>",
        "scan": {"status": "string", "critical": "int"}, "age_days": "int",
        "owner": {"tier": "string"}
    }))
    .unwrap()
}

fn reference_doc() -> RulesDocument {
    let rule = |id: &str, condition: &str, decision: &str| json!({"id": id, "condition": condition, "decision": decision, "reason": id});
    serde_json::from_value(json!({
        "rules": [
            rule("scan-not-clean", r#"scan.status != "clean""#, "quarantine"),
            rule("critical-findings", "scan.critical > 0", "deny"),
            rule("low-quality", "quality < 0.4", "deny"),
            rule("banned-tag", r#""banned" in tags"#, "deny"),
            rule("old-low-rated-video", r#"kind == "video" && age_days > 365 && rating < 2.0"#, "deny"),
        ],
        "default_decision": "allow",
        "score": "trending * 0.7 + rating * 10.0 * 0.3"
    }))
    .unwrap()
}

/// The study's deterministic item generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

fn generate(n: usize) -> Vec<Json> {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let all_tags = [
        "news", "sports", "music", "kids", "tech", "gaming", "banned",
    ];
    (0..n)
        .map(|i| {
            let tags: Vec<&str> = all_tags
                .into_iter()
                .filter(|t| r.f() < if *t == "banned" { 0.03 } else { 0.25 })
                .collect();
            let scan_status = if r.f() < 0.95 {
                "clean"
            } else {
                r.pick(&["infected", "pending"])
            };
            let critical = if r.f() < 0.97 { 0 } else { 1 + r.next() % 3 };
            json!({
                "id": format!("m-{i}"),
                "kind": r.pick(&["video", "video", "image", "audio", "article"]),
                "status": r.pick(&["ready", "ready", "processing", "failed"]),
                "quality": (r.f() * 1000.0).round() / 1000.0 + 0.0001,
                "rating": (r.f() * 50.0).round() / 10.0 + 0.01,
                "trending": (r.f() * 10000.0).round() / 10.0 + 0.01,
                "tags": tags,
                "scan": {"status": scan_status, "critical": critical},
                "age_days": r.next() % 1000,
                "owner": {"tier": r.pick(&["free", "pro", "enterprise"])}
            })
        })
        .collect()
}
