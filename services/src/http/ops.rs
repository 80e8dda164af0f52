//! Operations routes, no token needed (they reveal no payloads):
//! - `GET /metrics`: Prometheus text exposition ([`crate::ops::metrics`]).
//! - `GET /readyz`: 200 when Postgres answers, every migration is applied, NATS is connected and
//!   every stream exists as configured; else 503 with the JSON error body (`unavailable`), its
//!   message naming what is not ready and `details` holding every failed check.
//!
//! And the request timeout every route runs under ([`with_timeout`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gatehouse_events::envelope::{Rejection, RejectionCode};
use serde_json::{json, Value};

use super::status;
use crate::api::App;
use crate::ops::{metrics, ready};

/// `/metrics` and `/readyz`.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/readyz", get(readiness))
}

async fn scrape(State(app): State<Arc<App>>) -> Response {
    let text = metrics::scrape(&app).await;
    ([(CONTENT_TYPE, metrics::content_type())], text).into_response()
}

async fn readiness(State(app): State<Arc<App>>) -> Response {
    let checks = ready::checks(&app).await;
    let failed: Vec<&ready::Check> = checks.iter().filter(|c| !c.ok).collect();
    if failed.is_empty() {
        let body = json!({
            "status": "ready",
            "postgres": "ok",
            "nats": "ok",
            "migration": crate::db::latest_migration(),
            "checks": checks,
        });
        return Json(body).into_response();
    }
    let message = failed
        .iter()
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect::<Vec<_>>()
        .join("; ");
    let rejection = Rejection::new(RejectionCode::Unavailable, format!("not ready: {message}"))
        .with_details(failed.iter().map(|c| c.to_json()).collect());
    (status(rejection.code), Json(rejection)).into_response()
}

/// `router` answering 503 `unavailable` to any request not answered within `timeout`: the
/// handler is dropped, so a command may or may not have been applied — the message says to
/// retry with the same `Idempotency-Key`, which answers with the first outcome either way.
pub fn with_timeout(router: Router, timeout: Duration) -> Router {
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| answer_within(timeout, request, next),
    ))
}

async fn answer_within(timeout: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => {
            let rejection = Rejection::new(
                RejectionCode::Unavailable,
                format!(
                    "the request was not answered within {} ms (GATEHOUSE_HTTP_TIMEOUT_MS): \
                     retry it; a command with the same Idempotency-Key is answered once",
                    timeout.as_millis()
                ),
            );
            (status(rejection.code), Json(rejection)).into_response()
        }
    }
}

/// The OpenAPI 3.1 fragment of these routes.
pub fn openapi() -> Value {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        })
    };
    json!({
        "paths": {
            "/metrics": {"get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (text exposition format 0.0.4); no token needed",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Per-process counters and scrape-time gauges",
                        "content": {"text/plain": {"schema": {"type": "string"}}}
                    },
                    "503": error("The request timed out (unavailable)")
                }
            }},
            "/readyz": {"get": {
                "operationId": "readiness",
                "summary": "Postgres, migrations, NATS and every stream as configured; no token needed",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Ready",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Readiness"}
                        }}
                    },
                    "503": error("Not ready: `unavailable`, `details` lists each failed check as {check, ok, message}")
                }
            }}
        },
        "components": {"schemas": {
            "Readiness": {
                "type": "object",
                "required": ["status", "postgres", "nats", "migration", "checks"],
                "properties": {
                    "status": {"const": "ready"},
                    "postgres": {"const": "ok"},
                    "nats": {"const": "ok"},
                    "migration": {"type": "integer", "description": "The latest migration applied"},
                    "checks": {"type": "array", "items": {"$ref": "#/components/schemas/ReadinessCheck"}}
                }
            },
            "ReadinessCheck": {
                "type": "object",
                "required": ["name", "ok", "detail"],
                "properties": {
                    "name": {"type": "string", "examples": ["postgres", "migrations", "nats", "stream GATEHOUSE_EVENTS"]},
                    "ok": {"type": "boolean"},
                    "detail": {"type": "string"}
                }
            }
        }}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fragment_describes_exactly_its_routes() {
        let doc = openapi();
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        assert_eq!(paths, ["/metrics", "/readyz"]);
        assert_eq!(
            doc["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/json"]
                ["schema"]["$ref"],
            "#/components/schemas/Error"
        );
    }
}
