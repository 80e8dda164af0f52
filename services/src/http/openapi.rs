//! The OpenAPI 3.1 document of the HTTP API, generated from the code: one path per operation
//! of [`crate::api::operations`] (`/v1/commands/<name>`, `/v1/queries/<name>`), `/healthz`,
//! `/readyz`, `/openapi.json`, and the fragments other modules describe their own routes with
//! ([`FRAGMENTS`], the one list). Served at `GET /openapi.json`; `docs/openapi.json` is a
//! checked-in copy a test compares with [`document`] (`GATEHOUSE_UPDATE_OPENAPI=1` refreshes it).
//!
//! A request body lists its type's top-level fields (read from its serde `Deserialize`, so it
//! cannot drift); every response names its status — the statuses [`super::status`] can give —
//! and failures reference `#/components/schemas/Error`, the JSON error body.

use serde::de::{self, Deserializer, Visitor};
use serde_json::{json, Map, Value};

use crate::api::{self, Kind, Operation};

/// Every module's fragment `{"paths": ..., "components": {"schemas": ...}}`, merged into the
/// document: a module with routes of its own adds its line here.
const FRAGMENTS: &[fn() -> Value] = &[super::seed::openapi];

/// The statuses a failure can have on any route ([`super::status`] of every code but
/// `quarantined_blob`, which only reads of blobs give).
pub(crate) const FAILURES: &[u16] = &[400, 401, 403, 404, 409, 500, 503];

/// The whole document.
pub fn document() -> Value {
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Gatehouse HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The same commands and queries as Gatehouse's NATS interface, with \
                the same payloads and rejection codes (docs/protocol.md). Commands take \
                `Idempotency-Key` (the command's id: a retry over HTTP or NATS with the same \
                id is the same command). Every failure is the JSON error body `Error` with the \
                status its code maps to."
        },
        "security": [{"bearer": []}],
        "paths": {},
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`gh_<id>.<secret>`, issued by `access.issue_token`"
                }
            },
            "schemas": {"Error": error_schema(), "CommandAccepted": accepted_schema()},
            "responses": failure_responses()
        }
    });
    merge(&mut doc, operation_paths());
    merge(&mut doc, service_paths());
    for fragment in FRAGMENTS {
        merge(&mut doc, fragment());
    }
    doc
}

/// Adds `fragment`'s paths and schemas to `doc`.
fn merge(doc: &mut Value, fragment: Value) {
    for section in ["paths", "components/schemas"] {
        let pointer = format!("/{section}");
        let (Some(Value::Object(into)), Some(Value::Object(from))) =
            (doc.pointer(&pointer).cloned(), fragment.pointer(&pointer))
        else {
            continue;
        };
        let mut into = into;
        for (key, value) in from {
            into.insert(key.clone(), value.clone());
        }
        if let Some(slot) = doc.pointer_mut(&pointer) {
            *slot = Value::Object(into);
        }
    }
}

/// One path per operation of the table.
fn operation_paths() -> Value {
    let mut paths = Map::new();
    for op in api::operations() {
        paths.insert(operation_path(op), json!({"post": operation_item(op)}));
    }
    json!({"paths": paths})
}

/// `/v1/commands/<name>` or `/v1/queries/<name>`.
pub fn operation_path(op: &Operation) -> String {
    match op.kind {
        Kind::Command => format!("/v1/commands/{}", op.name),
        Kind::Query => format!("/v1/queries/{}", op.name),
    }
}

fn operation_item(op: &Operation) -> Value {
    let mut properties = fields(op, &[]);
    if op.reads.is_some() {
        properties.insert(
            "wait_for".into(),
            json!({"description": "read your writes: wait until the read model has projected \
                   these events (docs/protocol.md)"}),
        );
    }
    let mut item = json!({
        "operationId": op.name,
        "summary": op.about,
        "description": format!(
            "Requires the role `{}`. Request `{}`, reply `{}` (docs/protocol.md).",
            op.role.as_str(), op.request, op.reply
        ),
        "x-gatehouse-role": op.role.as_str(),
        "tags": [op.context()],
        "requestBody": {
            "required": op.kind == Kind::Command,
            "content": {"application/json": {"schema": {
                "type": "object", "title": op.request, "properties": properties
            }}}
        },
        "responses": responses(op, "200"),
    });
    if op.kind == Kind::Command {
        item["parameters"] = json!(command_headers());
    }
    item
}

