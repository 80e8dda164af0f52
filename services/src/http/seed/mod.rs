//! The routes the seeds' users already call, as thin mappings onto the operations of
//! [`crate::api::operations`] (no second implementation): path and query parameters become
//! fields of the operation's request, the body supplies the rest, and the answer is the
//! operation's reply or its rejection with the status [`super::status`] maps it to.
//!
//! | Route | Operation |
//! | --- | --- |
//! | `POST /admin/catalog-policies/{id}/prepare` (202, `Location` of the run) | `policy.prepare` |
//! | `GET /admin/catalog-policy-runs?status&policyId&limit&offset` | `run.list` |
//! | `GET /admin/catalog-policy-runs/{runId}` | `run.get` |
//! | `POST /admin/catalog-policy-runs/{runId}/promote` (400 `not_ready` with the reasons) | `policy.promote` |
//! | `POST /admin/catalog-policy-runs/{runId}/cancel` | `policy.cancel_run` |
//! | `GET /admin/catalog-policy-runs/{runId}/diff` | `run.diff` |
//! | `POST /v1/repos/{repoKey}/policy/evaluations` | `decision.evaluate` |
//! | `GET /v1/repos/{repoKey}/quarantine?status&limit&offset` | `quarantine.list` |
//! | `GET /v1/repos/{repoKey}/quarantine/{id}` | `quarantine.get` |
//! | `POST /v1/repos/{repoKey}/quarantine/{id}/release` and `/reject` | `quarantine.release`, `.reject` |
//! | `GET /v1/repos/{repoKey}/blobs/{digest}` (423 `quarantined_blob` while blocked) | `artifact.can_read` |
//!
//! Writes take `Idempotency-Key` (the command's id) like `POST /v1/commands/...`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::{body_json, caller, send_command, send_query, Failure, Segments};
use crate::api::identity::User;
use crate::api::{self, App, Kind};
use params::{pairs, query_fields, with_path_fields, Pairs, Param, CASE_PARAMS, RUN_PARAMS};

mod doc;
mod params;

pub use doc::openapi;

