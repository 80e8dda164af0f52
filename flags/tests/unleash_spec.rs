//! Gatehouse's evaluation held to Unleash's own client specification
//! (`../shared/conformance/unleash-client-spec/`, beside the repository; see the README there).
//!
//! Every toggle of every suite is translated into a Gatehouse flag (the translation is
//! `docs/architecture.md`, *Flags*, "Unleash toggles as Gatehouse flags"); every test case whose
//! toggle translates is evaluated with `gatehouse_flags::evaluate` and must give Unleash's
//! expected result. A toggle that Gatehouse cannot express is skipped with its reason, and the
//! skips are printed (`cargo test -p gatehouse-flags --test unleash_spec -- --nocapture`).
//! A floor on the cases run keeps the test from silently skipping everything.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono_free::now_rfc3339;
use gatehouse_events::flag::{Bucketing, FlagState, FlagType, Rollout, Strategy};
use gatehouse_events::rules::{AttributeSchema, AttributeType};
use gatehouse_flags::{evaluate, CompiledFlag, EmergencyOverride, Switches};
use serde_json::{json, Map, Value};

/// Fewest spec cases that must run: 138 of the 227 `tests` ran, all agreeing, when this was
/// written (the 52 `variantTests` are not Gatehouse's: its flags have one on value).
const FLOOR: usize = 130;

mod chrono_free {
    /// A fixed "now" in RFC 3339, as Unleash SDKs fill `currentTime` when absent.
    pub fn now_rfc3339() -> String {
        "2026-12-05T12:00:00Z".to_owned()
    }
}

fn spec_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/unleash-client-spec")
}

/// Why a toggle (or a whole suite) is not expressible in Gatehouse.
type Skip = String;

/// The Gatehouse context of an Unleash context: its fields and properties flattened at the top
/// (where `stickiness` reads them) and the same under `unleash` (what translated rules read,
/// with `has()` guards for absent fields); `currentTime` filled as an SDK does.
fn context_of(unleash: &Value) -> Map<String, Value> {
    let mut flat = Map::new();
    if let Some(obj) = unleash.as_object() {
        for (k, v) in obj {
            if k == "properties" {
                if let Some(props) = v.as_object() {
                    for (pk, pv) in props {
                        flat.insert(pk.clone(), pv.clone());
                    }
                }
            } else {
                flat.insert(k.clone(), v.clone());
            }
        }
    }
    flat.entry("currentTime")
        .or_insert_with(|| Value::String(now_rfc3339()));
    let mut context = flat.clone();
    context.insert("unleash".into(), Value::Object(flat));
    context
}

/// The unit a caller names for Unleash's default stickiness: userId, else sessionId, else a
/// random id (Unleash's `random`).
fn default_unit(context: &Map<String, Value>) -> String {
    for key in ["userId", "sessionId"] {
        if let Some(Value::String(s)) = context.get(key) {
            if !s.is_empty() {
                return s.clone();
            }
        }
    }
    format!("random-{}", rand_id())
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0x9e37_79b9);
    N.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
}

fn param<'a>(strategy: &'a Value, name: &str) -> Option<&'a str> {
    strategy.get("parameters")?.get(name)?.as_str()
}

fn percentage(strategy: &Value, name: &str) -> Result<f64, Skip> {
    match param(strategy, name) {
        None => Ok(0.0),
        Some(p) => p
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("percentage `{p}` is not a number")),
    }
}

