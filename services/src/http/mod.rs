//! The HTTP adapter: the same operations as the NATS gateway, generated from the same table
//! ([`crate::api::operations`]), with the same payloads and rejection codes.
//!
//! - `POST /v1/commands/<context>.<name>`: the body is the command (what a NATS request carries
//!   under `command`); `Idempotency-Key` is its `command_id` (required), so a retry over HTTP
//!   and one over NATS with the same id are the same command; `X-Correlation-Id` is optional.
//!   The actor is the token's user: nothing in the body can claim another.
//! - `POST /v1/queries/<context>.<name>`: the body is the query (empty means `{}`).
//! - `POST /ofrep/v1/evaluate/flags[/{key}]`: OpenFeature's remote evaluation ([`ofrep`]).
//! - `GET /healthz` (the process answers); `GET /readyz` and `GET /metrics` ([`ops`]),
//!   `GET /openapi.json` (the OpenAPI 3.1 document, [`openapi`]): no token needed.
//! - The routes the seeds' users call (`/admin/catalog-policies/...`, `/v1/repos/{repoKey}/...`):
//!   [`seed`], thin mappings onto the same operations.
//! - The web console ([`console`]) at `/console`.
//!
//! Every request is answered within `GATEHOUSE_HTTP_TIMEOUT_MS` ([`ops::with_timeout`]).
//!
//! Every other route, and every request without a token in force (`Authorization: Bearer
//! gh_<id>.<secret>`, issued by `access.issue_token`), is answered with the JSON error body
//! `{code, message, field?, details?}` — never an HTML page or a stack trace — with the status
//! [`status`] maps the code to, the one place that does.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gatehouse_events::envelope::{Rejection, RejectionCode, MAX_REQUEST_BYTES};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::api::identity::User;
use crate::api::{self, App, Identity, Kind};
use crate::settings::Settings;
use crate::{broker, db, RoleError};

pub mod ops;

pub mod console;
pub mod ofrep;

pub mod openapi;
pub mod seed;

/// The account an HTTP caller is reported in (denials, logs): people and services the HTTP
/// adapter authenticated by token.
pub const HTTP_ACCOUNT: &str = "HTTP";

/// The HTTP status of a rejection code: the one mapping every route uses.
pub fn status(code: RejectionCode) -> StatusCode {
    use RejectionCode as C;
    match code {
        C::BadRequest | C::InvalidRules | C::NotReady => StatusCode::BAD_REQUEST,
        C::Unauthenticated => StatusCode::UNAUTHORIZED,
        C::Forbidden | C::ActorMismatch | C::ApprovalRequired => StatusCode::FORBIDDEN,
        C::NotFound | C::VersionNotFound => StatusCode::NOT_FOUND,
        C::Conflict
        | C::IdempotencyConflict
        | C::InvalidState
        | C::AlreadyExists
        | C::AlreadyRunning
        | C::Unchanged => StatusCode::CONFLICT,
        C::QuarantinedBlob => StatusCode::LOCKED,
        C::PolicyTimeout | C::PolicyUnavailable | C::Unavailable | C::NotCaughtUp => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        C::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A rejection as an HTTP response: its status and the JSON error body.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) Rejection);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = status(self.0.code);
        (status, Json(&self.0)).into_response()
    }
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        Failure(r)
    }
}

pub(crate) fn bad_request(message: impl Into<String>, field: Option<&str>) -> Failure {
    let r = Rejection::new(RejectionCode::BadRequest, message);
    Failure(match field {
        Some(f) => r.with_field(f),
        None => r,
    })
}

/// The routes, over `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v1/commands/{operation}", post(command))
        .route("/v1/queries/{operation}", post(query))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .merge(seed::routes())
        .merge(console::routes())
        .merge(ofrep::routes())
        .merge(ops::routes())
        .fallback(|| async {
            Failure(Rejection::new(
                RejectionCode::NotFound,
                "no such route: the routes are in GET /openapi.json",
            ))
        })
        .method_not_allowed_fallback(|| async {
            Failure(Rejection::new(
                RejectionCode::NotFound,
                "no such route: this path answers other methods (GET /openapi.json lists them)",
            ))
        })
        .with_state(app)
}

/// Serves `app` on `listener` until `shutdown`, each request within the default timeout.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let timeout = std::time::Duration::from_millis(crate::settings::DEFAULT_HTTP_TIMEOUT_MS);
    serve_within(app, listener, timeout, shutdown).await
}

/// Serves `app` on `listener` until `shutdown`, answering 503 to a request not answered
/// within `timeout` (a stream, such as a run's events, counts as answered once it starts).
pub async fn serve_within(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    timeout: std::time::Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let routes = ops::with_timeout(router(app), timeout)
        .layer(axum::Extension(console::Shutdown(shutdown.clone())));
    axum::serve(listener, routes)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// The `http` role: serves on `GATEHOUSE_HTTP_ADDR` until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    let pg = db::pool(&settings.database_url, settings.db_pool_size)?;
    let sqlx = db::sqlx_pool(&settings.database_url, settings.db_pool_size as u32).await?;
    // Readiness and the broker's metrics read JetStream: the role needs NATS too.
    let nats = broker::connect(&settings, "http").await?;
    let app = Arc::new(App::new(sqlx, pg, settings.namespace.clone()).with_broker(nats, &settings));
    let listener = tokio::net::TcpListener::bind(&settings.http_addr)
        .await
        .map_err(|e| RoleError::Http {
            action: format!("listen on {}", settings.http_addr),
            source: e,
        })?;
    tracing::info!(addr = %settings.http_addr, "http serving");
    serve_within(app, listener, settings.http_timeout, shutdown)
        .await
        .map_err(|e| RoleError::Http {
            action: "serve HTTP".into(),
            source: e,
        })
}

