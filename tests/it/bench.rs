//! `gatehouse bench <scenario> --quick` as a smoke test: every available scenario runs
//! in-process against the real nats-server and Postgres, finishes, and writes JSON holding its
//! figures. No timing is asserted: the figures of a loaded test machine mean nothing.

use std::path::PathBuf;

use gatehouse::settings::Settings;
use gatehouse_bench::{self as bench, BenchArgs, SCENARIOS};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn quick(scenario: &str, out: PathBuf) -> BenchArgs {
    BenchArgs {
        scenario: scenario.into(),
        quick: true,
        reps: None,
        duration: None,
        concurrency: None,
        rate: None,
        events: None,
        items: None,
        workers: None,
        batch: None,
        warmup: None,
        keep: false,
        out: Some(out),
    }
}

/// Runs `scenario --quick` and returns its JSON report.
async fn run_quick(scenario: &str) -> Value {
    let dir = std::env::temp_dir().join(format!("gatehouse-bench-{}", uuid::Uuid::new_v4()));
    let out = dir.join(format!("{scenario}.json"));
    let settings = Settings::from_env().expect("run the tests with scripts/test.sh");
    let (report, path) = bench::run_with(
        settings,
        &quick(scenario, out.clone()),
        CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("bench {scenario} --quick failed: {e:#}"));
    assert_eq!(path, out);
    assert_eq!(report.scenario, scenario);
    let json: Value = serde_json::from_slice(&std::fs::read(&out).expect("the JSON was written"))
        .expect("the JSON parses");
    let _ = std::fs::remove_dir_all(&dir);
    json
}

