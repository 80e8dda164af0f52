//! The OpenAPI 3.1 document of the HTTP API, generated from the code: one path per operation
//! of [`crate::api::operations`] (`/v1/commands/<name>`, `/v1/queries/<name>`), `/healthz`,
//! `/readyz`, `/openapi.json`, and the fragments other modules describe their own routes with
//! ([`FRAGMENTS`], the one list). Served at `GET /openapi.json`; `docs/openapi.json` is a
//! checked-in copy a test compares with [`document`] (`GATEHOUSE_UPDATE_OPENAPI=1` refreshes it).
//!
//! Request and reply bodies are the JSON Schemas of the wire types in `gatehouse_events`
//! (schemars, from their serde attributes, so they cannot drift), under
//! `#/components/schemas`; every response names its status — the statuses [`super::status`]
//! can give — and failures are `#/components/schemas/Error`, the JSON error body.

use gatehouse_events::envelope::{RejectionCode, WaitFor};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::api::{self, Kind, Operation};

/// Every module's fragment `{"paths": ..., "components": {"schemas": ...}}`, merged into the
/// document: a module with routes of its own adds its line here.
const FRAGMENTS: &[fn() -> Value] = &[
    super::seed::openapi,
    super::ops::openapi,
    super::ofrep::openapi,
    super::console::openapi,
];

/// The statuses a failure can have on any route ([`super::status`] of every code but
/// `quarantined_blob`, which only reads of blobs give).
pub(crate) const FAILURES: &[u16] = &[400, 401, 403, 404, 409, 500, 503];

/// The whole document.
pub fn document() -> Value {
    let mut generator = generator();
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
            "schemas": {"Error": error_schema(&mut generator)},
            "responses": failure_responses()
        }
    });
    merge(&mut doc, operation_paths(&mut generator));
    merge(&mut doc, service_paths());
    for fragment in FRAGMENTS {
        merge(&mut doc, fragment());
    }
    let definitions = json!({"components": {"schemas": generator.take_definitions(true)}});
    merge(&mut doc, definitions);
    doc
}

/// The generator of every schema in the document: JSON Schema 2020-12 (what OpenAPI 3.1
/// uses), definitions under `#/components/schemas`.
pub fn generator() -> SchemaGenerator {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    settings.into_generator()
}

/// The request's and the reply's schemas: what [`crate::command!`] and [`crate::query!`]
/// store in an [`Operation`].
pub fn schemas_of<Request: JsonSchema, Reply: JsonSchema>(
    generator: &mut SchemaGenerator,
) -> [Schema; 2] {
    [
        generator.subschema_for::<Request>(),
        generator.subschema_for::<Reply>(),
    ]
}

/// The object schema `schema` refers to in `generator` (or `schema` itself), to change.
pub(crate) fn inlined(generator: &SchemaGenerator, schema: &Schema) -> Map<String, Value> {
    let value = schema.as_value();
    let target = value
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .and_then(|name| generator.definitions().get(name))
        .unwrap_or(value);
    target.as_object().cloned().unwrap_or_default()
}

/// Adds `fragment`'s paths and schemas to `doc`.
fn merge(doc: &mut Value, fragment: Value) {
    for pointer in ["/paths", "/components/schemas"] {
        let Some(Value::Object(from)) = fragment.pointer(pointer) else {
            continue;
        };
        if let Some(Value::Object(into)) = doc.pointer_mut(pointer) {
            for (key, value) in from {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

/// One path per operation of the table.
fn operation_paths(generator: &mut SchemaGenerator) -> Value {
    let mut paths = Map::new();
    for op in api::operations() {
        let item = operation_item(op, generator);
        paths.insert(operation_path(op), json!({"post": item}));
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

fn operation_item(op: &Operation, generator: &mut SchemaGenerator) -> Value {
    let [request, reply] = (op.schemas)(generator);
    let mut request = request.to_value();
    if op.reads.is_some() {
        // `wait_for` is read before the query's own fields are.
        let wait_for = generator.subschema_for::<WaitFor>();
        let mut inline = inlined(generator, &Schema::try_from(request).unwrap_or_default());
        if let Some(Value::Object(properties)) = inline.get_mut("properties") {
            properties.insert("wait_for".into(), wait_for.to_value());
        }
        request = Value::Object(inline);
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
            "content": {"application/json": {"schema": request}}
        },
        "responses": responses(op, "200", reply.to_value()),
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

/// `reply` under `success`, and every failure status `op` can give.
pub(crate) fn responses(op: &Operation, success: &str, reply: Value) -> Value {
    let mut responses = Map::new();
    responses.insert(
        success.into(),
        json!({"description": op.reply, "content": {"application/json": {"schema": reply}}}),
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

/// `/healthz` and `/openapi.json`: no token needed (`/readyz` is [`super::ops`]'s).
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
        "/openapi.json": open("this document", json!({"type": "object"}), &[500]),
    }})
}

/// The JSON error body (`Rejection` in `gatehouse_events::envelope`).
fn error_schema(generator: &mut SchemaGenerator) -> Value {
    json!({
        "type": "object",
        "description": "Every failure: a stable machine-readable code and a message for people.",
        "required": ["code", "message"],
        "properties": {
            "code": generator.subschema_for::<RejectionCode>().to_value(),
            "message": {"type": "string"},
            "field": {"type": "string", "description": "the request field or parameter at fault"},
            "details": {"type": "array", "description": "machine-readable details, e.g. every blocking reason"}
        }
    })
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
    fn a_request_body_is_its_types_schema() {
        let draft = api::operation(Kind::Command, "policy.draft").unwrap();
        let mut generator = generator();
        let item = operation_item(draft, &mut generator);
        let schema = &item["requestBody"]["content"]["application/json"]["schema"];
        let schema = inlined(&generator, &Schema::try_from(schema.clone()).unwrap());
        let properties = &schema["properties"];
        let names: BTreeSet<&str> = properties
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, BTreeSet::from(["policy_id", "rules", "notes"]));
        let required = schema["required"].as_array().unwrap();
        assert!(required.contains(&json!("policy_id")), "{required:?}");
    }

    #[test]
    fn a_query_that_can_wait_documents_wait_for() {
        let get = api::operation(Kind::Query, "run.get").unwrap();
        let item = operation_item(get, &mut generator());
        let schema = &item["requestBody"]["content"]["application/json"]["schema"];
        assert!(schema["properties"]["run_id"].is_object(), "{schema}");
        assert!(schema["properties"]["wait_for"].is_object(), "{schema}");
    }

    #[test]
    fn fragments_never_redefine_a_schema_differently() {
        let mut generator = generator();
        operation_paths(&mut generator);
        let ours = generator.take_definitions(true);
        for fragment in FRAGMENTS {
            let theirs = fragment();
            let schemas = theirs["components"]["schemas"].as_object().cloned();
            for (name, schema) in schemas.unwrap_or_default() {
                if let Some(known) = ours.get(&name) {
                    assert_eq!(known, &schema, "{name} is defined twice, differently");
                }
            }
        }
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
