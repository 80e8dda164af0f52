//! OFREP, the OpenFeature Remote Evaluation Protocol (v0.3.0, `docs/protocol.md`, *OFREP*):
//! any OpenFeature SDK with an OFREP provider evaluates Gatehouse flags over HTTP.
//!
//! - `POST /ofrep/v1/evaluate/flags/{key}`: one flag (server-side providers).
//! - `POST /ofrep/v1/evaluate/flags`: every flag (client-side providers), with an `ETag`;
//!   `If-None-Match` with the current one answers `304 Not Modified`.
//!
//! The body is `{"context": {"targetingKey": ..., ...}}`. Answers come from the flag context's
//! own operations (`flag.evaluate`, `flag.evaluate_batch`: the shared evaluator, the `service`
//! role), with `targetingKey` as the request's `unit` (a rollout with a `stickiness` attribute
//! reads its unit from that attribute instead) and the whole context as the context. An
//! [`Evaluation`] becomes OFREP's `{key, value, reason, variant, metadata}` in [`answer`]:
//! variant `on`/`off`, Gatehouse's reason and bucket in `metadata`.
//!
//! Failures OFREP defines are answered in OFREP's shape (`{key?, errorCode, errorDetails}`, 400,
//! 404 and 500); a missing or unknown token (401) and a caller without the role (403), which OFREP
//! leaves open, with Gatehouse's JSON error body like every other route.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use gatehouse_events::envelope::{Rejection, RejectionCode, MAX_REQUEST_BYTES};
use gatehouse_events::flag::{Evaluation, Reason, MAX_BATCH};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{caller, Failure};
use crate::api::read::{column, query};
use crate::api::{self, App, Identity, Kind};

/// The single-flag route.
pub const FLAG_PATH: &str = "/ofrep/v1/evaluate/flags/{key}";
/// The bulk route.
pub const FLAGS_PATH: &str = "/ofrep/v1/evaluate/flags";
/// The header OFREP's `ApiKeyAuth` names: the same token as `Authorization: Bearer`.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The OFREP routes, merged into [`super::router`].
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(FLAG_PATH, post(evaluate_flag).fallback(only_post))
        .route(FLAGS_PATH, post(evaluate_flags).fallback(only_post))
}

/// Any other method: `not_found` (the JSON error body, like every unknown route).
async fn only_post() -> Failure {
    Failure(Rejection::new(
        RejectionCode::NotFound,
        "OFREP evaluates with POST and a JSON body `{\"context\": {...}}`",
    ))
}

// ----- the wire -----

/// OFREP's error codes (the OpenFeature error codes a server can answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// 404: no flag has this key.
    FlagNotFound,
    /// 400: the body is not JSON, or not an object.
    ParseError,
    /// 400 (or a failed item of a bulk answer): the flag needs a unit and the context has none.
    TargetingKeyMissing,
    /// 400: `context` is not an object, or `targetingKey` is not a string.
    InvalidContext,
    /// 500: the server could not evaluate (the database is unavailable, ...).
    General,
}

/// A successful evaluation: OFREP's `evaluationSuccess`. `value` is absent when the flag's
/// value is JSON `null`: OFREP's `codeDefaultFlag`, the SDK answers the caller's default.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolved {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// `STATIC`, `TARGETING_MATCH`, `SPLIT` or `DISABLED`.
    pub reason: &'static str,
    /// `on` or `off`: which of the flag's two values this is.
    pub variant: &'static str,
    /// `gatehouseReason` (the [`Reason`] in snake case) and `bucket` when one was computed.
    pub metadata: Map<String, Value>,
}

/// A failed evaluation: OFREP's `evaluationFailure` / `flagNotFound` (with `key`), or a whole
/// request's `bulkEvaluationFailure` / `generalErrorResponse` (without).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub error_code: ErrorCode,
    pub error_details: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

impl Failed {
    fn new(key: Option<&str>, error_code: ErrorCode, details: impl Into<String>) -> Self {
        Failed {
            key: key.map(str::to_owned),
            error_code,
            error_details: details.into(),
            metadata: Map::new(),
        }
    }

    /// The HTTP status OFREP gives this failure of a request.
    pub fn status(&self) -> StatusCode {
        match self.error_code {
            ErrorCode::FlagNotFound => StatusCode::NOT_FOUND,
            ErrorCode::General => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ParseError | ErrorCode::TargetingKeyMissing | ErrorCode::InvalidContext => {
                StatusCode::BAD_REQUEST
            }
        }
    }
}

