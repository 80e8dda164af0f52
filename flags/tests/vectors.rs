//! `docs/bucketing-vectors.json`: the bucketing of both modes, for other languages to check
//! their implementation against. This test checks ours against the file; with
//! `GATEHOUSE_WRITE_VECTORS=1` it writes the file instead (only ever to add cases).

use gatehouse_events::flag::Bucketing;
use gatehouse_flags::bucket::{bucket, murmur3_x86_32, within};
use serde_json::{json, Value};

fn path() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("../docs/bucketing-vectors.json")
}

fn mode_name(mode: Bucketing) -> &'static str {
    match mode {
        Bucketing::Default => "default",
        Bucketing::Unleash => "unleash",
    }
}

fn generate() -> Value {
    let units = [
        "123",
        "999",
        "user-1",
        "repo:acme/widgets",
        "tenant-42",
        "",
        "ünïcødé",
        "日本語",
        "a",
    ];
    let groups = ["gr1", "groupX", "ranker.policy", "checkout-v2"];
    let percentages = [0.0, 0.01, 1.0, 5.0, 25.5, 50.0, 99.99, 100.0];
    let mut cases = Vec::new();
    for mode in [Bucketing::Default, Bucketing::Unleash] {
        for group in groups {
            for unit in units {
                let key = format!("{group}:{unit}");
                let b = bucket(mode, group, unit);
                let on: Vec<Value> = percentages
                    .iter()
                    .map(|p| json!([p, within(mode, b, *p)]))
                    .collect();
                cases.push(json!({
                    "mode": mode_name(mode), "group": group, "unit": unit,
                    "key": key, "murmur3": murmur3_x86_32(key.as_bytes(), 0),
                    "bucket": b, "enabled_at": on,
                }));
            }
        }
    }
    json!({
        "about": "Gatehouse bucketing vectors. murmur3 = MurmurHash3 x86_32 of the UTF-8 bytes of key = \"<group>:<unit>\", seed 0. default: bucket = murmur3 % 10000 + 1, enabled iff round(percentage * 100) > 0 and bucket <= round(percentage * 100). unleash: bucket = murmur3 % 100 + 1, enabled iff percentage > 0 and bucket <= percentage. enabled_at lists [percentage, enabled].",
        "cases": cases,
    })
}

#[test]
fn the_implementation_matches_the_published_vectors() {
    if std::env::var("GATEHOUSE_WRITE_VECTORS").is_ok() {
        let text = serde_json::to_string_pretty(&generate()).unwrap() + "\n";
        std::fs::write(path(), text).unwrap();
    }
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(path()).expect("docs/bucketing-vectors.json"),
    )
    .expect("JSON");
    let cases = file["cases"].as_array().expect("cases");
    assert!(cases.len() >= 50);
    for case in cases {
        let mode = match case["mode"].as_str().unwrap() {
            "default" => Bucketing::Default,
            _ => Bucketing::Unleash,
        };
        let (group, unit) = (
            case["group"].as_str().unwrap(),
            case["unit"].as_str().unwrap(),
        );
        let key = format!("{group}:{unit}");
        assert_eq!(case["key"], json!(key));
        assert_eq!(
            case["murmur3"],
            json!(murmur3_x86_32(key.as_bytes(), 0)),
            "{case}"
        );
        let b = bucket(mode, group, unit);
        assert_eq!(case["bucket"], json!(b), "{case}");
        for pair in case["enabled_at"].as_array().unwrap() {
            let p = pair[0].as_f64().unwrap();
            assert_eq!(pair[1], json!(within(mode, b, p)), "{case} at {p}");
        }
    }
}