/// `Idempotency-Key` and `X-Correlation-Id`, the headers of every command.
pub(crate) fn command_headers() -> Vec<Value> {
    vec![
        json!({"name": "Idempotency-Key", "in": "header", "required": true,
               "description": "the command's id (`command_id`), the same on every retry",
               "schema": {"type": "string", "minLength": 1}}),
        json!({"name": "X-Correlation-Id", "in": "header", "required": false,
               "schema": {"type": "string"}}),
    ]
}

/// `op`'s request fields but those in `except` (filled from a path), each of any JSON type.
pub(crate) fn fields(op: &Operation, except: &[&str]) -> Map<String, Value> {
    (op.fields)()
        .iter()
        .filter(|f| !except.contains(f))
        .map(|f| ((*f).to_owned(), json!({})))
        .collect()
}

/// `op`'s reply under `success`, and every failure status it can give.
pub(crate) fn responses(op: &Operation, success: &str) -> Value {
    let mut responses = Map::new();
    responses.insert(
        success.into(),
        json!({"description": op.reply, "content": {"application/json": {"schema": reply_schema(op.reply)}}}),
    );
    let mut failures = FAILURES.to_vec();
    if op.name == "artifact.can_read" {
        failures.push(423);
    }
    for status in failures {
        responses.insert(status.to_string(), failure(status));
    }
    Value::Object(responses)
}

/// A failure response: a reference to [`failure_responses`]' entry for `status`.
pub(crate) fn failure(status: u16) -> Value {
    json!({"$ref": format!("#/components/responses/Failure{status}")})
}

/// Every failure status's response: the JSON error body.
fn failure_responses() -> Value {
    let mut statuses = FAILURES.to_vec();
    statuses.push(423);
    let responses: Map<String, Value> = statuses
        .into_iter()
        .map(|status| {
            let reason = axum::http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("failure");
            let response = json!({
                "description": reason,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            });
            (format!("Failure{status}"), response)
        })
        .collect();
    Value::Object(responses)
}

/// The schema of a reply type's JSON.
fn reply_schema(reply: &str) -> Value {
    let reply: String = reply.chars().filter(|c| !c.is_whitespace()).collect();
    if reply == "CommandAccepted" {
        json!({"$ref": "#/components/schemas/CommandAccepted"})
    } else if let Some(item) = reply.strip_prefix("Vec<").and_then(|r| r.strip_suffix('>')) {
        json!({"type": "array", "items": {"type": "object", "title": item}})
    } else {
        json!({"type": "object", "title": reply})
    }
}

/// `/healthz`, `/readyz` and `/openapi.json`: no token needed.
fn service_paths() -> Value {
    let open = |summary: &str, ok: Value, failures: &[u16]| {
        let mut responses = json!({"200": {"description": "OK",
            "content": {"application/json": {"schema": ok}}}});
        for status in failures {
            responses[status.to_string()] = failure(*status);
        }
        json!({"get": {"summary": summary, "security": [], "tags": ["service"], "responses": responses}})
    };
    json!({"paths": {
        "/healthz": open("the process answers",
            json!({"type": "object", "required": ["status"]}), &[500]),
        "/readyz": open("Postgres answers and every migration is applied",
            json!({"type": "object", "required": ["status"]}), &[500, 503]),
        "/openapi.json": open("this document", json!({"type": "object"}), &[500]),
    }})
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "Every failure: a stable machine-readable code and a message for people.",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "the rejection code (docs/protocol.md)"},
            "message": {"type": "string"},
            "field": {"type": "string", "description": "the request field or parameter at fault"},
            "details": {"type": "array", "description": "machine-readable details, e.g. every blocking reason"}
        }
    })
}