/// One flag's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Resolved(Resolved),
    Failed(Failed),
}

/// Why a request is refused: by Gatehouse (token, role), or as OFREP says.
enum Refusal {
    Gatehouse(Failure),
    Ofrep(Failed),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Gatehouse(failure) => failure.into_response(),
            Refusal::Ofrep(failed) => (failed.status(), Json(failed)).into_response(),
        }
    }
}

impl From<Failure> for Refusal {
    fn from(f: Failure) -> Self {
        Refusal::Gatehouse(f)
    }
}

/// A rejection of the flag operations: the caller's (401, 403) stays Gatehouse's; anything
/// else is the server's (`GENERAL`, 500) except a bad request (`INVALID_CONTEXT`, 400).
fn refusal(key: Option<&str>, r: Rejection) -> Refusal {
    match r.code {
        RejectionCode::Unauthenticated
        | RejectionCode::Forbidden
        | RejectionCode::ActorMismatch => Refusal::Gatehouse(Failure(r)),
        RejectionCode::BadRequest => {
            Refusal::Ofrep(Failed::new(key, ErrorCode::InvalidContext, r.message))
        }
        _ => Refusal::Ofrep(Failed::new(key, ErrorCode::General, r.message)),
    }
}

// ----- Gatehouse's evaluation as OFREP's -----

/// The OFREP reason of a Gatehouse [`Reason`]: the switches that force the off value are
/// `DISABLED`; a decision by the unit's bucket (percentage, the rule's or the category's share)
/// is `SPLIT`; a decision by who the unit is (`include`, `exclude`, a whitelist, a rule that does
/// not hold, a category not chosen) is `TARGETING_MATCH`.
pub fn reason(evaluation: &Evaluation) -> &'static str {
    match evaluation.reason {
        Reason::EnvironmentOverride
        | Reason::SafeMode
        | Reason::EmergencyStop
        | Reason::Archived => "DISABLED",
        Reason::Bucket => "SPLIT",
        Reason::Category if evaluation.bucket.is_some() => "SPLIT",
        Reason::Excluded
        | Reason::Included
        | Reason::NotIncluded
        | Reason::Rule
        | Reason::Category => "TARGETING_MATCH",
        // Answered as failures by `answer`; `UNKNOWN` should they ever reach here.
        Reason::UnknownFlag | Reason::NoUnit => "UNKNOWN",
    }
}

/// Gatehouse's own words for an evaluation, in OFREP's `metadata`.
fn metadata(evaluation: &Evaluation) -> Map<String, Value> {
    let mut metadata = Map::new();
    let gatehouse = serde_json::to_value(evaluation.reason).unwrap_or(Value::Null);
    metadata.insert("gatehouseReason".into(), gatehouse);
    if let Some(bucket) = evaluation.bucket {
        metadata.insert("bucket".into(), bucket.into());
    }
    metadata
}

/// `evaluation` as OFREP answers it: a flag Gatehouse does not know is `FLAG_NOT_FOUND`; a
/// flag that needed a unit the context did not give is `TARGETING_KEY_MISSING`
/// (`targeting_key`: whether the request had one, for the details).
pub fn answer(evaluation: Evaluation, targeting_key: bool) -> Answer {
    let key: &str = &evaluation.flag;
    match evaluation.reason {
        Reason::UnknownFlag => Answer::Failed(Failed::new(
            Some(key),
            ErrorCode::FlagNotFound,
            format!("flag `{key}` does not exist"),
        )),
        Reason::NoUnit => {
            let details = if targeting_key {
                format!(
                    "flag `{key}` identifies units by a context attribute (its rollout's \
                     stickiness) that the context does not have"
                )
            } else {
                format!("flag `{key}` needs a unit: send `targetingKey` in the context")
            };
            let mut failed = Failed::new(Some(key), ErrorCode::TargetingKeyMissing, details);
            failed.metadata = metadata(&evaluation);
            Answer::Failed(failed)
        }
        _ => Answer::Resolved(Resolved {
            key: evaluation.flag.to_string(),
            reason: reason(&evaluation),
            variant: if evaluation.enabled { "on" } else { "off" },
            metadata: metadata(&evaluation),
            value: Some(&*evaluation.value).filter(|v| !v.is_null()).cloned(),
        }),
    }
}

// ----- requests -----