/// The user a bearer token names, or `unauthenticated`.
pub(crate) async fn caller(app: &App, headers: &HeaderMap) -> Result<User, Failure> {
    let unauthenticated =
        |message: &str| Failure(Rejection::new(RejectionCode::Unauthenticated, message));
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            unauthenticated("send `Authorization: Bearer <token>` (an admin issues tokens)")
        })?;
    let grants = app.grants.now(&app.pg).await?;
    let user = grants
        .access
        .token_user(token.trim())
        .ok_or_else(|| unauthenticated("the token is unknown or revoked"))?;
    Ok(User {
        user: user.to_owned(),
        account: HTTP_ACCOUNT.to_owned(),
        delegate: false,
    })
}

/// The body, at most [`MAX_REQUEST_BYTES`], as JSON (empty: `{}`).
pub(crate) async fn body_json(body: Body) -> Result<Value, Failure> {
    let bytes = to_bytes(body, MAX_REQUEST_BYTES).await.map_err(|_| {
        bad_request(
            format!("the body is larger than {MAX_REQUEST_BYTES} bytes"),
            None,
        )
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| bad_request(format!("the body is not JSON: {e}"), None))
}

/// The operation of `kind` called `name`, or `not_found` naming it.
fn operation(kind: Kind, name: &str) -> Result<&'static api::Operation, Failure> {
    api::operation(kind, name).ok_or_else(|| {
        let what = match kind {
            Kind::Command => "command",
            Kind::Query => "query",
        };
        Failure(Rejection::new(
            RejectionCode::NotFound,
            format!(
                "there is no {what} `{name}`: the operations are in docs/protocol.md, and \
                 `$SRV.INFO.gatehouse` lists them on NATS"
            ),
        ))
    })
}

/// `POST /v1/commands/<operation>`.
async fn command(
    State(app): State<Arc<App>>,
    Segments(names): Segments,
    request: Request,
) -> Result<Response, Failure> {
    let op = operation(Kind::Command, &names[0])?;
    let (parts, body) = request.into_parts();
    let user = caller(&app, &parts.headers).await?;
    let command = body_json(body).await?;
    let result = send_command(&app, op, user, &parts.headers, command).await?;
    Ok((StatusCode::OK, Json(result)).into_response())
}

/// `POST /v1/queries/<operation>`.
async fn query(
    State(app): State<Arc<App>>,
    Segments(names): Segments,
    request: Request,
) -> Result<Response, Failure> {
    let op = operation(Kind::Query, &names[0])?;
    let (parts, body) = request.into_parts();
    let user = caller(&app, &parts.headers).await?;
    let result = send_query(&app, op, user, body_json(body).await?).await?;
    Ok((StatusCode::OK, Json(result)).into_response())
}

/// Calls the command `op` as `user` with `command` (what a NATS request carries under
/// `command`): `Idempotency-Key` is its id (required), `X-Correlation-Id` its correlation.
pub(crate) async fn send_command(
    app: &App,
    op: &api::Operation,
    user: User,
    headers: &HeaderMap,
    command: Value,
) -> Result<Value, Failure> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let command_id = header("idempotency-key").ok_or_else(|| {
        bad_request(
            "send `Idempotency-Key`: the command's id, the same on every retry",
            Some("Idempotency-Key"),
        )
    })?;
    let mut envelope = json!({
        "command_id": command_id,
        "actor": user.user,
        "command": command,
    });
    if let Some(correlation) = header("x-correlation-id") {
        envelope["correlation_id"] = correlation.into();
    }
    let payload = serde_json::to_vec(&envelope).unwrap_or_default();
    Ok(op.call(app, &Identity::User(user), &payload).await?)
}

/// Calls the query `op` as `user` with `query`.
pub(crate) async fn send_query(
    app: &App,
    op: &api::Operation,
    user: User,
    query: Value,
) -> Result<Value, Failure> {
    let payload = serde_json::to_vec(&query).unwrap_or_default();
    Ok(op.call(app, &Identity::User(user), &payload).await?)
}

/// A route's path parameters, percent-decoded, in order; a segment that is not UTF-8 is
/// `bad_request` (not axum's plain-text answer).
pub(crate) struct Segments(pub Vec<String>);

impl<S: Send + Sync> FromRequestParts<S> for Segments {
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Failure> {
        Path::<Vec<String>>::from_request_parts(parts, state)
            .await
            .map(|Path(segments)| Segments(segments))
            .map_err(|e| bad_request(format!("the path is invalid: {}", e.body_text()), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_documented_status() {
        use RejectionCode as C;
        let cases = [
            (C::BadRequest, 400),
            (C::Unauthenticated, 401),
            (C::Forbidden, 403),
            (C::NotFound, 404),
            (C::Conflict, 409),
            (C::InvalidState, 409),
            (C::IdempotencyConflict, 409),
            (C::QuarantinedBlob, 423),
            (C::PolicyTimeout, 503),
            (C::Unavailable, 503),
            (C::Internal, 500),
        ];
        for (code, expected) in cases {
            assert_eq!(status(code).as_u16(), expected, "{code:?}");
        }
    }
}
