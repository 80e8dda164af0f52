//! The web console (issue 13): plain ES modules and CSS embedded in the binary, served by the
//! HTTP adapter on its own port, talking to Gatehouse only through the public HTTP API (the
//! generic `/v1/commands/...` and `/v1/queries/...` routes, and [`run_events`]).
//!
//! - `GET /` redirects to `/console`; `GET /console` (and any `/console/<page>` deep link) is
//!   the page; `GET /console/assets/<file>` its scripts and styles. No token is needed for
//!   these: they hold no data, the page asks for a token and keeps it in `sessionStorage`.
//! - `GET /v1/runs/{run_id}/events`: a run's progress as server-sent events, authenticated by
//!   the bearer token like every API route and needing what `run.get` needs (`viewer`).
//!
//! Layout: the assets are in `assets/` (`api.js` the client library, `app.js` the shell and
//! router, one `page-*.js` per page, `style.css`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures::stream::{self, Stream};
use gatehouse_events::envelope::{Rejection, RejectionCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{caller, Failure};
use crate::api::{self, App, Identity, Kind};

/// How often a run's events stream reads the run again.
const POLL: Duration = Duration::from_millis(250);

/// The longest one events stream lasts: the page then opens a new one (so a server shutdown
/// never waits on a run that does not end).
const MAX_STREAM: Duration = Duration::from_secs(300);

/// Stops long-lived responses (the events streams) when the server shuts down.
#[derive(Clone, Default)]
pub struct Shutdown(pub CancellationToken);

/// One embedded file: its name under `/console/assets/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("app.js", JS),
    asset!("page-policies.js", JS),
    asset!("page-runs.js", JS),
    asset!("page-quarantine.js", JS),
    asset!("page-flags.js", JS),
    asset!("page-audit.js", JS),
];

const INDEX: &str = include_str!("assets/index.html");

/// The console's routes, merged into [`super::router`].
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/assets/{file}", get(asset))
        .route("/console/{*page}", get(index))
        .route("/v1/runs/{run_id}/events", get(run_events))
}

/// Headers every console file carries: no framing by other sites, scripts only from here.
fn page_headers(content_type: &'static str) -> [(header::HeaderName, HeaderValue); 4] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ]
}

async fn index() -> Response {
    (page_headers("text/html; charset=utf-8"), INDEX).into_response()
}

async fn asset(Path(file): Path<String>) -> Result<Response, Failure> {
    let found = ASSETS.iter().find(|a| a.name == file).ok_or_else(|| {
        Failure(Rejection::new(
            RejectionCode::NotFound,
            format!("the console has no asset `{file}`"),
        ))
    })?;
    Ok((page_headers(found.content_type), found.body).into_response())
}

/// `GET /v1/runs/{run_id}/events`: `event: progress` with the `RunView` (as `run.get` answers
/// it) at once and whenever it changes, then `event: end` with the final view once the run is
/// no longer `running`; `event: error` with the JSON error body if reading it fails midway.
/// Refusals before the stream starts (no token, `forbidden`, `not_found`) are plain JSON
/// error responses.
async fn run_events(
    State(app): State<Arc<App>>,
    Path(run_id): Path<String>,
    shutdown: Option<Extension<Shutdown>>,
    request: Request,
) -> Result<Response, Failure> {
    let user = Identity::User(caller(&app, request.headers()).await?);
    let first = read_run(&app, &user, &run_id).await?;
    let stop = shutdown.map(|Extension(s)| s.0).unwrap_or_default();
    let stream = progress(app, user, run_id, first, stop);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn read_run(app: &App, caller: &Identity, run_id: &str) -> Result<Value, Rejection> {
    let op = api::operation(Kind::Query, "run.get")
        .ok_or_else(|| Rejection::new(RejectionCode::Internal, "run.get is not declared"))?;
    let payload = serde_json::to_vec(&json!({ "run_id": run_id })).unwrap_or_default();
    op.call(app, caller, &payload).await
}

fn running(view: &Value) -> bool {
    view["status"] == "running"
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(value).unwrap_or_default())
}