/// An OFREP request body, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    /// The whole context, `targetingKey` included.
    pub context: Map<String, Value>,
    /// `targetingKey` when it is a non-empty string.
    pub targeting_key: Option<String>,
}

/// Reads `{"context": {"targetingKey": "...", ...}}`; other members are ignored (forward
/// compatibility), and a body without `context` is an empty context (what SDKs send for one).
/// `targetingKey` may be absent or `null`; only the flags that need a unit fail without it.
pub fn parse(bytes: &[u8]) -> Result<Asked, (ErrorCode, String)> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err((
            ErrorCode::ParseError,
            "the body is empty: send {\"context\": {\"targetingKey\": \"...\"}}".into(),
        ));
    }
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|e| (ErrorCode::ParseError, format!("the body is not JSON: {e}")))?;
    let Value::Object(mut body) = body else {
        return Err((
            ErrorCode::ParseError,
            "the body must be a JSON object: {\"context\": {...}}".into(),
        ));
    };
    let context = match body.remove("context") {
        Some(Value::Object(context)) => context,
        // SDKs leave `context` out when the evaluation context is empty.
        None | Some(Value::Null) => Map::new(),
        Some(_) => {
            return Err((
                ErrorCode::InvalidContext,
                "`context` must be a JSON object".into(),
            ))
        }
    };
    let targeting_key = match context.get("targetingKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()).filter(|s| !s.is_empty()),
        Some(_) => {
            return Err((
                ErrorCode::InvalidContext,
                "`context.targetingKey` must be a string".into(),
            ))
        }
    };
    Ok(Asked {
        context,
        targeting_key,
    })
}

/// The caller: `Authorization: Bearer <token>`, or OFREP's `X-API-Key: <token>`.
async fn ofrep_caller(app: &App, headers: &HeaderMap) -> Result<Identity, Refusal> {
    if headers.contains_key(header::AUTHORIZATION) {
        return Ok(Identity::User(caller(app, headers).await?));
    }
    let mut bearer = HeaderMap::new();
    if let Some(key) = headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| HeaderValue::from_str(&format!("Bearer {}", v.trim())).ok())
    {
        bearer.insert(header::AUTHORIZATION, key);
    }
    Ok(Identity::User(caller(app, &bearer).await?))
}

async fn read_body(body: Body, key: Option<&str>) -> Result<Asked, Refusal> {
    let bytes = to_bytes(body, MAX_REQUEST_BYTES).await.map_err(|_| {
        Refusal::Ofrep(Failed::new(
            key,
            ErrorCode::ParseError,
            format!("the body is larger than {MAX_REQUEST_BYTES} bytes"),
        ))
    })?;
    parse(&bytes).map_err(|(code, details)| Refusal::Ofrep(Failed::new(key, code, details)))
}

/// Calls query `name` as `caller` with `request`: the operation's role check, then its handler.
async fn call(
    app: &App,
    caller: &Identity,
    name: &str,
    request: &Value,
    key: Option<&str>,
) -> Result<Value, Refusal> {
    let internal = |message: String| {
        tracing::error!(error.message = %message, operation = name, "OFREP");
        Refusal::Ofrep(Failed::new(
            key,
            ErrorCode::General,
            "unexpected server error",
        ))
    };
    let op =
        api::operation(Kind::Query, name).ok_or_else(|| internal(format!("no query `{name}`")))?;
    let payload = serde_json::to_vec(request).map_err(|e| internal(e.to_string()))?;
    op.call(app, caller, &payload)
        .await
        .map_err(|r| refusal(key, r))
}

/// `POST /ofrep/v1/evaluate/flags/{key}`.
async fn evaluate_flag(
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
    request: Request,
) -> Result<Response, Refusal> {
    let (parts, body) = request.into_parts();
    let caller = ofrep_caller(&app, &parts.headers).await?;
    let asked = read_body(body, Some(&key)).await?;
    let request = json!({"flag": key, "unit": asked.targeting_key, "context": asked.context});
    let result = call(&app, &caller, "flag.evaluate", &request, Some(&key)).await?;
    let evaluation: Evaluation = serde_json::from_value(result).map_err(|e| {
        tracing::error!(error.message = %e, "OFREP: flag.evaluate answered an unknown shape");
        Refusal::Ofrep(Failed::new(
            Some(&key),
            ErrorCode::General,
            "unexpected server error",
        ))
    })?;
    match answer(evaluation, asked.targeting_key.is_some()) {
        Answer::Resolved(resolved) => Ok((StatusCode::OK, Json(resolved)).into_response()),
        Answer::Failed(failed) => Err(Refusal::Ofrep(failed)),
    }
}

