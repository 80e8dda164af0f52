//! OFREP (issue 12 part 3) over a real port: every status and error code of both routes, the
//! bulk `ETag` / `If-None-Match` / 304 and a flag change invalidating it, responses checked
//! against the OFREP OpenAPI document's own schemas, and the official OpenFeature Node and
//! Python SDKs (installed by `scripts/test.d/30-ofrep-clients.sh`) answering what
//! `flag.evaluate` over NATS answers for the same inputs.
//!
//! `../shared/conformance/ofrep/` holds no test cases beyond the OpenAPI document (used here for
//! the response schemas). Not exercised: `service/event-streams.yaml` (Gatehouse offers no SSE
//! event stream), the provider guidelines and ADRs 0007–0010 (they describe SDK behaviour), 429
//! (Gatehouse does not rate-limit) and 500 `GENERAL` (needs the database to fail mid-request;
//! the mapping is unit-tested in `http::ofrep`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use gatehouse_events::envelope::CommandAccepted;
use gatehouse_events::flag::{EvaluateFlag, Evaluation, Reason};
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;

use crate::helpers::{spawn_app_with_users, TestApp};
use crate::http_client::{authorization, issue, send, serve, Answer};

const ONE: &str = "/ofrep/v1/evaluate/flags/";
const ALL: &str = "/ofrep/v1/evaluate/flags";

/// A flag command as alice, waited for until the read model shows it.
async fn flag(app: &TestApp, name: &str, body: Value) -> CommandAccepted {
    let done = app
        .client
        .command("flag", name, &app.sender("alice"), body)
        .await
        .unwrap_or_else(|e| panic!("flag.{name}: {e:?}"));
    app.client.wait_for(&done).await.expect("projected");
    done
}

/// Flag commands as alice, in order, each waited for until the read model shows it.
async fn flags<const N: usize>(app: &TestApp, commands: [(&str, Value); N]) {
    for (name, body) in commands {
        flag(app, name, body).await;
    }
}

/// `flag.evaluate` over NATS, as the OFREP routes call it: the unit is `targetingKey`, the
/// context the whole context.
async fn evaluate(app: &TestApp, key: &str, context: &Value) -> Evaluation {
    let context: Map<String, Value> = serde_json::from_value(context.clone()).unwrap();
    let unit = context
        .get("targetingKey")
        .and_then(Value::as_str)
        .map(str::to_owned);
    app.client
        .query(
            "flag",
            "evaluate",
            &EvaluateFlag {
                flag: key.into(),
                unit,
                context,
            },
        )
        .await
        .expect("flag.evaluate")
}

/// The OFREP reason documented for a Gatehouse reason (docs/protocol.md, *OFREP*), written out
/// here rather than taken from the server's code.
fn documented_reason(e: &Evaluation) -> &'static str {
    match e.reason {
        Reason::EnvironmentOverride
        | Reason::SafeMode
        | Reason::EmergencyStop
        | Reason::Archived => "DISABLED",
        Reason::Bucket => "SPLIT",
        Reason::Category if e.bucket.is_some() => "SPLIT",
        Reason::Excluded
        | Reason::Included
        | Reason::NotIncluded
        | Reason::Rule
        | Reason::Category => "TARGETING_MATCH",
        Reason::UnknownFlag | Reason::NoUnit => panic!("{e:?} is a failure, not a reason"),
    }
}

fn gatehouse_reason(e: &Evaluation) -> Value {
    serde_json::to_value(e.reason).unwrap()
}

// ----- the OFREP OpenAPI document's schemas -----

fn repo() -> PathBuf {
    let tests = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    PathBuf::from(tests).parent().unwrap().to_owned()
}

/// The Python of `$GATEHOUSE_VENV` (default `<repo>/.gatehouse/venv`), where
/// `scripts/test.d/30-ofrep-clients.sh` installs the OpenFeature SDK and PyYAML.
fn venv_python() -> PathBuf {
    let venv = std::env::var("GATEHOUSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("GATEHOUSE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|_| repo().join(".gatehouse"))
                .join("venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the tests with scripts/test.sh (scripts/test.d/30-ofrep-clients.sh \
         installs the OpenFeature clients)",
        python.display()
    );
    python
}

