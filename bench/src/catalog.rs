//! The catalog the `ingest` and `activation` scenarios work over: item `i` (from 0) is
//! `item-<i, 8 digits>`, generated deterministically from `i` alone (the same items on every
//! machine and every run), with the attributes of an artifact catalog, and the policy that
//! judges them: the schema of those attributes and eight first-match CEL rules.
//!
//! About 95% of the items are `ready` (the rest `pending`), so a Prepare snapshot holds about
//! 950,000 of 1,000,000 items; the rules allow about two thirds of them and spread the rest over
//! every rule, so each rule is reached and decides some items.

use gatehouse_events::catalog::CatalogChange;
use gatehouse_events::policy::{CreatePolicy, DraftVersion};
use gatehouse_events::rules::{AttributeSchema, RulesDocument};
use serde_json::{json, Map, Value};

const KINDS: [&str; 5] = ["container", "package", "image", "video", "document"];
const LICENSES: [&str; 6] = [
    "MIT",
    "Apache-2.0",
    "BSD-3-Clause",
    "GPL-3.0",
    "proprietary",
    "unknown",
];
const TAGS: [&str; 12] = [
    "stable",
    "beta",
    "internal",
    "public",
    "lts",
    "gpu",
    "arm64",
    "amd64",
    "signed",
    "legacy",
    "experimental",
    "banned",
];
const REGISTRIES: [&str; 4] = ["docker.io", "ghcr.io", "quay.io", "registry.internal"];

/// One generated item: its id, status and attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    pub status: &'static str,
    pub attributes: Map<String, Value>,
}

impl Item {
    /// The item as a catalog change (one line of an import file, one message of the stream).
    pub fn change(self) -> CatalogChange {
        CatalogChange::Upsert {
            id: self.id,
            status: self.status.to_owned(),
            attributes: self.attributes,
        }
    }
}

/// The id of item `i`.
pub fn item_id(i: u64) -> String {
    format!("item-{i:08}")
}

/// Item `i`.
pub fn item(i: u64) -> Item {
    let mut r = Rng(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x6A09_E667_F3BC_C908);
    let kind = KINDS[r.below(KINDS.len() as u64) as usize];
    let status = if r.below(100) < 95 {
        "ready"
    } else {
        "pending"
    };
    let scan_status = match r.below(1000) {
        0..=919 => "clean",
        920..=969 => "pending",
        970..=989 => "suspicious",
        _ => "infected",
    };
    let critical = match r.below(100) {
        0..=84 => 0,
        85..=94 => 1 + r.below(2),
        _ => 3 + r.below(5),
    };
    let tag_count = r.below(5);
    let tags: Vec<&str> = (0..tag_count)
        .map(|_| TAGS[r.below(TAGS.len() as u64 - 1) as usize])
        .collect::<Vec<_>>();
    let tags: Vec<&str> = tags
        .into_iter()
        .chain((r.below(200) == 0).then_some("banned"))
        .collect();
    let mut attributes = Map::new();
    attributes.insert("kind".into(), json!(kind));
    attributes.insert(
        "name".into(),
        json!(format!(
            "{}/team-{:02}/{kind}-{i}",
            REGISTRIES[r.below(4) as usize],
            r.below(40)
        )),
    );
    attributes.insert("quality".into(), json!((r.below(10_000) as f64) / 10_000.0));
    let downloads_scale = 1 << r.below(21);
    attributes.insert("downloads".into(), json!(r.below(downloads_scale)));
    let size_scale = 1 << (10 + r.below(23));
    attributes.insert("size_bytes".into(), json!(r.below(size_scale)));
    attributes.insert("age_days".into(), json!(r.below(4_000)));
    let license = match r.below(100) {
        0..=34 => 0,
        35..=64 => 1,
        65..=74 => 2,
        75..=84 => 3,
        85..=94 => 4,
        _ => 5,
    };
    attributes.insert("license".into(), json!(LICENSES[license]));
    attributes.insert("tags".into(), json!(tags));
    attributes.insert(
        "scan".into(),
        json!({"status": scan_status, "critical": critical, "scanner": "trivy"}),
    );
    Item {
        id: item_id(i),
        status,
        attributes,
    }
}