/// What the bulk answer depends on besides the context: every flag's key and the sequence of
/// its last event, and safe mode's, read before evaluating (a change landing in between makes
/// the next `ETag` differ, never the reverse).
struct FlagSet {
    keys: Vec<String>,
    version: Value,
}

async fn flag_set(app: &App) -> Result<FlagSet, Refusal> {
    let fail = |r: Rejection| refusal(None, r);
    let rows = query(
        &app.pg,
        "SELECT flag_key, last_sequence FROM flags ORDER BY flag_key",
        &[],
    )
    .await
    .map_err(fail)?;
    let mut keys = Vec::with_capacity(rows.len());
    let mut version = Vec::with_capacity(rows.len() + 1);
    for row in &rows {
        let key: String = column(row, "flag_key").map_err(fail)?;
        let sequence: i64 = column(row, "last_sequence").map_err(fail)?;
        version.push(json!([key, sequence]));
        keys.push(key);
    }
    let global = query(&app.pg, "SELECT last_sequence FROM flag_globals", &[])
        .await
        .map_err(fail)?;
    let safe_mode: Option<i64> = match global.first() {
        Some(row) => Some(column(row, "last_sequence").map_err(fail)?),
        None => None,
    };
    Ok(FlagSet {
        keys,
        version: json!({"flags": version, "global": safe_mode}),
    })
}

/// `value` with every object's members in key order, so equal contexts hash alike.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            let mut sorted = Map::new();
            for (k, v) in members {
                sorted.insert(k.clone(), canonical(v));
            }
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The bulk answer's entity tag: the flag set's version, the context and the answers (which
/// also reflect what no flag event records: the environment override, units' categories).
pub fn etag(version: &Value, context: &Map<String, Value>, answers: &[Answer]) -> String {
    let mut hash = Sha256::new();
    for part in [
        version.clone(),
        canonical(&Value::Object(context.clone())),
        serde_json::to_value(answers).unwrap_or(Value::Null),
    ] {
        hash.update(part.to_string().as_bytes());
        hash.update(b"\n");
    }
    format!("\"{}\"", &hex::encode(hash.finalize())[..32])
}

/// Does `If-None-Match` name `etag` (or `*`)? Weak tags compare by their opaque part.
pub fn none_match(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// `POST /ofrep/v1/evaluate/flags`.
async fn evaluate_flags(
    State(app): State<Arc<App>>,
    request: Request,
) -> Result<Response, Refusal> {
    let (parts, body) = request.into_parts();
    let caller = ofrep_caller(&app, &parts.headers).await?;
    let asked = read_body(body, None).await?;
    let set = flag_set(&app).await?;
    let mut evaluations: Vec<Evaluation> = Vec::with_capacity(set.keys.len());
    // At least one call, so a caller without the role is refused even when there is no flag.
    let mut chunks: Vec<&[String]> = set.keys.chunks(MAX_BATCH).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    for chunk in chunks {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|key| json!({"flag": key, "unit": asked.targeting_key, "context": asked.context}))
            .collect();
        let result = call(
            &app,
            &caller,
            "flag.evaluate_batch",
            &json!({"evaluations": batch}),
            None,
        )
        .await?;
        let part: Vec<Evaluation> = serde_json::from_value(result).map_err(|e| {
            tracing::error!(error.message = %e, "OFREP: flag.evaluate_batch answered an unknown shape");
            Refusal::Ofrep(Failed::new(None, ErrorCode::General, "unexpected server error"))
        })?;
        evaluations.extend(part);
    }
    let has_key = asked.targeting_key.is_some();
    let answers: Vec<Answer> = evaluations
        .into_iter()
        .map(|e| answer(e, has_key))
        .collect();
    let tag = etag(&set.version, &asked.context, &answers);
    let etag_header = HeaderValue::from_str(&tag).map_err(|_| {
        Refusal::Ofrep(Failed::new(
            None,
            ErrorCode::General,
            "unexpected server error",
        ))
    })?;
    let headers = [
        (header::ETAG, etag_header),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        ),
    ];
    let unchanged = parts
        .headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| none_match(v, &tag));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    Ok((StatusCode::OK, headers, Json(json!({"flags": answers}))).into_response())
}

// ----- OpenAPI -----