/// The seed routes, for [`super::router`] to merge: [`ROUTES`], each with its handler.
pub fn routes() -> Router<Arc<App>> {
    ROUTES.iter().fold(Router::new(), |router, r| {
        let filter = match r.method {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
        };
        let handler = match r.serve {
            Serve::Plain => plain(r, filter),
            Serve::Own(handler) => handler(filter),
        };
        router.route(r.path, handler)
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }
}

/// A seed route: what the router serves and the API document describes.
struct Route {
    method: Method,
    /// The path, with its parameters as documented (`{runId}`).
    path: &'static str,
    kind: Kind,
    operation: &'static str,
    /// The status of a success.
    success: &'static str,
    /// Each path parameter and the request field it fills.
    path_fields: &'static [(&'static str, &'static str)],
    query: &'static [Param],
    serve: Serve,
}

/// How a route is answered.
#[derive(Clone, Copy)]
enum Serve {
    /// By its operation and the path's fields alone: a command's body completed by them
    /// ([`write`]), a query of just them ([`read`]).
    Plain,
    /// By a handler of its own (a query string, or more to answer than the reply).
    Own(fn(MethodFilter) -> MethodRouter<Arc<App>>),
}

const RUN: &[(&str, &str)] = &[("runId", "run_id")];
const REPO: &[(&str, &str)] = &[("repoKey", "repo")];
const CASE: &[(&str, &str)] = &[("repoKey", "repo"), ("id", "item_id")];

/// A route answering 200 with no query parameters.
const fn route(
    method: Method,
    path: &'static str,
    (kind, operation): (Kind, &'static str),
    path_fields: &'static [(&'static str, &'static str)],
    serve: Serve,
) -> Route {
    Route {
        method,
        path,
        kind,
        operation,
        success: "200",
        path_fields,
        query: &[],
        serve,
    }
}

const COMMAND: Kind = Kind::Command;
const QUERY: Kind = Kind::Query;

const ROUTES: &[Route] = &[
    Route {
        success: "202",
        ..route(
            Method::Post,
            "/admin/catalog-policies/{id}/prepare",
            (COMMAND, "policy.prepare"),
            &[("id", "policy_id")],
            Serve::Own(|m| on(m, prepare)),
        )
    },
    Route {
        query: RUN_PARAMS,
        ..route(
            Method::Get,
            "/admin/catalog-policy-runs",
            (QUERY, "run.list"),
            &[],
            Serve::Own(|m| on(m, list_runs)),
        )
    },
    route(
        Method::Get,
        "/admin/catalog-policy-runs/{runId}",
        (QUERY, "run.get"),
        RUN,
        Serve::Plain,
    ),
    route(
        Method::Post,
        "/admin/catalog-policy-runs/{runId}/promote",
        (COMMAND, "policy.promote"),
        RUN,
        Serve::Plain,
    ),
    route(
        Method::Post,
        "/admin/catalog-policy-runs/{runId}/cancel",
        (COMMAND, "policy.cancel_run"),
        RUN,
        Serve::Plain,
    ),
    route(
        Method::Get,
        "/admin/catalog-policy-runs/{runId}/diff",
        (QUERY, "run.diff"),
        RUN,
        Serve::Plain,
    ),
    route(
        Method::Post,
        "/v1/repos/{repoKey}/policy/evaluations",
        (COMMAND, "decision.evaluate"),
        REPO,
        Serve::Plain,
    ),
    Route {
        query: CASE_PARAMS,
        ..route(
            Method::Get,
            "/v1/repos/{repoKey}/quarantine",
            (QUERY, "quarantine.list"),
            REPO,
            Serve::Own(|m| on(m, list_cases)),
        )
    },
    route(
        Method::Get,
        "/v1/repos/{repoKey}/quarantine/{id}",
        (QUERY, "quarantine.get"),
        CASE,
        Serve::Plain,
    ),
    route(
        Method::Post,
        "/v1/repos/{repoKey}/quarantine/{id}/release",
        (COMMAND, "quarantine.release"),
        CASE,
        Serve::Plain,
    ),
    route(
        Method::Post,
        "/v1/repos/{repoKey}/quarantine/{id}/reject",
        (COMMAND, "quarantine.reject"),
        CASE,
        Serve::Plain,
    ),
    route(
        Method::Get,
        "/v1/repos/{repoKey}/blobs/{digest}",
        (QUERY, "artifact.can_read"),
        &[("repoKey", "repo"), ("digest", "digest")],
        Serve::Plain,
    ),
];

/// Sends the command `name` with the request body completed by the path `fields`.
async fn write(
    app: &App,
    name: &str,
    request: Request,
    fields: &[(&str, &str)],
) -> Result<Value, Failure> {
    let op = known(Kind::Command, name);
    let (parts, body) = request.into_parts();
    let user = caller(app, &parts.headers).await?;
    let command = with_path_fields(body_json(body).await?, fields)?;
    send_command(app, op, user, &parts.headers, command).await
}

/// Sends the query `name` with `fields`.
async fn read(
    app: &App,
    user: User,
    name: &str,
    fields: Map<String, Value>,
) -> Result<Response, Failure> {
    let reply = send_query(app, known(Kind::Query, name), user, Value::Object(fields)).await?;
    Ok(Json(reply).into_response())
}

/// The operation `name` of the table (a unit test pins that each one named here exists).
fn known(kind: Kind, name: &str) -> &'static api::Operation {
    api::operation(kind, name).unwrap_or_else(|| {
        unreachable!("the seed routes name only operations of the table: {name}")
    })
}

/// The handler of a [`Serve::Plain`] route.
fn plain(r: &'static Route, filter: MethodFilter) -> MethodRouter<Arc<App>> {
    match r.kind {
        Kind::Command => on(
            filter,
            move |State(app): State<Arc<App>>, Segments(path): Segments, request: Request| async move {
                let fields = path_fields(r, &path);
                write(&app, r.operation, request, &fields).await.map(Json)
            },
        ),
        Kind::Query => on(
            filter,
            move |State(app): State<Arc<App>>, headers: HeaderMap, Segments(path): Segments| async move {
                let user = caller(&app, &headers).await?;
                read(&app, user, r.operation, one(&path_fields(r, &path))).await
            },
        ),
    }
}

/// Each request field `r`'s path fills, with its segment of `path`.
fn path_fields<'a>(r: &Route, path: &'a [String]) -> Vec<(&'static str, &'a str)> {
    r.path_fields
        .iter()
        .zip(path)
        .map(|((_, field), segment)| (*field, segment.as_str()))
        .collect()
}

fn one(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect()
}

async fn prepare(
    State(app): State<Arc<App>>,
    Segments(path): Segments,
    request: Request,
) -> Result<Response, Failure> {
    let accepted = write(&app, "policy.prepare", request, &[("policy_id", &path[0])]).await?;
    let run_id = accepted["detail"]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut body = json!({"run_id": run_id});
    if let (Value::Object(body), Value::Object(accepted)) = (&mut body, accepted) {
        body.extend(accepted);
    }
    let location = format!("/admin/catalog-policy-runs/{run_id}");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

async fn list_runs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Response, Failure> {
    // Who asks is settled before what is asked.
    let user = caller(&app, &headers).await?;
    let fields = query_fields(pairs(query)?, RUN_PARAMS)?;
    read(&app, user, "run.list", fields).await
}

async fn list_cases(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Segments(path): Segments,
    query: Pairs,
) -> Result<Response, Failure> {
    let user = caller(&app, &headers).await?;
    let mut fields = query_fields(pairs(query)?, CASE_PARAMS)?;
    fields.insert("repo".into(), path[0].clone().into());
    read(&app, user, "quarantine.list", fields).await
}
