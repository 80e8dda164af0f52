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

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::{bad_request, body_json, caller, openapi, send_command, send_query, Failure, Segments};
use crate::api::{self, App, Kind};
use schemars::{Schema, SchemaGenerator};

/// The seed routes, for [`super::router`] to merge.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/admin/catalog-policies/{id}/prepare", post(prepare))
        .route("/admin/catalog-policy-runs", get(list_runs))
        .route("/admin/catalog-policy-runs/{run_id}", get(get_run))
        .route("/admin/catalog-policy-runs/{run_id}/promote", post(promote))
        .route("/admin/catalog-policy-runs/{run_id}/cancel", post(cancel))
        .route("/admin/catalog-policy-runs/{run_id}/diff", get(diff))
        .route("/v1/repos/{repo}/policy/evaluations", post(evaluate))
        .route("/v1/repos/{repo}/quarantine", get(list_cases))
        .route("/v1/repos/{repo}/quarantine/{id}", get(get_case))
        .route("/v1/repos/{repo}/quarantine/{id}/release", post(release))
        .route("/v1/repos/{repo}/quarantine/{id}/reject", post(reject))
        .route("/v1/repos/{repo}/blobs/{digest}", get(blob))
}

/// A query parameter a list route accepts: its name in the URL, the request field it fills,
/// and what it may be.
pub(crate) struct Param {
    pub name: &'static str,
    pub field: &'static str,
    pub kind: ParamKind,
    pub about: &'static str,
}

pub(crate) enum ParamKind {
    /// A whole number from 0 to `u32::MAX`.
    Count,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// Any string.
    Text,
}

pub(crate) const RUN_PARAMS: &[Param] = &[
    Param {
        name: "status",
        field: "status",
        kind: ParamKind::OneOf(&["running", "success", "failed", "cancelled"]),
        about: "only runs in this status",
    },
    Param {
        name: "policyId",
        field: "policy_id",
        kind: ParamKind::Text,
        about: "only runs of this policy",
    },
    Param {
        name: "limit",
        field: "limit",
        kind: ParamKind::Count,
        about: "at most this many runs",
    },
    Param {
        name: "offset",
        field: "offset",
        kind: ParamKind::Count,
        about: "skip this many runs first",
    },
];

pub(crate) const CASE_PARAMS: &[Param] = &[
    Param {
        name: "status",
        field: "status",
        kind: ParamKind::OneOf(&["quarantined", "released", "rejected"]),
        about: "only cases in this status",
    },
    Param {
        name: "limit",
        field: "limit",
        kind: ParamKind::Count,
        about: "at most this many cases",
    },
    Param {
        name: "offset",
        field: "offset",
        kind: ParamKind::Count,
        about: "skip this many cases first",
    },
];

/// The query parameters as request fields: `bad_request` naming the parameter when one is
/// unknown, repeated or out of its range.
fn query_fields(
    pairs: Vec<(String, String)>,
    params: &[Param],
) -> Result<Map<String, Value>, Failure> {
    let mut fields = Map::new();
    for (name, value) in pairs {
        let Some(param) = params.iter().find(|p| p.name == name) else {
            let known: Vec<&str> = params.iter().map(|p| p.name).collect();
            return Err(bad_request(
                format!(
                    "unknown query parameter `{name}`; this route takes {}",
                    known.join(", ")
                ),
                Some(&name),
            ));
        };
        if fields.contains_key(param.field) {
            return Err(bad_request(format!("`{name}` is given twice"), Some(&name)));
        }
        let value = match param.kind {
            ParamKind::Count => value.parse::<u32>().map(Value::from).map_err(|_| {
                bad_request(
                    format!(
                        "`{name}` must be a whole number from 0 to {}, not `{value}`",
                        u32::MAX
                    ),
                    Some(&name),
                )
            })?,
            ParamKind::OneOf(allowed) if !allowed.contains(&value.as_str()) => {
                return Err(bad_request(
                    format!(
                        "`{name}` must be one of {}, not `{value}`",
                        allowed.join(", ")
                    ),
                    Some(&name),
                ))
            }
            ParamKind::OneOf(_) | ParamKind::Text => Value::from(value),
        };
        fields.insert(param.field.to_owned(), value);
    }
    Ok(fields)
}

/// The query string's pairs; one that cannot be decoded is `bad_request`.
type Pairs = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

fn pairs(query: Pairs) -> Result<Vec<(String, String)>, Failure> {
    query.map(|Query(pairs)| pairs).map_err(|e| {
        bad_request(
            format!("the query string is invalid: {}", e.body_text()),
            None,
        )
    })
}