/// Runs `program args` with `stdin`; its stdout as JSON, or a panic with its stderr.
async fn run_json(program: &std::path::Path, args: &[&str], cwd: PathBuf, stdin: &Value) -> Value {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.to_string().as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} printed no JSON ({e}): {}",
            program.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Validators for the OFREP document's response schemas, by schema name.
struct Ofrep(HashMap<&'static str, jsonschema::Validator>);

impl Ofrep {
    /// Reads `conformance/ofrep/service/openapi.yaml` (YAML → JSON with the venv's PyYAML).
    /// One fix: the spec's `codeDefaultFlag` (`properties: {}`) matches every object, so the
    /// `oneOf` of `evaluationSuccess` would refuse every value; it is read as what its
    /// description says, an answer without `value`.
    async fn load() -> Self {
        let spec = repo().join("../shared/conformance/ofrep/service/openapi.yaml");
        let spec = spec.to_str().unwrap().to_owned();
        let script =
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)";
        let mut doc = run_json(&venv_python(), &["-c", script, &spec], repo(), &Value::Null).await;
        doc["components"]["schemas"]["codeDefaultFlag"] =
            json!({"type": "object", "not": {"required": ["value"]}});
        let mut validators = HashMap::new();
        for name in [
            "serverEvaluationSuccess",
            "evaluationFailure",
            "flagNotFound",
            "bulkEvaluationSuccess",
            "bulkEvaluationFailure",
            "generalErrorResponse",
        ] {
            let mut schema = doc.clone();
            schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
            schema["$ref"] = json!(format!("#/components/schemas/{name}"));
            let validator = jsonschema::validator_for(&schema)
                .unwrap_or_else(|e| panic!("compile {name}: {e}"));
            validators.insert(name, validator);
        }
        Ofrep(validators)
    }

    fn check(&self, schema: &str, instance: &Value) {
        let errors: Vec<String> = self.0[schema]
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{instance} is not a valid {schema}: {errors:?}"
        );
    }
}

// ----- the routes, through a raw HTTP client -----