/// Every figure the scenario declares is in the JSON; each measured one has a value per
/// repetition and a median, min and max.
fn assert_figures(json: &Value, scenario: &str) {
    assert_eq!(json["scenario"], scenario);
    assert!(json["machine"]["cpus"].as_u64().unwrap_or(0) >= 1);
    assert!(json["versions"]["nats_server"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    assert!(json["versions"]["postgres"]
        .as_str()
        .is_some_and(|v| v.contains("PostgreSQL")));
    let reps = json["parameters"]["reps"].as_u64().expect("reps");
    assert!(reps >= 3, "at least three repetitions");
    let figures = json["figures"].as_array().expect("figures");
    let measured = figures
        .iter()
        .filter(|f| f["values"].as_array().is_some_and(|v| !v.is_empty()))
        .count();
    assert!(measured > 0, "{scenario} measured nothing: {figures:?}");
    let declared = bench::scenario(scenario).expect("scenario").specs;
    assert_eq!(figures.len(), declared.len());
    for (figure, spec) in figures.iter().zip(declared) {
        assert_eq!(figure["name"], spec.name);
        if figure["verdict"] == "unavailable"
            && figure["values"].as_array().is_none_or(Vec::is_empty)
        {
            let why = figure["unavailable"].as_str();
            assert!(why.is_some(), "{} says why", spec.name);
            assert_ne!(
                why,
                Some("no value was measured"),
                "{} was never measured",
                spec.name
            );
            continue;
        }
        let values = figure["values"].as_array().expect("values");
        assert!(!values.is_empty(), "{} has values", spec.name);
        for stat in ["median", "min", "max"] {
            assert!(figure[stat].is_f64(), "{} has a {stat}", spec.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_benchmark_runs_quick_and_writes_its_figures() {
    let json = run_quick("commands").await;
    assert_figures(&json, "commands");
    let rate = json["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "create.rate");
    assert_eq!(rate.unwrap()["values"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_benchmark_runs_quick_and_writes_its_figures() {
    let json = run_quick("delivery").await;
    assert_figures(&json, "delivery");
    let figure = |name: &str| {
        json["figures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name} is declared"))
            .clone()
    };
    for name in ["subscriber.p50_ms", "subscriber.p99_ms"] {
        let subscriber = figure(name);
        assert_ne!(subscriber["verdict"], "unavailable", "{subscriber}");
        assert_eq!(subscriber["values"].as_array().unwrap().len(), 3, "{name}");
    }
    let promotions = figure("promotions");
    assert!(promotions["min"].as_f64().unwrap() >= 1.0, "{promotions}");
    assert_eq!(figure("missing")["max"], 0.0);
    assert_eq!(json["parameters"]["subscriber_user"], "subscriber");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rebuild_benchmark_runs_quick_and_writes_its_figures() {
    let json = run_quick("rebuild").await;
    assert_figures(&json, "rebuild");
    assert_eq!(json["parameters"]["events"], 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_benchmark_runs_quick_and_writes_its_figures() {
    let json = run_quick("ingest").await;
    assert_figures(&json, "ingest");
    assert_eq!(json["parameters"]["items"], 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flags_benchmark_runs_quick_and_writes_its_figures() {
    let json = run_quick("flags").await;
    assert_figures(&json, "flags");
    let figure = |name: &str| {
        json["figures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name} is declared"))
            .clone()
    };
    for name in [
        "local.rate",
        "unleash.rate",
        "remote.rate",
        "propagation.p99_ms",
    ] {
        assert_eq!(
            figure(name)["values"].as_array().unwrap().len(),
            3,
            "{name}"
        );
    }
    // The equivalent flags answer alike in both engines.
    assert_eq!(figure("local.agreement")["max"], 100.0);
    assert_eq!(json["parameters"]["flags"], 40);
}

#[tokio::test]
async fn an_unknown_scenario_fails_with_a_clear_error_naming_the_scenarios() {
    let settings = Settings::from_env().expect("run the tests with scripts/test.sh");
    let out = std::env::temp_dir().join("gatehouse-bench-never-written.json");
    let e = bench::run_with(
        settings,
        &quick("ingestion", out.clone()),
        CancellationToken::new(),
    )
    .await
    .expect_err("an unknown scenario must not run");
    let message = e.to_string();
    assert!(
        message.contains("unknown scenario `ingestion`"),
        "{message}"
    );
    for s in SCENARIOS {
        assert!(message.contains(s.name), "{message} names {}", s.name);
    }
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activation_benchmark_runs_quick_with_worker_processes_and_writes_its_figures() {
    let json = run_quick("activation").await;
    assert_figures(&json, "activation");
    assert_eq!(json["parameters"]["items"], 5_000);
    let figures = json["figures"].as_array().unwrap();
    for name in [
        "w1.rate",
        "w2.rate",
        "w1.rss_mib",
        "w2.rss_mib",
        "eval.rate",
        "copy.rate",
    ] {
        let figure = figures.iter().find(|f| f["name"] == name).unwrap();
        assert_eq!(figure["values"].as_array().unwrap().len(), 3, "{name}");
    }
}

#[test]
fn gatehouse_bench_runs_the_bench_binary_beside_it() {
    // Both binaries are built into target/<profile>/, one level above this test binary.
    let me = std::env::current_exe().expect("the test binary");
    let dir = me
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let output = std::process::Command::new(dir.join("gatehouse"))
        .args(["bench", "list"])
        .output()
        .expect("run gatehouse bench list");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    for s in SCENARIOS {
        assert!(stdout.contains(s.name), "{stdout} names {}", s.name);
    }
    let unknown = std::process::Command::new(dir.join("gatehouse"))
        .args(["bench", "--no-such-option"])
        .output()
        .expect("run gatehouse bench");
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("--no-such-option"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decide_benchmark_runs_quick_and_writes_its_figures() {
    let json = run_quick("decide").await;
    assert_figures(&json, "decide");
    let figure = |name: &str| {
        json["figures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name} is declared"))
            .clone()
    };
    for name in ["decide.rate", "internal.rate", "raw.rate"] {
        let values = figure(name)["values"].as_array().unwrap().clone();
        assert_eq!(values.len(), 3, "{name}");
        assert!(values.iter().all(|v| v.as_f64().unwrap() > 0.0), "{name}");
    }
    for name in ["decide.errors", "internal.errors", "raw.errors"] {
        assert_eq!(figure(name)["max"].as_f64(), Some(0.0), "{name}");
    }
    assert_eq!(
        json["parameters"]["decide_caller"].as_str(),
        Some("svc (CLIENTS account)")
    );
}