/// The attribute schema of the generated items.
pub fn schema() -> AttributeSchema {
    serde_json::from_value(json!({
        "kind": "string", "name": "string", "quality": "double", "downloads": "int",
        "size_bytes": "int", "age_days": "int", "license": "string", "tags": "list<string>",
        "scan": {"status": "string", "critical": "int", "scanner": "string"}
    }))
    .expect("the bench schema is valid")
}

/// The eight rules (first match wins) and the score the scenarios evaluate; `variant` moves
/// the quality threshold a little, so each repetition can draft a version of its own.
pub fn rules(variant: u64) -> RulesDocument {
    let quality = 0.15 + (variant % 10) as f64 / 100.0;
    serde_json::from_value(json!({
        "rules": [
            {"id": "infected", "condition": "scan.status == \"infected\"",
             "decision": "deny", "reason": "malware found by the scanner"},
            {"id": "critical-cves", "condition": "scan.critical >= 3",
             "decision": "quarantine", "reason": "three or more critical vulnerabilities"},
            {"id": "unscanned", "condition": "scan.status != \"clean\"",
             "decision": "quarantine", "reason": "not scanned clean yet"},
            {"id": "banned", "condition": "\"banned\" in tags",
             "decision": "deny", "reason": "carries a banned tag"},
            {"id": "license", "condition":
                "license == \"unknown\" || (license == \"proprietary\" && !(\"internal\" in tags))",
             "decision": "quarantine", "reason": "license needs review"},
            {"id": "oversized", "condition": "kind != \"video\" && size_bytes > 2147483648",
             "decision": "deny", "reason": "larger than 2 GiB"},
            {"id": "low-quality", "condition":
                format!("quality < {quality:?} && downloads < 1000"),
             "decision": "deny", "reason": "low quality and little used"},
            {"id": "abandoned", "condition":
                "age_days > 3000 && downloads < 50 && !tags.exists(t, t == \"lts\")",
             "decision": "deny", "reason": "old and unused"}
        ],
        "default_decision": "allow",
        "default_reason": "no rule objected",
        "score": "quality * 10.0 + double(min(downloads, 100000)) / 20000.0 - double(scan.critical)"
    }))
    .expect("the bench rules are valid")
}

/// `policy.create` of `policy_id` with [`schema`].
pub fn create(policy_id: &str) -> CreatePolicy {
    serde_json::from_value(json!({
        "policy_id": policy_id,
        "name": "Bench artifact catalog",
        "description": "created by gatehouse bench",
        "attributes": schema(),
    }))
    .expect("the bench policy is valid")
}

/// `policy.draft` of `policy_id` with [`rules`]`(variant)`.
pub fn draft(policy_id: &str, variant: u64) -> DraftVersion {
    DraftVersion {
        policy_id: policy_id.into(),
        rules: rules(variant),
        notes: format!("bench rules, variant {variant}"),
    }
}

/// splitmix64: tiny, fast and good enough to spread attributes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `[0, n)`; 0 when `n` is 0.
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use gatehouse_rules::CompiledPolicy;

    use super::*;

    #[test]
    fn an_item_is_the_same_every_time() {
        assert_eq!(item(41), item(41));
        assert_ne!(item(41).attributes, item(42).attributes);
        assert_eq!(item(7).id, "item-00000007");
    }

    #[test]
    fn the_rules_compile_and_every_rule_decides_some_items() {
        let policy = CompiledPolicy::compile(&rules(0), &schema()).expect("compiles");
        let mut decided: BTreeMap<String, u64> = BTreeMap::new();
        let mut ready = 0;
        for i in 0..20_000 {
            let it = item(i);
            ready += u64::from(it.status == "ready");
            let json = Value::Object(it.attributes);
            let converted = policy.item(&json).expect("the item fits the schema");
            let evaluation = policy.evaluate(&converted).expect("evaluates");
            let by = evaluation
                .rule_id
                .map_or("default".to_owned(), |r| r.to_string());
            *decided.entry(by).or_default() += 1;
        }
        assert!((18_500..19_500).contains(&ready), "{ready} ready");
        for rule in policy.rule_ids().chain(["default"]) {
            assert!(
                decided.get(rule).copied().unwrap_or(0) > 20,
                "{rule}: {decided:?}"
            );
        }
        let allowed = decided["default"] as f64 / 20_000.0;
        assert!((0.4..0.85).contains(&allowed), "{decided:?}");
    }
}
