//! The OpenAPI document against the router that serves it: every documented path and method is
//! served, nothing undocumented that can be enumerated is, and Schemathesis (PyPI, installed by
//! `scripts/test.d/40-schemathesis.sh`) finds no 5xx and no answer outside the document.

use std::net::SocketAddr;
use std::path::PathBuf;

use gatehouse::api::{self, Kind};
use gatehouse::http::openapi;

use crate::helpers::spawn_app_with_users;
use crate::http_client::{bearer, create_role_streams, issue, request, serve};

/// A route is served when a request without a token is not answered `not_found` (by the
/// router's fallbacks, or as an unknown operation): served routes answer 401, or 200 when
/// they need no token.
async fn served(addr: SocketAddr, method: &str, path: &str) -> bool {
    let (status, body) = request(addr, method, path, &[], b"").await;
    assert!(
        body["code"].is_string() || status == 200,
        "{method} {path}: {status} {body}"
    );
    !(status == 404 && body["code"] == "not_found")
}

/// `path` with each `{parameter}` replaced by a value.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_route_is_served_and_nothing_undocumented_is() {
    let app = spawn_app_with_users().await;
    let (addr, stop) = serve(&app).await;
    let (status, served_doc) = request(addr, "GET", "/openapi.json", &[], b"").await;
    assert_eq!(status, 200);
    assert_eq!(served_doc, openapi::document());

    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let paths = served_doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for method in methods {
            let documented = item.get(method.to_ascii_lowercase()).is_some();
            let path = concrete(path);
            assert_eq!(
                served(addr, method, &path).await,
                documented,
                "{method} {path}: documented {documented}"
            );
        }
    }
    // Each operation under the other kind's prefix: not served, not documented.
    for op in api::operations() {
        let other = match op.kind {
            Kind::Command => format!("/v1/queries/{}", op.name),
            Kind::Query => format!("/v1/commands/{}", op.name),
        };
        if api::operation(opposite(op.kind), op.name).is_none() {
            assert!(!paths.contains_key(&other), "{other}");
            assert!(!served(addr, "POST", &other).await, "{other} is served");
        }
    }
    stop.cancel();
    app.stop().await;
}

fn opposite(kind: Kind) -> Kind {
    match kind {
        Kind::Command => Kind::Query,
        Kind::Query => Kind::Command,
    }
}

/// The Schemathesis of `scripts/test.d/40-schemathesis.sh`: `$GATEHOUSE_VENV/bin/schemathesis`,
/// else the one in this checkout's `.gatehouse/venv`.
fn schemathesis() -> PathBuf {
    let venv = std::env::var("GATEHOUSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let tests = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test");
            PathBuf::from(tests).join("../.gatehouse/venv")
        });
    venv.join("bin/schemathesis")
}

/// The operations that can take the caller's own access away (Schemathesis learns token ids
/// and user names from `access.tokens` and `access.roles` replies): run last, on their own.
const REVOKING: [&str; 2] = ["access.revoke_token", "access.revoke"];

/// Not run: Schemathesis 4.32.5's coverage phase crashes inside its own generator on the OFREP
/// bulk request schema ("SystemError: AST constructor recursion depth mismatch", a Python
/// runtime error, not an answer of ours). The OFREP routes are checked by tests/it/ofrep.rs
/// against the OFREP OpenAPI's own schemas and through the OpenFeature SDKs.
const SKIPPED: [&str; 2] = ["ofrepEvaluateFlags", "ofrepEvaluateFlag"];

/// Schemathesis against a real server, as alice (every human role), for a bounded number of
/// examples per operation: no 5xx, every status, content type, header and body as documented.
/// First every operation but [`REVOKING`], then those.
///
/// Wider by hand, against `scripts/up.sh`'s server and a token from `gatehouse access
/// issue-token` (or this test with `GATEHOUSE_SCHEMATHESIS_EXAMPLES=200`):
/// `.gatehouse/venv/bin/schemathesis run http://127.0.0.1:8080/openapi.json
/// -H "Authorization: Bearer $TOKEN" --max-examples 500 --checks all`.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let bin = schemathesis();
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test.d/40-schemathesis.sh (scripts/test.sh does)",
        bin.display()
    );
    let app = spawn_app_with_users().await;
    let (addr, stop) = serve(&app).await;
    // A system `gatehouse up` started: `/readyz` answers 200, not 503 for the missing streams.
    create_role_streams(&app).await;
    let (_, token) = issue(&app, "alice").await;
    let auth = bearer(&token);

    let mut all_but_revoking = Vec::new();
    for name in REVOKING.iter().chain(&SKIPPED) {
        all_but_revoking.extend(["--exclude-operation-id".to_owned(), name.to_string()]);
    }
    let report = schemathesis_run(&bin, addr, &auth, &all_but_revoking).await;
    // Nothing it sent took alice's access away (else most operations answered only 401).
    let headers = [("Authorization", auth.as_str())];
    let (status, body) = request(addr, "POST", "/v1/queries/policy.list", &headers, b"").await;
    assert_eq!(status, 200, "alice's token still works: {body}\n{report}");

    let mut revoking = Vec::new();
    for name in REVOKING {
        revoking.extend(["--include-operation-id".to_owned(), name.to_owned()]);
    }
    schemathesis_run(&bin, addr, &auth, &revoking).await;
    stop.cancel();
    app.stop().await;
}

/// One bounded Schemathesis run with `filters`; its report, once it passed.
async fn schemathesis_run(
    bin: &std::path::Path,
    addr: SocketAddr,
    auth: &str,
    filters: &[String],
) -> String {
    let examples = std::env::var("GATEHOUSE_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "8".into());
    let mut command = std::process::Command::new(bin);
    command
        .arg("run")
        .arg(format!("http://{addr}/openapi.json"))
        .args(["--header", &format!("Authorization: {auth}")])
        .args(["--max-examples", &examples, "--seed", "12"])
        .args(["--phases", "examples,coverage,fuzzing", "--workers", "2"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(["--no-color", "--generation-database", "none"])
        .args(filters)
        .current_dir(std::env::temp_dir());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run schemathesis");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "schemathesis failed:\n{report}");
    assert!(
        report.contains("passed"),
        "schemathesis tested nothing:\n{report}"
    );
    report
}