#[tokio::test]
async fn ofrep_single_flag_answers_every_status_and_error_code() {
    let app = spawn_app_with_users().await;
    let (addr, stop) = serve(&app).await;
    let ofrep = Ofrep::load().await;
    let svc = authorization(&app, "svc").await;
    let bob = authorization(&app, "bob").await;
    let auth = [("Authorization", svc.as_str())];
    flags(
        &app,
        [
            (
                "create",
                json!({"flag": "checkout.new", "reason": "new checkout"}),
            ),
            (
                "set_rollout",
                json!({"flag": "checkout.new", "percentage": 50,
                "include": ["vip"], "exclude": ["banned"], "reason": "half"}),
            ),
            (
                "create",
                json!({"flag": "ui.theme", "type": "json",
                "on_value": {"color": "blue", "dense": true},
                "off_value": {"color": "grey", "dense": false}, "reason": "theme"}),
            ),
            (
                "set_rollout",
                json!({"flag": "ui.theme", "percentage": 100,
                "stickiness": "tenant", "reason": "everyone"}),
            ),
        ],
    )
    .await;

    // A value for each unit, as flag.evaluate says, with variant, OFREP reason and metadata.
    let mut variants = Vec::new();
    for unit in ["u-1", "u-2", "u-3", "u-4", "u-5", "u-6", "vip", "banned"] {
        let context = json!({"targetingKey": unit, "plan": "pro"});
        let body = json!({"context": context}).to_string();
        let got = send(
            addr,
            "POST",
            &format!("{ONE}checkout.new"),
            &auth,
            body.as_bytes(),
        )
        .await;
        assert_eq!(got.status, 200, "{}", got.text);
        ofrep.check("serverEvaluationSuccess", &got.json);
        let want = evaluate(&app, "checkout.new", &context).await;
        let mut metadata = json!({"gatehouseReason": gatehouse_reason(&want)});
        if let Some(bucket) = want.bucket {
            metadata["bucket"] = bucket.into();
        }
        assert_eq!(
            got.json,
            json!({"key": "checkout.new", "value": want.value, "reason": documented_reason(&want),
                   "variant": if want.enabled { "on" } else { "off" }, "metadata": metadata}),
            "{unit}"
        );
        variants.push(got.json["variant"].as_str().unwrap().to_owned());
    }
    assert!(variants.contains(&"on".to_owned()) && variants.contains(&"off".to_owned()));
    let vip = send(
        addr,
        "POST",
        &format!("{ONE}checkout.new"),
        &auth,
        br#"{"context": {"targetingKey": "vip"}}"#,
    )
    .await;
    assert_eq!(
        (vip.json["value"].clone(), vip.json["reason"].clone()),
        (json!(true), json!("TARGETING_MATCH"))
    );

    // The unit of a flag with a stickiness attribute is that attribute, not targetingKey.
    let theme = send(
        addr,
        "POST",
        &format!("{ONE}ui.theme"),
        &auth,
        br#"{"context": {"targetingKey": "u-1", "tenant": "acme"}}"#,
    )
    .await;
    assert_eq!(theme.status, 200, "{}", theme.text);
    ofrep.check("serverEvaluationSuccess", &theme.json);
    assert_eq!(theme.json["value"], json!({"color": "blue", "dense": true}));
    let no_tenant = send(
        addr,
        "POST",
        &format!("{ONE}ui.theme"),
        &auth,
        br#"{"context": {"targetingKey": "u-1"}}"#,
    )
    .await;
    assert_eq!(
        (no_tenant.status, no_tenant.json["errorCode"].as_str()),
        (400, Some("TARGETING_KEY_MISSING")),
        "{}",
        no_tenant.text
    );
    ofrep.check("evaluationFailure", &no_tenant.json);

    // OFREP's errors: 404 FLAG_NOT_FOUND, 400 TARGETING_KEY_MISSING / INVALID_CONTEXT / PARSE_ERROR.
    let cases: [(&str, &[u8], u16, &str); 7] = [
        (
            "nope.flag",
            br#"{"context": {"targetingKey": "u-1"}}"#,
            404,
            "FLAG_NOT_FOUND",
        ),
        (
            "checkout.new",
            br#"{"context": {"plan": "pro"}}"#,
            400,
            "TARGETING_KEY_MISSING",
        ),
        ("checkout.new", br#"{}"#, 400, "TARGETING_KEY_MISSING"),
        (
            "checkout.new",
            br#"{"context": {"targetingKey": 42}}"#,
            400,
            "INVALID_CONTEXT",
        ),
        (
            "checkout.new",
            br#"{"context": "u-1"}"#,
            400,
            "INVALID_CONTEXT",
        ),
        ("checkout.new", b"{not json", 400, "PARSE_ERROR"),
        ("checkout.new", b"", 400, "PARSE_ERROR"),
    ];
    for (key, body, status, code) in cases {
        let got = send(addr, "POST", &format!("{ONE}{key}"), &auth, body).await;
        assert_eq!(
            (
                got.status,
                got.json["errorCode"].as_str(),
                got.json["key"].as_str()
            ),
            (status, Some(code), Some(key)),
            "{}",
            got.text
        );
        assert!(!got.json["errorDetails"].as_str().unwrap().is_empty());
        ofrep.check(
            if status == 404 {
                "flagNotFound"
            } else {
                "evaluationFailure"
            },
            &got.json,
        );
    }
    let huge = vec![b' '; 300 * 1024];
    let got = send(addr, "POST", &format!("{ONE}checkout.new"), &auth, &huge).await;
    assert_eq!(
        (got.status, got.json["errorCode"].as_str()),
        (400, Some("PARSE_ERROR"))
    );

    // Tokens: none or unknown 401, a user without the service role 403 (Gatehouse's error
    // body); OFREP's X-API-Key carries the same token.
    let body = br#"{"context": {"targetingKey": "u-1"}}"#;
    let path = format!("{ONE}checkout.new");
    let code = |a: &Answer| (a.status, a.json["code"].as_str().map(str::to_owned));
    let none = send(addr, "POST", &path, &[], body).await;
    assert_eq!(
        code(&none),
        (401, Some("unauthenticated".into())),
        "{}",
        none.text
    );
    let forged = send(
        addr,
        "POST",
        &path,
        &[("Authorization", "Bearer gh_0000.ffff")],
        body,
    )
    .await;
    assert_eq!(code(&forged), (401, Some("unauthenticated".into())));
    let viewer = send(
        addr,
        "POST",
        &path,
        &[("Authorization", bob.as_str())],
        body,
    )
    .await;
    assert_eq!(
        code(&viewer),
        (403, Some("forbidden".into())),
        "{}",
        viewer.text
    );
    let key = svc.strip_prefix("Bearer ").unwrap();
    let api_key = send(addr, "POST", &path, &[("X-API-Key", key)], body).await;
    assert_eq!(api_key.status, 200, "{}", api_key.text);
    let wrong_method = send(addr, "GET", &path, &auth, b"").await;
    assert_eq!(
        code(&wrong_method),
        (404, Some("not_found".into())),
        "{}",
        wrong_method.text
    );

    // An emergency stop: the off value, DISABLED.
    flag(
        &app,
        "emergency_stop",
        json!({"flag": "checkout.new", "reason": "incident"}),
    )
    .await;
    let stopped = send(
        addr,
        "POST",
        &path,
        &auth,
        br#"{"context": {"targetingKey": "vip"}}"#,
    )
    .await;
    assert_eq!(
        (
            stopped.json["value"].clone(),
            stopped.json["variant"].clone(),
            stopped.json["reason"].clone()
        ),
        (json!(false), json!("off"), json!("DISABLED"))
    );
    assert_eq!(
        stopped.json["metadata"]["gatehouseReason"],
        "emergency_stop"
    );
    // Evaluating changed nothing.
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE aggregate_type = 'flag'")
            .await,
        5
    );
    stop.cancel();
    app.stop().await;
}