/// `body` (a JSON object, or nothing) with `fields` from the path: a body that names one
/// of them with another value is `bad_request` naming it.
fn with_path_fields(body: Value, fields: &[(&str, &str)]) -> Result<Value, Failure> {
    let Value::Object(mut object) = body else {
        return Err(bad_request("the body must be a JSON object", None));
    };
    for (field, value) in fields {
        match object.get(*field) {
            Some(given) if given != value => {
                return Err(bad_request(
                    format!("`{field}` is `{value}` by the path; the body cannot name another"),
                    Some(field),
                ))
            }
            _ => object.insert((*field).to_owned(), Value::from(*value)),
        };
    }
    Ok(Value::Object(object))
}

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
    headers: &HeaderMap,
    name: &str,
    fields: Map<String, Value>,
) -> Result<Response, Failure> {
    let user = caller(app, headers).await?;
    let reply = send_query(app, known(Kind::Query, name), user, Value::Object(fields)).await?;
    Ok(Json(reply).into_response())
}

/// The operation `name` of the table (a unit test pins that each one named here exists).
fn known(kind: Kind, name: &str) -> &'static api::Operation {
    api::operation(kind, name).unwrap_or_else(|| {
        unreachable!("the seed routes name only operations of the table: {name}")
    })
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
    let fields = query_fields(pairs(query)?, RUN_PARAMS)?;
    read(&app, &headers, "run.list", fields).await
}

async fn get_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Segments(path): Segments,
) -> Result<Response, Failure> {
    read(&app, &headers, "run.get", one(&[("run_id", &path[0])])).await
}

async fn diff(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Segments(path): Segments,
) -> Result<Response, Failure> {
    read(&app, &headers, "run.diff", one(&[("run_id", &path[0])])).await
}

async fn promote(
    State(app): State<Arc<App>>,
    Segments(path): Segments,
    request: Request,
) -> Result<Json<Value>, Failure> {
    let fields = [("run_id", path[0].as_str())];
    write(&app, "policy.promote", request, &fields)
        .await
        .map(Json)
}

async fn cancel(
    State(app): State<Arc<App>>,
    Segments(path): Segments,
    request: Request,
) -> Result<Json<Value>, Failure> {
    let fields = [("run_id", path[0].as_str())];
    write(&app, "policy.cancel_run", request, &fields)
        .await
        .map(Json)
}

async fn evaluate(
    State(app): State<Arc<App>>,
    Segments(path): Segments,
    request: Request,
) -> Result<Json<Value>, Failure> {
    let fields = [("repo", path[0].as_str())];
    write(&app, "decision.evaluate", request, &fields)
        .await
        .map(Json)
}

async fn list_cases(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Segments(path): Segments,
    query: Pairs,
) -> Result<Response, Failure> {
    let mut fields = query_fields(pairs(query)?, CASE_PARAMS)?;
    fields.insert("repo".into(), path[0].clone().into());
    read(&app, &headers, "quarantine.list", fields).await
}

async fn get_case(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Segments(path): Segments,
) -> Result<Response, Failure> {
    let fields = one(&[("repo", &path[0]), ("item_id", &path[1])]);
    read(&app, &headers, "quarantine.get", fields).await
}

async fn release(
    State(app): State<Arc<App>>,
    Segments(path): Segments,
    request: Request,
) -> Result<Json<Value>, Failure> {
    let fields = [("repo", path[0].as_str()), ("item_id", path[1].as_str())];
    write(&app, "quarantine.release", request, &fields)
        .await
        .map(Json)
}

async fn reject(
    State(app): State<Arc<App>>,
    Segments(path): Segments,
    request: Request,
) -> Result<Json<Value>, Failure> {
    let fields = [("repo", path[0].as_str()), ("item_id", path[1].as_str())];
    write(&app, "quarantine.reject", request, &fields)
        .await
        .map(Json)
}

async fn blob(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Segments(path): Segments,
) -> Result<Response, Failure> {
    let fields = one(&[("repo", &path[0]), ("digest", &path[1])]);
    read(&app, &headers, "artifact.can_read", fields).await
}

/// A seed route as the API document describes it.
struct Route {
    method: &'static str,
    /// The path as documented (`{runId}`); the router's parameter names may differ.
    path: &'static str,
    kind: Kind,
    operation: &'static str,
    success: &'static str,
    /// Each path parameter and the request field it fills.
    path_fields: &'static [(&'static str, &'static str)],
    query: &'static [Param],
}