/// One Unleash constraint as a CEL condition over `unleash.<field>`, guarded by `has()`.
fn constraint(c: &Value, attributes: &mut BTreeMap<String, AttributeType>) -> Result<String, Skip> {
    let name = c["contextName"]
        .as_str()
        .ok_or("constraint without contextName")?;
    if !name
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        || name.starts_with(|ch: char| ch.is_ascii_digit())
    {
        return Err(format!("context field `{name}` is not a CEL identifier"));
    }
    attributes.insert(name.to_owned(), AttributeType::String);
    let v = format!("unleash.{name}");
    let guard = format!("has(unleash.{name})");
    let values: Vec<String> = c
        .get("values")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let value = c.get("value").and_then(Value::as_str).unwrap_or("");
    let case_insensitive = c
        .get("caseInsensitive")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let lit = |s: &str| serde_json::to_string(s).expect("a string");
    let any = |method: &str| -> String {
        let alternatives: Vec<String> = values
            .iter()
            .map(|x| format!("{v}.{method}({})", lit(x)))
            .collect();
        if alternatives.is_empty() {
            "false".into()
        } else {
            format!("({})", alternatives.join(" || "))
        }
    };
    let number = |x: &str| -> Result<String, Skip> {
        x.trim()
            .parse::<f64>()
            .map(|n| format!("{n:?}"))
            .map_err(|_| format!("NUM constraint value `{x}` is not a number"))
    };
    let op = c["operator"].as_str().unwrap_or("");
    let body = match op {
        "IN" | "NOT_IN" => {
            let list: Vec<String> = values.iter().map(|x| lit(x)).collect();
            format!("{v} in [{}]", list.join(", "))
        }
        "STR_CONTAINS" | "STR_STARTS_WITH" | "STR_ENDS_WITH" if case_insensitive => {
            return Err(format!(
                "{op} with caseInsensitive: Gatehouse rules have no lowerAscii"
            ))
        }
        "STR_CONTAINS" => any("contains"),
        "STR_STARTS_WITH" => any("startsWith"),
        "STR_ENDS_WITH" => any("endsWith"),
        "NUM_EQ" => format!("double({v}) == {}", number(value)?),
        "NUM_GT" => format!("double({v}) > {}", number(value)?),
        "NUM_GTE" => format!("double({v}) >= {}", number(value)?),
        "NUM_LT" => format!("double({v}) < {}", number(value)?),
        "NUM_LTE" => format!("double({v}) <= {}", number(value)?),
        "REGEX" => {
            let pattern = if case_insensitive {
                format!("(?i){value}")
            } else {
                value.to_owned()
            };
            format!("{v}.matches({})", lit(&pattern))
        }
        "DATE_AFTER" => format!("timestamp({v}) > timestamp({})", lit(value)),
        "DATE_BEFORE" => format!("timestamp({v}) < timestamp({})", lit(value)),
        other => return Err(format!("operator {other} has no Gatehouse rule equivalent")),
    };
    let guarded = format!("({guard} && {body})");
    let inverted = c.get("inverted").and_then(Value::as_bool).unwrap_or(false);
    Ok(match (op == "NOT_IN", inverted) {
        (false, false) | (true, true) => guarded,
        _ => format!("!{guarded}"),
    })
}

/// What one Unleash strategy becomes: a rollout without include/exclude.
fn strategy(s: &Value, toggle: &str) -> Result<Rollout, Skip> {
    let name = s["name"].as_str().unwrap_or("");
    if s.get("segments")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err("segments (shared constraint sets) are not a Gatehouse concept".into());
    }
    let mut rollout = Rollout {
        bucketing: Bucketing::Unleash,
        ..Rollout::default()
    };
    match name {
        "default" => {
            rollout.percentage = 100.0;
        }
        "gradualRolloutUserId" | "gradualRolloutSessionId" => {
            rollout.percentage = percentage(s, "percentage")?;
            rollout.group = Some(param(s, "groupId").unwrap_or("").to_owned());
            rollout.stickiness = Some(
                if name == "gradualRolloutUserId" {
                    "userId"
                } else {
                    "sessionId"
                }
                .to_owned(),
            );
        }
        "flexibleRollout" => {
            rollout.percentage = percentage(s, "rollout")?;
            let group = param(s, "groupId")
                .filter(|g| !g.is_empty())
                .unwrap_or(toggle);
            rollout.group = Some(group.to_owned());
            match param(s, "stickiness").unwrap_or("default") {
                "default" | "" => {}
                "random" => return Err("random stickiness is random by design".into()),
                other => rollout.stickiness = Some(other.to_owned()),
            }
        }
        "gradualRolloutRandom" => return Err("gradualRolloutRandom is random by design".into()),
        other => return Err(format!("strategy `{other}` has no Gatehouse equivalent")),
    }
    let constraints = s
        .get("constraints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !constraints.is_empty() {
        let mut attributes = BTreeMap::new();
        let conditions = constraints
            .iter()
            .map(|c| constraint(c, &mut attributes))
            .collect::<Result<Vec<_>, _>>()?;
        let mut schema: AttributeSchema = BTreeMap::new();
        schema.insert("unleash".into(), AttributeType::Object(attributes));
        rollout.strategy = Strategy::Rule;
        rollout.rule = Some(conditions.join(" && "));
        rollout.rule_attributes = schema;
    }
    Ok(rollout)
}

