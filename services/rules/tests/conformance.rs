//! The cel-spec conformance cases that need no protobuf messages (`portable: true` in
//! `<workspace>/../shared/conformance/cel-spec/celspec_simple.jsonl`; see
//! `shared/conformance/README.md`),
//! each compiled and evaluated through Gatehouse's own path ([`CompiledExpression`]: the
//! parse limits, allow-lists, dry run and evaluation policies get).
//!
//! A case passes when it yields exactly the expected value (same type and value), or an error
//! where one is expected (a compile-time refusal counts: Gatehouse reports errors early; the
//! wording is not compared), or `true` where the case expects nothing else (simple.proto: an
//! unset result matcher means `true`). Each case that does not pass is listed in
//! `tests/conformance_skips.txt` under the reason; the test fails on any other failing case,
//! and on a listed case that now passes, so the list stays honest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use cel::objects::Key;
use cel::Value;
use gatehouse_rules::{AttributeSchema, AttributeType, CompiledExpression, Item};
use serde::Deserialize;
use serde_json::{json, Value as Json};

const SKIPS: &str = include_str!("conformance_skips.txt");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    file: String,
    section: String,
    name: String,
    expr: String,
    bindings: BTreeMap<String, Json>,
    expect: Json,
    portable: bool,
}

#[test]
fn cel_spec_conformance_cases_pass_or_are_listed_as_skipped() {
    let skips = skip_list();
    let mut failed_unlisted = String::new();
    let mut listed_but_pass = Vec::new();
    let (mut passed, mut refused, mut skipped) = (0, 0, 0);
    let (mut seen, mut ids) = (HashMap::new(), HashSet::new());
    for case in cases() {
        let id = unique_id(&case, &mut seen);
        ids.insert(id.clone());
        let outcome = catch_unwind(AssertUnwindSafe(|| run(&case)))
            .unwrap_or_else(|_| Err("the evaluation panicked".to_owned()));
        match (outcome, skips.contains_key(&id)) {
            (Ok(pass), false) => {
                passed += 1;
                refused += usize::from(pass == Pass::Refused);
            }
            (Ok(_), true) => listed_but_pass.push(id),
            (Err(_), true) => skipped += 1,
            (Err(why), false) => {
                let _ = writeln!(failed_unlisted, "{id}\n    `{}`: {why}", case.expr);
            }
        }
    }
    let stale: Vec<_> = skips.keys().filter(|id| !ids.contains(*id)).collect();
    println!(
        "cel-spec conformance: {passed} passed ({refused} of them expect an error and were \
         refused when compiled), {skipped} skipped (listed with reasons)"
    );
    assert!(
        failed_unlisted.is_empty(),
        "cases that fail and are not in conformance_skips.txt:\n{failed_unlisted}"
    );
    assert!(
        listed_but_pass.is_empty(),
        "cases in conformance_skips.txt that now pass (take them off the list): {listed_but_pass:#?}"
    );
    assert!(
        stale.is_empty(),
        "conformance_skips.txt names no such portable case: {stale:#?}"
    );
}

/// The portable cases, in file order.
fn cases() -> Vec<Case> {
    let root = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("../..");
    let path = root.join("../shared/conformance/cel-spec/celspec_simple.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the cel-spec conformance data is missing: cannot read {} ({e}); it is expected in \
             `shared/` beside the repository clone",
            path.display()
        )
    });
    let cases: Vec<Case> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a conformance case"))
        .filter(|case: &Case| case.portable)
        .collect();
    assert!(cases.len() > 1_000, "only {} portable cases", cases.len());
    cases
}

/// `file/section/name`, with `#2`, `#3` ... on later cases of the same name (a few repeat).
fn unique_id(case: &Case, seen: &mut HashMap<String, usize>) -> String {
    let id = format!("{}/{}/{}", case.file, case.section, case.name);
    let count = seen.entry(id.clone()).or_insert(0);
    *count += 1;
    match *count {
        1 => id,
        n => format!("{id}#{n}"),
    }
}

/// The skipped case ids, each with the reason heading (`## reason`) it is listed under.
fn skip_list() -> BTreeMap<String, String> {
    let mut reason = None;
    let mut skips = BTreeMap::new();
    for line in SKIPS.lines().map(str::trim) {
        if let Some(heading) = line.strip_prefix("## ") {
            reason = Some(heading.to_owned());
        } else if !line.is_empty() && !line.starts_with('#') {
            let reason = reason
                .clone()
                .expect("every skipped case has a reason heading");
            let earlier = skips.insert(line.to_owned(), reason);
            assert!(earlier.is_none(), "{line} is listed twice");
        }
    }
    skips
}

/// How a case passed.
#[derive(PartialEq)]
enum Pass {
    /// It evaluated to the expected value or error.
    Evaluated,
    /// It expects an error, and Gatehouse refused to compile it.
    Refused,
}