#[tokio::test]
async fn ofrep_bulk_answers_every_flag_with_an_etag_that_changes_with_flags_and_context() {
    let app = spawn_app_with_users().await;
    let (addr, stop) = serve(&app).await;
    let ofrep = Ofrep::load().await;
    let svc = authorization(&app, "svc").await;
    let bob = authorization(&app, "bob").await;
    let auth = [("Authorization", svc.as_str())];
    // No flag yet: an empty list, and still the service role.
    let empty = send(
        addr,
        "POST",
        ALL,
        &auth,
        br#"{"context": {"targetingKey": "u-1"}}"#,
    )
    .await;
    assert_eq!(
        (empty.status, empty.json.clone()),
        (200, json!({"flags": []})),
        "{}",
        empty.text
    );
    let viewer = send(addr, "POST", ALL, &[("Authorization", bob.as_str())], b"{}").await;
    assert_eq!(
        (viewer.status, viewer.json["code"].as_str()),
        (403, Some("forbidden"))
    );
    let none = send(addr, "POST", ALL, &[], b"{}").await;
    assert_eq!(
        (none.status, none.json["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    flags(
        &app,
        [
            ("create", json!({"flag": "a.zero", "reason": "r"})),
            ("create", json!({"flag": "b.full", "reason": "r"})),
            (
                "set_rollout",
                json!({"flag": "b.full", "percentage": 100, "reason": "all"}),
            ),
            (
                "create",
                json!({"flag": "c.json", "type": "json", "on_value": {"v": 2},
                "off_value": {"v": 1}, "reason": "r"}),
            ),
        ],
    )
    .await;

    let context = json!({"targetingKey": "u-7", "plan": "pro"});
    let body = json!({"context": context}).to_string();
    let first = send(addr, "POST", ALL, &auth, body.as_bytes()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    ofrep.check("bulkEvaluationSuccess", &first.json);
    let flags = first.json["flags"].as_array().unwrap();
    let keys: Vec<&str> = flags.iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["a.zero", "b.full", "c.json"]);
    for answer in flags {
        let key = answer["key"].as_str().unwrap();
        let want = evaluate(&app, key, &context).await;
        assert_eq!(
            (
                &answer["value"],
                answer["variant"].as_str(),
                answer["reason"].as_str()
            ),
            (
                &*want.value,
                Some(if want.enabled { "on" } else { "off" }),
                Some(documented_reason(&want))
            ),
            "{key}"
        );
    }
    let etag = first.header("etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(first.header("cache-control"), Some("private, no-cache"));

    // The same context and flags: 304 without a body; a list, a weak tag and `*` match too.
    for tag in [etag.clone(), format!("\"other\", W/{etag}"), "*".to_owned()] {
        let again = revalidate(addr, &svc, &tag, body.as_bytes()).await;
        assert_eq!((again.status, again.text.as_str()), (304, ""), "{tag}");
        assert_eq!(again.header("etag"), Some(etag.as_str()));
    }
    let stale = revalidate(addr, &svc, "\"stale\"", body.as_bytes()).await;
    assert_eq!(stale.status, 200);
    // Another context: another tag, even where every answer is the same.
    let other = json!({"context": {"targetingKey": "u-7", "plan": "free"}}).to_string();
    let other = revalidate(addr, &svc, &etag, other.as_bytes()).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.json["flags"], first.json["flags"]);
    assert_ne!(other.header("etag"), Some(etag.as_str()));
    // The same context with its members in another order: the same tag.
    let reordered = br#"{"context": {"plan": "pro", "targetingKey": "u-7"}}"#;
    let same = revalidate(addr, &svc, &etag, reordered).await;
    assert_eq!(same.status, 304);

    // A flag change the answers do not show (someone else included) still changes the tag.
    flag(
        &app,
        "set_rollout",
        json!({"flag": "a.zero", "percentage": 0, "include": ["u-9"],
        "reason": "one tester"}),
    )
    .await;
    let changed = revalidate(addr, &svc, &etag, body.as_bytes()).await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(changed.json["flags"], first.json["flags"]);
    let etag2 = changed.header("etag").unwrap().to_owned();
    assert_ne!(etag2, etag);
    // A rollout change: a new tag and the new value.
    flag(
        &app,
        "set_rollout",
        json!({"flag": "a.zero", "percentage": 100, "reason": "all"}),
    )
    .await;
    let rolled = revalidate(addr, &svc, &etag2, body.as_bytes()).await;
    assert_eq!(rolled.status, 200, "{}", rolled.text);
    assert_ne!(rolled.header("etag"), Some(etag2.as_str()));
    assert_eq!(rolled.json["flags"][0]["value"], json!(true));
    // Safe mode changes every answer and the tag.
    let etag3 = rolled.header("etag").unwrap().to_owned();
    safe_mode(&app, true).await;
    let safe = revalidate(addr, &svc, &etag3, body.as_bytes()).await;
    assert_eq!(safe.status, 200, "{}", safe.text);
    ofrep.check("bulkEvaluationSuccess", &safe.json);
    assert!(safe.json["flags"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["reason"] == "DISABLED"));
    assert_ne!(safe.header("etag"), Some(etag3.as_str()));
    safe_mode(&app, false).await;

    // Without targetingKey the flags that need a unit fail one by one; the request succeeds.
    let anonymous = send(addr, "POST", ALL, &auth, br#"{"context": {"plan": "pro"}}"#).await;
    assert_eq!(anonymous.status, 200, "{}", anonymous.text);
    ofrep.check("bulkEvaluationSuccess", &anonymous.json);
    for answer in anonymous.json["flags"].as_array().unwrap() {
        assert_eq!(answer["errorCode"], "TARGETING_KEY_MISSING", "{answer}");
    }
    // A request OFREP cannot read: 400 with a bulk failure (no key).
    let bulk_cases: [(&[u8], &str); 4] = [
        (b"{not json", "PARSE_ERROR"),
        (b"[]", "PARSE_ERROR"),
        (br#"{"context": []}"#, "INVALID_CONTEXT"),
        (br#"{"context": {"targetingKey": true}}"#, "INVALID_CONTEXT"),
    ];
    for (bad, code) in bulk_cases {
        let got = send(addr, "POST", ALL, &auth, bad).await;
        assert_eq!(
            (got.status, got.json["errorCode"].as_str()),
            (400, Some(code)),
            "{}",
            got.text
        );
        assert!(got.json.get("key").is_none(), "{}", got.text);
        ofrep.check("bulkEvaluationFailure", &got.json);
    }
    stop.cancel();
    app.stop().await;
}

/// The bulk route as `auth` (an `Authorization` value) with `If-None-Match: tag`.
async fn revalidate(addr: SocketAddr, auth: &str, tag: &str, body: &[u8]) -> Answer {
    let headers = [("Authorization", auth), ("If-None-Match", tag)];
    send(addr, "POST", ALL, &headers, body).await
}

async fn safe_mode(app: &TestApp, on: bool) {
    let done = app
        .client
        .command(
            "global",
            "safe_mode",
            &app.sender("alice"),
            json!({"on": on, "reason": "drill"}),
        )
        .await
        .expect("global.safe_mode");
    app.client.wait_for(&done).await.expect("projected");
}

// ----- the official OpenFeature SDKs -----

/// One SDK evaluation: (flag, SDK type, default value, context).
type Case = (&'static str, &'static str, Value, Value);

/// Runs the Node and the Python OpenFeature SDK over `cases`; their results, by SDK name.
async fn through_sdks(
    addr: SocketAddr,
    token: &str,
    cases: &[Case],
) -> Vec<(&'static str, Vec<Value>)> {
    let input = json!({
        "baseUrl": format!("http://{addr}"),
        "token": token,
        "cases": cases.iter().map(|(flag, ty, default, context)| {
            json!({"flag": flag, "type": ty, "default": default, "context": context})
        }).collect::<Vec<_>>(),
    });
    let clients = repo().join("tests/clients");
    let node_modules = clients.join("node/node_modules/@openfeature/ofrep-provider");
    assert!(
        node_modules.exists(),
        "{} is missing: run the tests with scripts/test.sh (scripts/test.d/30-ofrep-clients.sh \
         installs the OpenFeature clients)",
        node_modules.display()
    );
    let node = run_json(
        std::path::Path::new("node"),
        &["evaluate.js"],
        clients.join("node"),
        &input,
    )
    .await;
    let python = run_json(
        &venv_python(),
        &["evaluate.py"],
        clients.join("python"),
        &input,
    )
    .await;
    let as_list = |v: Value| v.as_array().expect("a JSON list").clone();
    vec![("node", as_list(node)), ("python", as_list(python))]
}

#[tokio::test]
async fn ofrep_openfeature_node_and_python_sdks_answer_what_flag_evaluate_answers() {
    let app = spawn_app_with_users().await;
    let (addr, stop) = serve(&app).await;
    let (_, token) = issue(&app, "svc").await;
    flags(
        &app,
        [
            ("create", json!({"flag": "sdk.zero", "reason": "r"})),
            ("create", json!({"flag": "sdk.full", "reason": "r"})),
            (
                "set_rollout",
                json!({"flag": "sdk.full", "percentage": 100, "reason": "all"}),
            ),
            ("create", json!({"flag": "sdk.half", "reason": "r"})),
            (
                "set_rollout",
                json!({"flag": "sdk.half", "percentage": 50,
                "include": ["vip"], "exclude": ["u-3"], "reason": "half"}),
            ),
            (
                "create",
                json!({"flag": "sdk.theme", "type": "json",
                "on_value": {"color": "blue", "size": 2}, "off_value": {"color": "grey", "size": 1},
                "reason": "r"}),
            ),
            (
                "set_rollout",
                json!({"flag": "sdk.theme", "percentage": 37.5, "reason": "some"}),
            ),
            ("create", json!({"flag": "sdk.tenant", "reason": "r"})),
            (
                "set_rollout",
                json!({"flag": "sdk.tenant", "percentage": 50,
                "stickiness": "tenant", "reason": "by tenant"}),
            ),
            ("create", json!({"flag": "sdk.pro", "reason": "r"})),
            (
                "set_rollout",
                json!({"flag": "sdk.pro", "percentage": 100, "strategy": "rule",
                "rule": "plan == \"pro\"", "rule_attributes": {"plan": "string"},
                "reason": "pro only"}),
            ),
            ("create", json!({"flag": "sdk.stopped", "reason": "r"})),
            (
                "set_rollout",
                json!({"flag": "sdk.stopped", "percentage": 100, "reason": "all"}),
            ),
            (
                "emergency_stop",
                json!({"flag": "sdk.stopped", "reason": "incident"}),
            ),
        ],
    )
    .await;

    let mut cases: Vec<Case> = Vec::new();
    let units = [
        "u-0", "u-1", "u-2", "u-3", "u-4", "u-5", "u-6", "u-7", "u-8", "u-9", "vip",
    ];
    for unit in units {
        let plan = if unit.ends_with(['1', '3', '5']) {
            "pro"
        } else {
            "free"
        };
        let context = json!({"targetingKey": unit, "plan": plan, "tenant": format!("t-{unit}")});
        for key in [
            "sdk.zero",
            "sdk.full",
            "sdk.half",
            "sdk.tenant",
            "sdk.pro",
            "sdk.stopped",
        ] {
            cases.push((key, "boolean", json!(false), context.clone()));
        }
        cases.push(("sdk.theme", "object", json!({"color": "default"}), context));
    }
    let evaluated = cases.len();
    // The error paths: an unknown flag, the wrong type, no unit.
    let u1 = json!({"targetingKey": "u-1"});
    cases.push(("sdk.nope", "boolean", json!(true), u1.clone()));
    cases.push(("sdk.full", "string", json!("fallback"), u1.clone()));
    cases.push(("sdk.theme", "boolean", json!(true), u1));
    cases.push(("sdk.half", "boolean", json!(true), json!({"plan": "pro"})));
    cases.push((
        "sdk.tenant",
        "boolean",
        json!(true),
        json!({"targetingKey": "u-1"}),
    ));

    let mut expected = Vec::new();
    for (key, _, _, context) in &cases[..evaluated] {
        expected.push(evaluate(&app, key, context).await);
    }
    for (sdk, results) in through_sdks(addr, &token, &cases).await {
        assert_eq!(results.len(), cases.len(), "{sdk}");
        let mut seen = HashMap::<(&str, &str), usize>::new();
        for ((case, want), got) in cases.iter().zip(&expected).zip(&results) {
            let variant = if want.enabled { "on" } else { "off" };
            assert_eq!(
                (
                    &got["value"],
                    got["variant"].as_str(),
                    got["reason"].as_str(),
                    &got["errorCode"]
                ),
                (
                    &*want.value,
                    Some(variant),
                    Some(documented_reason(want)),
                    &Value::Null
                ),
                "{sdk}: {} for {}",
                case.0,
                case.3
            );
            assert_eq!(
                got["metadata"]["gatehouseReason"],
                gatehouse_reason(want),
                "{sdk}"
            );
            assert_eq!(
                got["metadata"].get("bucket").and_then(Value::as_u64),
                want.bucket.map(u64::from),
                "{sdk}"
            );
            *seen.entry((case.0, variant)).or_default() += 1;
        }
        // The partial rollouts really split, the rule really chose.
        for key in ["sdk.half", "sdk.theme", "sdk.tenant", "sdk.pro"] {
            assert!(
                seen.contains_key(&(key, "on")) && seen.contains_key(&(key, "off")),
                "{sdk}: {key} {seen:?}"
            );
        }
        assert_eq!(seen.get(&("sdk.zero", "on")), None, "{sdk}");
        assert_eq!(seen.get(&("sdk.full", "off")), None, "{sdk}");
        assert_eq!(seen.get(&("sdk.stopped", "on")), None, "{sdk}");
        // Errors: the caller's default, the SDK's error code, reason ERROR.
        let errors: Vec<(&Value, &str, &str)> = results[evaluated..]
            .iter()
            .map(|r| {
                (
                    &r["value"],
                    r["errorCode"].as_str().unwrap_or("-"),
                    r["reason"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        assert_eq!(
            errors,
            [
                (&json!(true), "FLAG_NOT_FOUND", "ERROR"),
                (&json!("fallback"), "TYPE_MISMATCH", "ERROR"),
                (&json!(true), "TYPE_MISMATCH", "ERROR"),
                (&json!(true), "TARGETING_KEY_MISSING", "ERROR"),
                (&json!(true), "TARGETING_KEY_MISSING", "ERROR"),
            ],
            "{sdk}"
        );
    }
    stop.cancel();
    app.stop().await;
}