fn accepted_schema() -> Value {
    json!({
        "type": "object",
        "required": ["command_id", "aggregate", "aggregate_id", "sequence", "events", "duplicate"],
        "properties": {
            "command_id": {"type": "string"},
            "aggregate": {"type": "string"},
            "aggregate_id": {"type": "string"},
            "sequence": {"type": "integer", "minimum": 0},
            "events": {"type": "array", "items": {"type": "object"}},
            "duplicate": {"type": "boolean", "description": "the stored outcome of an earlier request with this id"},
            "detail": {"description": "command-specific facts, e.g. the run id of a prepared run"}
        }
    })
}

/// The top-level field names of `T`'s serde `Deserialize` (a struct's), or none: serde
/// passes them to `deserialize_struct`, which a capturing deserializer records.
pub fn fields_of<T: de::DeserializeOwned>() -> &'static [&'static str] {
    let mut captured = None;
    let _ = T::deserialize(Capture(&mut captured));
    captured.unwrap_or(&[])
}

struct Capture<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for Capture<'_> {
    type Error = de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("fields captured"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_document_has_the_shape_of_openapi_3_1() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        let methods = [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ];
        for (path, item) in doc["paths"].as_object().expect("paths") {
            assert!(path.starts_with('/'), "{path}");
            let item = item.as_object().expect("a path item is an object");
            for (method, operation) in item {
                assert!(methods.contains(&method.as_str()), "{path}: {method}");
                let responses = operation["responses"].as_object().expect("responses");
                assert!(!responses.is_empty(), "{method} {path} has responses");
                for (status, response) in responses {
                    assert!(status.parse::<u16>().is_ok(), "{method} {path}: {status}");
                    let response = match response["$ref"].as_str() {
                        Some(r) => doc.pointer(r.trim_start_matches('#')).expect("resolves"),
                        None => response,
                    };
                    assert!(
                        response["description"].is_string(),
                        "{method} {path} {status}"
                    );
                }
                let declared: BTreeSet<String> = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
                    .collect();
                let templated: BTreeSet<String> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                    .map(str::to_owned)
                    .collect();
                assert_eq!(declared, templated, "{method} {path}: path parameters");
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"").skip(1) {
            let target = reference.split('"').next().unwrap_or_default();
            let pointer = target.strip_prefix('#').expect("a local reference");
            assert!(doc.pointer(pointer).is_some(), "{target} resolves");
        }
    }

    #[test]
    fn every_operation_of_the_table_is_documented_with_its_role() {
        let doc = document();
        for op in api::operations() {
            let item = &doc["paths"][operation_path(op)]["post"];
            assert_eq!(item["operationId"], op.name);
            assert_eq!(item["x-gatehouse-role"], op.role.as_str(), "{}", op.name);
            for status in ["200", "400", "401", "403"] {
                assert!(
                    item["responses"][status].is_object(),
                    "{} {status}",
                    op.name
                );
            }
        }
    }

    #[test]
    fn a_request_body_lists_its_types_fields() {
        let draft = api::operation(Kind::Command, "policy.draft").unwrap();
        let item = operation_item(draft);
        let properties =
            &item["requestBody"]["content"]["application/json"]["schema"]["properties"];
        let names: BTreeSet<&str> = properties
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, BTreeSet::from(["policy_id", "rules", "notes"]));
    }

    #[test]
    fn a_type_that_is_not_a_struct_has_no_fields() {
        assert!(fields_of::<String>().is_empty());
        assert!(fields_of::<Vec<u32>>().is_empty());
    }

    /// `docs/openapi.json` is what the code generates; `GATEHOUSE_UPDATE_OPENAPI=1` rewrites it.
    #[test]
    fn the_checked_in_document_is_the_generated_one() {
        let path = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap())
            .join("../docs/openapi.json");
        let generated = format!("{}\n", serde_json::to_string_pretty(&document()).unwrap());
        if std::env::var("GATEHOUSE_UPDATE_OPENAPI").as_deref() == Ok("1") {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json is stale: run `GATEHOUSE_UPDATE_OPENAPI=1 cargo test -p gatehouse \
             --lib openapi` and commit it"
        );
    }
}