/// Compiles and evaluates `case`; `Err` says how the outcome differs from the expected one.
fn run(case: &Case) -> Result<Pass, String> {
    let (schema, attributes) = declared(&case.bindings)?;
    let result = match CompiledExpression::compile(&case.expr, &schema) {
        Err(errors) => Err((Pass::Refused, format!("refused: {}", errors[0]))),
        Ok(expression) => {
            let item = Item::from_json(&attributes, &schema).map_err(|e| e.to_string())?;
            let result = expression.evaluate(&item);
            result.map_err(|e| (Pass::Evaluated, e.to_string()))
        }
    };
    let expected = match case.expect["kind"].as_str() {
        Some("value") => &case.expect["value"],
        Some("none") => &json!({"boolValue": true}),
        Some("eval_error") => {
            return match result {
                Err((pass, _)) => Ok(pass),
                Ok(value) => Err(format!("expected an error, got {value:?}")),
            };
        }
        other => return Err(format!("unknown expectation {other:?}")),
    };
    match result {
        Ok(value) if same(&value, expected) => Ok(Pass::Evaluated),
        Ok(value) => Err(format!("expected {expected}, got {value:?}")),
        Err((_, error)) => Err(format!("expected {expected}, got the error {error}")),
    }
}

/// The bindings as declared attributes and an item's attributes; `Err` for a binding of a
/// type no attribute can have.
fn declared(bindings: &BTreeMap<String, Json>) -> Result<(AttributeSchema, Json), String> {
    let mut schema = AttributeSchema::new();
    let mut attributes = serde_json::Map::new();
    for (name, value) in bindings {
        let (ty, json) = match value.as_object().and_then(|o| o.iter().next()) {
            Some((kind, Json::String(n))) if kind == "int64Value" => {
                let n: i64 = n.parse().map_err(|e| format!("{n}: {e}"))?;
                (AttributeType::Int, json!(n))
            }
            Some((kind, s @ Json::String(_))) if kind == "stringValue" => {
                (AttributeType::String, s.clone())
            }
            Some((kind, b @ Json::Bool(_))) if kind == "boolValue" => {
                (AttributeType::Bool, b.clone())
            }
            _ => {
                return Err(format!(
                    "binding `{name}` = {value}: no attribute type holds it"
                ))
            }
        };
        schema.insert(name.clone(), ty);
        attributes.insert(name.clone(), json);
    }
    Ok((schema, Json::Object(attributes)))
}

/// Whether `value` is exactly the conformance `Value` `expected`: the same type and value.
fn same(value: &Value, expected: &Json) -> bool {
    let Some((kind, x)) = expected.as_object().and_then(|o| o.iter().next()) else {
        return false;
    };
    match (kind.as_str(), value) {
        ("boolValue", Value::Bool(b)) => x.as_bool() == Some(*b),
        ("int64Value", Value::Int(i)) => x.as_str().and_then(|s| s.parse().ok()) == Some(*i),
        ("uint64Value", Value::UInt(u)) => x.as_str().and_then(|s| s.parse().ok()) == Some(*u),
        ("doubleValue", Value::Float(f)) => same_double(*f, x),
        ("stringValue", Value::String(s)) => x.as_str() == Some(s.as_str()),
        ("bytesValue", Value::Bytes(b)) => x.as_str().and_then(base64) == Some(b.to_vec()),
        ("nullValue", Value::Null) => true,
        ("listValue", Value::List(list)) => {
            let values = x["values"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            values.len() == list.len() && list.iter().zip(values).all(|(v, e)| same(v, e))
        }
        ("mapValue", Value::Map(map)) => {
            let entries = x["entries"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            entries.len() == map.map.len()
                && entries.iter().all(|entry| {
                    let found = key(&entry["key"]).and_then(|k| map.map.get(&k));
                    found.is_some_and(|v| same(v, &entry["value"]))
                })
        }
        _ => false,
    }
}

fn same_double(f: f64, expected: &Json) -> bool {
    match expected {
        Json::Number(n) => n.as_f64() == Some(f),
        Json::String(s) if s == "NaN" => f.is_nan(),
        Json::String(s) if s == "Infinity" => f == f64::INFINITY,
        Json::String(s) if s == "-Infinity" => f == f64::NEG_INFINITY,
        _ => false,
    }
}

/// A conformance `Value` as a CEL map key.
fn key(expected: &Json) -> Option<Key> {
    let (kind, x) = expected.as_object()?.iter().next()?;
    Some(match kind.as_str() {
        "boolValue" => Key::Bool(x.as_bool()?),
        "int64Value" => Key::Int(x.as_str()?.parse().ok()?),
        "uint64Value" => Key::Uint(x.as_str()?.parse().ok()?),
        "stringValue" => Key::String(x.as_str()?.to_owned().into()),
        _ => return None,
    })
}

/// Standard base64 (with padding), as protobuf's JSON form writes bytes.
fn base64(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digits = text.trim_end_matches('=').bytes();
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for digit in digits {
        let sextet = ALPHABET.iter().position(|&a| a == digit)?;
        buffer = ((buffer << 6) | sextet as u32) & 0xFFFF;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}