const fn route(
    method: &'static str,
    path: &'static str,
    kind: Kind,
    operation: &'static str,
    path_fields: &'static [(&'static str, &'static str)],
) -> Route {
    Route {
        method,
        path,
        kind,
        operation,
        success: "200",
        path_fields,
        query: &[],
    }
}

const RUN: &[(&str, &str)] = &[("runId", "run_id")];
const REPO: &[(&str, &str)] = &[("repoKey", "repo")];
const CASE: &[(&str, &str)] = &[("repoKey", "repo"), ("id", "item_id")];

const ROUTES: &[Route] = &[
    Route {
        success: "202",
        ..route(
            "post",
            "/admin/catalog-policies/{id}/prepare",
            Kind::Command,
            "policy.prepare",
            &[("id", "policy_id")],
        )
    },
    Route {
        query: RUN_PARAMS,
        ..route(
            "get",
            "/admin/catalog-policy-runs",
            Kind::Query,
            "run.list",
            &[],
        )
    },
    route(
        "get",
        "/admin/catalog-policy-runs/{runId}",
        Kind::Query,
        "run.get",
        RUN,
    ),
    route(
        "post",
        "/admin/catalog-policy-runs/{runId}/promote",
        Kind::Command,
        "policy.promote",
        RUN,
    ),
    route(
        "post",
        "/admin/catalog-policy-runs/{runId}/cancel",
        Kind::Command,
        "policy.cancel_run",
        RUN,
    ),
    route(
        "get",
        "/admin/catalog-policy-runs/{runId}/diff",
        Kind::Query,
        "run.diff",
        RUN,
    ),
    route(
        "post",
        "/v1/repos/{repoKey}/policy/evaluations",
        Kind::Command,
        "decision.evaluate",
        REPO,
    ),
    Route {
        query: CASE_PARAMS,
        ..route(
            "get",
            "/v1/repos/{repoKey}/quarantine",
            Kind::Query,
            "quarantine.list",
            REPO,
        )
    },
    route(
        "get",
        "/v1/repos/{repoKey}/quarantine/{id}",
        Kind::Query,
        "quarantine.get",
        CASE,
    ),
    route(
        "post",
        "/v1/repos/{repoKey}/quarantine/{id}/release",
        Kind::Command,
        "quarantine.release",
        CASE,
    ),
    route(
        "post",
        "/v1/repos/{repoKey}/quarantine/{id}/reject",
        Kind::Command,
        "quarantine.reject",
        CASE,
    ),
    route(
        "get",
        "/v1/repos/{repoKey}/blobs/{digest}",
        Kind::Query,
        "artifact.can_read",
        &[("repoKey", "repo"), ("digest", "digest")],
    ),
];

/// The seed routes' fragment of the API document.
pub fn openapi() -> Value {
    let mut generator = openapi::generator();
    let mut paths = Map::new();
    for r in ROUTES {
        let op = known(r.kind, r.operation);
        let item = paths.entry(r.path).or_insert_with(|| json!({}));
        item[r.method] = route_item(r, op, &mut generator);
    }
    json!({"paths": paths, "components": {"schemas": generator.take_definitions(true)}})
}

/// The schema of the body of `r`: its operation's request without the fields of the path.
fn body_schema(r: &Route, request: &Schema, generator: &SchemaGenerator) -> Map<String, Value> {
    let mut body = openapi::inlined(generator, request);
    for (_, field) in r.path_fields {
        if let Some(Value::Object(properties)) = body.get_mut("properties") {
            properties.remove(*field);
        }
        if let Some(Value::Array(required)) = body.get_mut("required") {
            required.retain(|f| f != field);
        }
    }
    body
}