/// One events stream's state: the run it watches and the view it sent last.
struct Watch {
    app: Arc<App>,
    caller: Identity,
    run_id: String,
    stop: CancellationToken,
    deadline: tokio::time::Instant,
    last: Value,
    /// The view to send next without reading (the first one).
    pending: Option<Value>,
    ended: bool,
}

impl Watch {
    /// The run's view once it differs from the last one sent; `None` when the server shuts
    /// down or the stream has lasted [`MAX_STREAM`].
    async fn changed(&self) -> Result<Option<Value>, Rejection> {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(None),
                _ = tokio::time::sleep_until(self.deadline) => return Ok(None),
                _ = tokio::time::sleep(POLL) => {}
            }
            let view = read_run(&self.app, &self.caller, &self.run_id).await?;
            if view != self.last {
                return Ok(Some(view));
            }
        }
    }
}

fn progress(
    app: Arc<App>,
    caller: Identity,
    run_id: String,
    first: Value,
    stop: CancellationToken,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    let watch = Watch {
        app,
        caller,
        run_id,
        stop,
        deadline: tokio::time::Instant::now() + MAX_STREAM,
        last: Value::Null,
        pending: Some(first),
        ended: false,
    };
    stream::unfold(watch, |mut w| async move {
        if w.ended {
            return None;
        }
        let view = match w.pending.take() {
            Some(view) => view,
            None => match w.changed().await {
                Ok(Some(view)) => view,
                Ok(None) => return None,
                Err(rejection) => {
                    w.ended = true;
                    return Some((Ok(json_event("error", &rejection)), w));
                }
            },
        };
        let name = if running(&view) { "progress" } else { "end" };
        w.ended = name == "end";
        let event = json_event(name, &view);
        w.last = view;
        Some((Ok(event), w))
    })
}

/// The OpenAPI 3.1 fragment of the routes this module adds to the HTTP API.
pub fn openapi() -> Value {
    let error = |description: &str| {
        json!({"description": description, "content": {"application/json": {"schema":
            {"$ref": "#/components/schemas/Error"}}}})
    };
    json!({
        "paths": {
            "/v1/runs/{run_id}/events": {"get": {
                "operationId": "run.events",
                "summary": "A run's progress as server-sent events until it ends",
                "description": "`event: progress` with the RunView (as `run.get` answers it) at \
                    once and whenever it changes; `event: end` with the final view once the run \
                    is no longer running, then the stream closes; `event: error` with the JSON \
                    error body if reading fails midway. A stream lasts at most 5 minutes: open \
                    it again while the run runs. Needs the role `viewer`.",
                "security": [{"bearer": []}],
                "parameters": [{"name": "run_id", "in": "path", "required": true,
                    "schema": {"type": "string"}, "example": "media:1"}],
                "responses": {
                    "200": {"description": "the events", "content": {"text/event-stream":
                        {"schema": {"type": "string"}}}},
                    "401": error("no token, or an unknown or revoked one (`unauthenticated`)"),
                    "403": error("the caller lacks `viewer` (`forbidden`)"),
                    "404": error("no such run (`not_found`)"),
                    "503": error("the database is unavailable (`unavailable`)")
                }
            }}
        },
        "components": {"schemas": {}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_imports_is_served() {
        let mut named = vec![INDEX];
        named.extend(ASSETS.iter().map(|a| a.body));
        for text in named {
            for (i, _) in text.match_indices("./") {
                let rest = &text[i + 2..];
                let Some(end) = rest.find(['"', '\'']) else {
                    continue;
                };
                let file = &rest[..end];
                if file.ends_with(".js") || file.ends_with(".css") {
                    assert!(
                        ASSETS.iter().any(|a| a.name == file),
                        "`{file}` is imported but not embedded"
                    );
                }
            }
        }
    }

    #[test]
    fn the_events_route_is_described_with_every_status() {
        let doc = openapi();
        let responses = &doc["paths"]["/v1/runs/{run_id}/events"]["get"]["responses"];
        for status in ["200", "401", "403", "404", "503"] {
            assert!(responses[status].is_object(), "{status}");
        }
    }
}