/// An Unleash toggle as a Gatehouse flag (boolean).
fn translate(feature: &Value) -> Result<FlagState, Skip> {
    let name = feature["name"].as_str().ok_or("toggle without a name")?;
    if feature
        .get("dependencies")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err("dependent features: Gatehouse flags do not depend on other flags".into());
    }
    let strategies = feature["strategies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut include = Vec::new();
    let mut rest = Vec::new();
    for s in &strategies {
        let plain = s
            .get("constraints")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
        if s["name"] == "userWithId" && plain {
            include.extend(
                param(s, "userIds")
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned),
            );
        } else if s["name"] == "userWithId" {
            return Err("userWithId with constraints".into());
        } else {
            rest.push(strategy(s, name)?);
        }
    }
    // `default` without constraints is everyone: it decides the OR alone.
    let everyone = rest.iter().any(|r| {
        r.strategy == Strategy::Percentage && r.percentage >= 100.0 && r.stickiness.is_none()
    });
    let mut rollout = if strategies.is_empty() || everyone {
        Rollout {
            percentage: 100.0,
            bucketing: Bucketing::Unleash,
            ..Rollout::default()
        }
    } else {
        match rest.len() {
            0 => Rollout {
                strategy: Strategy::Whitelist,
                stickiness: Some("userId".into()),
                bucketing: Bucketing::Unleash,
                ..Rollout::default()
            },
            1 => rest.remove(0),
            n => {
                return Err(format!(
                    "{n} bucketed strategies ORed: a Gatehouse rollout has one strategy"
                ))
            }
        }
    };
    if !include.is_empty() {
        match rollout.stickiness.as_deref() {
            Some("userId") => {}
            None if rollout.strategy != Strategy::Whitelist && rollout.percentage >= 100.0
                && rollout.strategy == Strategy::Percentage => {}
            None => rollout.stickiness = Some("userId".into()),
            Some(other) => {
                return Err(format!(
                    "userWithId ORed with a rollout sticky on `{other}`: include lists one kind of unit"
                ))
            }
        }
        if rollout.stickiness.is_none() && rollout.strategy != Strategy::Percentage {
            rollout.stickiness = Some("userId".into());
        }
        rollout.include = include;
    }
    let enabled = feature["enabled"].as_bool().unwrap_or(false);
    let at = chrono::DateTime::from_timestamp(0, 0).expect("epoch");
    Ok(FlagState {
        flag: name.to_owned(),
        description: String::new(),
        flag_type: FlagType::Boolean,
        schema: None,
        on_value: json!(true),
        off_value: json!(false),
        rollout,
        // A disabled toggle is Gatehouse's emergency stop: off whatever the strategies say.
        emergency_stop: (!enabled).then(|| "disabled in Unleash".to_owned()),
        archived: false,
        sequence: 1,
        created_at: at,
        updated_at: at,
        updated_by: "unleash".into(),
    })
}

#[test]
fn gatehouse_agrees_with_the_unleash_client_specification() {
    let dir = spec_dir();
    let index: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("index.json"))
            .unwrap_or_else(|e| panic!("{}: {e} (shared/ beside the repository)", dir.display())),
    )
    .expect("index.json lists the suites");
    let (mut ran, mut skipped, mut failed) = (0usize, Vec::new(), Vec::new());
    for file in &index {
        let suite: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).expect("suite"))
                .expect("suite JSON");
        let tests = suite["tests"].as_array().cloned().unwrap_or_default();
        let Some(features) = suite["state"]["features"].as_array() else {
            for t in &tests {
                skipped.push(format!(
                    "{file}: {}: the suite's state is delta-API events, not a feature list",
                    t["description"].as_str().unwrap_or("?")
                ));
            }
            continue;
        };
        let mut flags = BTreeMap::new();
        let mut untranslatable = BTreeMap::new();
        for f in features {
            let name = f["name"].as_str().unwrap_or("").to_owned();
            match translate(f) {
                Ok(state) => {
                    flags.insert(name, CompiledFlag::new(state));
                }
                Err(why) => {
                    untranslatable.insert(name, why);
                }
            }
        }
        for t in &tests {
            let toggle = t["toggleName"].as_str().unwrap_or("");
            let description = t["description"].as_str().unwrap_or("?");
            if let Some(why) = untranslatable.get(toggle) {
                skipped.push(format!("{file}: {description}: {why}"));
                continue;
            }
            let context = context_of(&t["context"]);
            let unit = default_unit(&context);
            let got = evaluate(
                toggle,
                flags.get(toggle),
                &Switches {
                    environment: EmergencyOverride::None,
                    safe_mode: false,
                },
                Some(&unit),
                &context,
            );
            ran += 1;
            let expected = t["expectedResult"].as_bool().expect("expectedResult");
            if got.enabled != expected {
                failed.push(format!(
                    "{file}: {description}: expected {expected}, got {} ({:?}, bucket {:?}; rollout {:?})",
                    got.enabled,
                    got.reason,
                    got.bucket,
                    flags.get(toggle).map(|f| &f.state().rollout)
                ));
            }
        }
    }
    println!(
        "Unleash client specification: {ran} cases run, {} skipped:",
        skipped.len()
    );
    for s in &skipped {
        println!("  skipped {s}");
    }
    assert!(
        failed.is_empty(),
        "{} cases disagree:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert!(ran >= FLOOR, "only {ran} spec cases ran (floor {FLOOR})");
}