fn route_item(r: &Route, op: &api::Operation, generator: &mut SchemaGenerator) -> Value {
    let [request, reply] = (op.schemas)(generator);
    let mut parameters: Vec<Value> = r
        .path_fields
        .iter()
        .map(|(name, field)| {
            json!({"name": name, "in": "path", "required": true,
                   "description": format!("the request's `{field}`"),
                   "schema": {"type": "string"}})
        })
        .collect();
    parameters.extend(r.query.iter().map(|p| {
        let schema = match p.kind {
            ParamKind::Count => json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}),
            ParamKind::OneOf(values) => json!({"type": "string", "enum": values}),
            ParamKind::Text => json!({"type": "string"}),
        };
        json!({"name": p.name, "in": "query", "required": false, "description": p.about,
               "schema": schema})
    }));
    let mut responses = openapi::responses(op, r.success, reply.to_value());
    if r.operation == "policy.prepare" {
        responses["202"]["content"]["application/json"]["schema"] = json!({
            "allOf": [{"$ref": "#/components/schemas/CommandAccepted"}],
            "type": "object", "required": ["run_id"],
            "properties": {"run_id": {"type": "string"}}
        });
        responses["202"]["headers"] = json!({"Location": {"schema": {"type": "string"},
            "description": "the run: GET /admin/catalog-policy-runs/{runId}"}});
    }
    let mut item = json!({
        "operationId": format!("{}.{}", r.method, r.path.trim_start_matches('/')),
        "summary": op.about,
        "description": format!(
            "`{}` (docs/protocol.md), with the role `{}`.",
            op.name, op.role.as_str()
        ),
        "x-gatehouse-operation": op.name,
        "x-gatehouse-role": op.role.as_str(),
        "tags": [op.context()],
        "responses": responses,
    });
    if r.kind == Kind::Command {
        parameters.extend(openapi::command_headers());
        let body = body_schema(r, &request, generator);
        let required = body["required"].as_array().is_some_and(|r| !r.is_empty());
        item["requestBody"] = json!({
            "required": required,
            "content": {"application/json": {"schema": body}}
        });
    }
    item["parameters"] = parameters.into();
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn refused_field(result: Result<Map<String, Value>, Failure>) -> Option<String> {
        result.err().and_then(|Failure(r)| r.field)
    }

    #[test]
    fn list_parameters_become_the_querys_fields() {
        let fields = query_fields(
            pairs(&[
                ("status", "success"),
                ("policyId", "media"),
                ("limit", "5"),
                ("offset", "0"),
            ]),
            RUN_PARAMS,
        )
        .unwrap();
        assert_eq!(
            Value::Object(fields),
            json!({"status": "success", "policy_id": "media", "limit": 5, "offset": 0})
        );
    }

    #[test]
    fn a_negative_limit_is_refused_naming_the_parameter() {
        let refused = query_fields(pairs(&[("limit", "-1")]), RUN_PARAMS);
        assert_eq!(refused_field(refused).as_deref(), Some("limit"));
    }

    #[test]
    fn an_unknown_status_is_refused_naming_the_parameter() {
        let refused = query_fields(pairs(&[("status", "done")]), CASE_PARAMS);
        assert_eq!(refused_field(refused).as_deref(), Some("status"));
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let unknown = query_fields(pairs(&[("policy_id", "x")]), RUN_PARAMS);
        assert_eq!(refused_field(unknown).as_deref(), Some("policy_id"));
        let twice = query_fields(pairs(&[("offset", "1"), ("offset", "2")]), RUN_PARAMS);
        assert_eq!(refused_field(twice).as_deref(), Some("offset"));
    }

    #[test]
    fn the_path_fills_the_body_and_a_body_naming_another_value_is_refused() {
        let filled = with_path_fields(json!({"version": 2}), &[("policy_id", "media")]).unwrap();
        assert_eq!(filled, json!({"version": 2, "policy_id": "media"}));
        let same = with_path_fields(json!({"policy_id": "media"}), &[("policy_id", "media")]);
        assert!(same.is_ok());
        let other = with_path_fields(json!({"policy_id": "books"}), &[("policy_id", "media")]);
        assert_eq!(
            other.err().and_then(|Failure(r)| r.field).as_deref(),
            Some("policy_id")
        );
        assert!(with_path_fields(json!([1]), &[]).is_err());
    }

    #[test]
    fn every_operation_a_seed_route_calls_is_in_the_table() {
        for r in ROUTES {
            assert!(
                api::operation(r.kind, r.operation).is_some(),
                "{}",
                r.operation
            );
        }
    }

    #[test]
    fn every_path_field_is_a_field_of_the_operations_request() {
        let mut generator = openapi::generator();
        for r in ROUTES {
            let op = known(r.kind, r.operation);
            let [request, _] = (op.schemas)(&mut generator);
            let request = openapi::inlined(&generator, &request);
            let fields = request["properties"].as_object().expect("an object");
            let named = r.path_fields.iter().map(|(_, f)| *f);
            for field in named.chain(r.query.iter().map(|p| p.field)) {
                assert!(fields.contains_key(field), "{} has no `{field}`", op.name);
            }
        }
    }

    #[test]
    fn a_body_leaves_out_what_the_path_names() {
        let mut generator = openapi::generator();
        let r = &ROUTES[0];
        let op = known(r.kind, r.operation);
        let [request, _] = (op.schemas)(&mut generator);
        let body = body_schema(r, &request, &generator);
        assert!(body["properties"]["version"].is_object(), "{body:?}");
        assert!(body["properties"].get("policy_id").is_none(), "{body:?}");
        assert_eq!(body["required"], json!(["version"]));
    }
}