/// The OpenAPI 3.1 fragment of these routes (schemas after OFREP's `service/openapi.yaml`).
pub fn openapi() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let gatehouse_error = |description: &str| {
        json!({"description": description,
               "content": {"application/json": {"schema": error.clone()}}})
    };
    let ofrep = |description: &str, schema: &str| {
        json!({"description": description, "content": {"application/json": {
            "schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
    };
    let body = json!({"required": true, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/OfrepEvaluationRequest"}}}});
    let metadata = json!({"type": "object", "description":
        "`gatehouseReason`: Gatehouse's reason (snake case); `bucket`: the unit's bucket when one was computed",
        "additionalProperties": {"oneOf": [{"type": "boolean"}, {"type": "string"}, {"type": "number"}]}});
    let error_code = |codes: &[&str]| json!({"type": "string", "enum": codes});
    json!({
        "paths": {
            "/ofrep/v1/evaluate/flags/{key}": {"post": {
                "tags": ["OFREP"],
                "operationId": "ofrepEvaluateFlag",
                "security": [{"bearer": []}],
                "summary": "Evaluate one flag (OFREP, server-side providers)",
                "description": "The flag's value for the context's unit: `targetingKey`, or the attribute the rollout names as its stickiness. Needs the `service` role.",
                "parameters": [{"name": "key", "in": "path", "required": true,
                                "description": "The flag's key", "schema": {"type": "string"}}],
                "requestBody": body.clone(),
                "responses": {
                    "200": ofrep("The flag's value", "OfrepEvaluationSuccess"),
                    "400": ofrep("PARSE_ERROR, INVALID_CONTEXT or TARGETING_KEY_MISSING", "OfrepEvaluationFailure"),
                    "401": gatehouse_error("No token, or an unknown or revoked one"),
                    "403": gatehouse_error("The token's user lacks the `service` role"),
                    "404": ofrep("FLAG_NOT_FOUND", "OfrepEvaluationFailure"),
                    "500": ofrep("GENERAL: the server could not evaluate", "OfrepGeneralError")
                }
            }},
            "/ofrep/v1/evaluate/flags": {"post": {
                "tags": ["OFREP"],
                "operationId": "ofrepEvaluateFlags",
                "security": [{"bearer": []}],
                "summary": "Evaluate every flag (OFREP, client-side providers)",
                "description": "Every flag for the context, archived ones included. The `ETag` changes with any flag event, with the context and with the answers; `If-None-Match` with it answers 304. Needs the `service` role.",
                "parameters": [
                    {"name": "If-None-Match", "in": "header", "required": false,
                     "description": "An `ETag` of an earlier answer", "schema": {"type": "string"}},
                    {"name": "flagConfigEtag", "in": "query", "required": false,
                     "description": "Accepted and ignored (event streams are not offered)", "schema": {"type": "string"}},
                    {"name": "flagConfigLastModified", "in": "query", "required": false,
                     "description": "Accepted and ignored (event streams are not offered)", "schema": {"type": "string"}}
                ],
                "requestBody": body,
                "responses": {
                    "200": {
                        "description": "Every flag's answer",
                        "headers": {
                            "ETag": {"description": "The answer's entity tag", "schema": {"type": "string"}},
                            "Cache-Control": {"description": "`private, no-cache`", "schema": {"type": "string"}}
                        },
                        "content": {"application/json": {"schema":
                            {"$ref": "#/components/schemas/OfrepBulkEvaluationSuccess"}}}
                    },
                    "304": {"description": "Unchanged since the `If-None-Match` tag (no body)",
                            "headers": {"ETag": {"description": "The answer's entity tag", "schema": {"type": "string"}}}},
                    "400": ofrep("PARSE_ERROR or INVALID_CONTEXT", "OfrepBulkEvaluationFailure"),
                    "401": gatehouse_error("No token, or an unknown or revoked one"),
                    "403": gatehouse_error("The token's user lacks the `service` role"),
                    "500": ofrep("GENERAL: the server could not evaluate", "OfrepGeneralError")
                }
            }}
        },
        "components": {"schemas": {
            "OfrepEvaluationRequest": {
                "type": "object", "required": ["context"],
                "properties": {"context": {
                    "type": "object", "additionalProperties": true,
                    "properties": {"targetingKey": {"type": ["string", "null"]}}
                }}
            },
            "OfrepEvaluationSuccess": {
                "type": "object", "required": ["key", "reason", "variant"],
                "properties": {
                    "key": {"type": "string"},
                    "value": {"description": "The flag's on or off value; absent when it is null (use the code default)"},
                    "reason": {"type": "string", "enum": ["STATIC", "TARGETING_MATCH", "SPLIT", "DISABLED", "UNKNOWN"]},
                    "variant": {"type": "string", "enum": ["on", "off"]},
                    "metadata": metadata.clone()
                }
            },
            "OfrepEvaluationFailure": {
                "type": "object", "required": ["key", "errorCode"],
                "properties": {
                    "key": {"type": "string"},
                    "errorCode": error_code(&["FLAG_NOT_FOUND", "PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL"]),
                    "errorDetails": {"type": "string"},
                    "metadata": metadata
                }
            },
            "OfrepBulkEvaluationSuccess": {
                "type": "object", "required": ["flags"],
                "properties": {"flags": {"type": "array", "items": {"oneOf": [
                    {"$ref": "#/components/schemas/OfrepEvaluationSuccess"},
                    {"$ref": "#/components/schemas/OfrepEvaluationFailure"}
                ]}}}
            },
            "OfrepBulkEvaluationFailure": {
                "type": "object", "required": ["errorCode"],
                "properties": {
                    "errorCode": error_code(&["PARSE_ERROR", "INVALID_CONTEXT", "GENERAL"]),
                    "errorDetails": {"type": "string"}
                }
            },
            "OfrepGeneralError": {
                "type": "object", "required": ["errorCode"],
                "properties": {
                    "errorCode": error_code(&["GENERAL"]),
                    "errorDetails": {"type": "string"}
                }
            }
        }}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation(reason: Reason, enabled: bool, value: Value, bucket: Option<u32>) -> Evaluation {
        Evaluation {
            flag: "checkout.new".into(),
            enabled,
            value: value.into(),
            reason,
            bucket,
        }
    }

    #[test]
    fn an_evaluation_answers_its_value_variant_and_ofrep_reason_with_gatehouses_in_metadata() {
        let got = answer(
            evaluation(Reason::Bucket, true, json!(true), Some(812)),
            true,
        );
        let got = serde_json::to_value(got).unwrap();
        assert_eq!(
            got,
            json!({"key": "checkout.new", "value": true, "reason": "SPLIT", "variant": "on",
                   "metadata": {"gatehouseReason": "bucket", "bucket": 812}})
        );
        let cases = [
            (Reason::EnvironmentOverride, None, "DISABLED"),
            (Reason::SafeMode, None, "DISABLED"),
            (Reason::EmergencyStop, None, "DISABLED"),
            (Reason::Archived, None, "DISABLED"),
            (Reason::Excluded, None, "TARGETING_MATCH"),
            (Reason::Included, None, "TARGETING_MATCH"),
            (Reason::NotIncluded, None, "TARGETING_MATCH"),
            (Reason::Rule, None, "TARGETING_MATCH"),
            (Reason::Category, None, "TARGETING_MATCH"),
            (Reason::Category, Some(40), "SPLIT"),
            (Reason::Bucket, Some(1), "SPLIT"),
        ];
        for (reason, bucket, expected) in cases {
            let Answer::Resolved(r) = answer(evaluation(reason, false, json!(false), bucket), true)
            else {
                panic!("{reason:?} resolves");
            };
            assert_eq!((r.reason, r.variant), (expected, "off"), "{reason:?}");
        }
    }

    #[test]
    fn a_null_value_defers_to_the_code_default() {
        let Answer::Resolved(r) = answer(evaluation(Reason::Rule, false, Value::Null, None), true)
        else {
            panic!("resolves");
        };
        let got = serde_json::to_value(r).unwrap();
        assert!(got.get("value").is_none(), "{got}");
        assert_eq!(got["variant"], "off");
    }

    #[test]
    fn an_unknown_flag_and_a_missing_unit_are_failures_with_their_status() {
        let Answer::Failed(f) = answer(
            evaluation(Reason::UnknownFlag, false, Value::Null, None),
            true,
        ) else {
            panic!("fails");
        };
        assert_eq!(
            (f.error_code, f.status()),
            (ErrorCode::FlagNotFound, StatusCode::NOT_FOUND)
        );
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            json!({"key": "checkout.new", "errorCode": "FLAG_NOT_FOUND",
                   "errorDetails": "flag `checkout.new` does not exist"})
        );
        let Answer::Failed(f) =
            answer(evaluation(Reason::NoUnit, false, json!(false), None), false)
        else {
            panic!("fails");
        };
        assert_eq!(
            (f.error_code, f.status()),
            (ErrorCode::TargetingKeyMissing, StatusCode::BAD_REQUEST)
        );
        assert!(
            f.error_details.contains("targetingKey"),
            "{}",
            f.error_details
        );
        assert_eq!(
            Failed::new(None, ErrorCode::General, "x").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn a_body_is_read_with_a_clear_error_for_each_mistake() {
        let asked =
            parse(br#"{"context": {"targetingKey": "u-1", "plan": "pro"}, "x": 1}"#).unwrap();
        assert_eq!(asked.targeting_key.as_deref(), Some("u-1"));
        assert_eq!(asked.context["plan"], "pro");
        assert_eq!(asked.context["targetingKey"], "u-1");
        let none = parse(br#"{"context": {"targetingKey": null}}"#).unwrap();
        assert_eq!(none.targeting_key, None);
        assert_eq!(
            parse(br#"{"context": {"targetingKey": ""}}"#)
                .unwrap()
                .targeting_key,
            None
        );
        let code = |body: &[u8]| parse(body).unwrap_err().0;
        assert_eq!(code(b""), ErrorCode::ParseError);
        assert_eq!(code(b"{nope"), ErrorCode::ParseError);
        assert_eq!(code(b"[1]"), ErrorCode::ParseError);
        assert_eq!(parse(b"{}").unwrap().context, Map::new());
        assert_eq!(code(br#"{"context": 3}"#), ErrorCode::InvalidContext);
        assert_eq!(
            code(br#"{"context": {"targetingKey": 7}}"#),
            ErrorCode::InvalidContext
        );
    }

    #[test]
    fn the_etag_changes_with_the_flags_the_context_and_the_answers_but_not_member_order() {
        let v1 = json!({"flags": [["a", 1]], "global": null});
        let v2 = json!({"flags": [["a", 2]], "global": null});
        let ctx = |s: &str| serde_json::from_str::<Map<String, Value>>(s).unwrap();
        let a = ctx(r#"{"targetingKey": "u", "plan": "pro"}"#);
        let b = ctx(r#"{"plan": "pro", "targetingKey": "u"}"#);
        let c = ctx(r#"{"targetingKey": "v", "plan": "pro"}"#);
        let answers = [answer(
            evaluation(Reason::Bucket, true, json!(true), Some(5)),
            true,
        )];
        let other = [answer(
            evaluation(Reason::Bucket, false, json!(false), Some(5)),
            true,
        )];
        let tag = etag(&v1, &a, &answers);
        assert!(
            tag.starts_with('"') && tag.ends_with('"') && tag.len() == 34,
            "{tag}"
        );
        assert_eq!(tag, etag(&v1, &b, &answers));
        assert_ne!(tag, etag(&v2, &a, &answers));
        assert_ne!(tag, etag(&v1, &c, &answers));
        assert_ne!(tag, etag(&v1, &a, &other));
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_the_wildcard() {
        let tag = "\"abc\"";
        assert!(none_match("\"abc\"", tag));
        assert!(none_match("\"x\", W/\"abc\"", tag));
        assert!(none_match("*", tag));
        assert!(!none_match("\"abd\"", tag));
        assert!(!none_match("abc", tag));
    }

    #[test]
    fn the_openapi_fragment_describes_both_routes_and_every_reference_resolves() {
        let doc = openapi();
        let paths = doc["paths"].as_object().unwrap();
        let mut routes: Vec<&str> = paths.keys().map(String::as_str).collect();
        routes.sort();
        assert_eq!(routes, [FLAGS_PATH, FLAG_PATH]);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"").skip(1) {
            let target = reference.split('"').next().unwrap();
            let name = target.strip_prefix("#/components/schemas/").unwrap();
            assert!(name == "Error" || schemas.contains_key(name), "{target}");
        }
        for (path, statuses) in [
            (FLAG_PATH, &["200", "400", "401", "403", "404", "500"][..]),
            (FLAGS_PATH, &["200", "304", "400", "401", "403", "500"][..]),
        ] {
            let responses = paths[path]["post"]["responses"].as_object().unwrap();
            let mut got: Vec<&str> = responses.keys().map(String::as_str).collect();
            got.sort();
            assert_eq!(got, statuses, "{path}");
        }
    }
}
