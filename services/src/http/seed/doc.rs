//! The seed routes' fragment of the OpenAPI document, from [`super::ROUTES`]: each route's
//! path and query parameters, its body (the operation's request without what the path names),
//! its reply and every status it can give.

use schemars::{Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::params::ParamKind;
use super::{known, Route, ROUTES};
use crate::api::{self, Kind};
use crate::http::openapi;

/// The seed routes' fragment of the API document.
pub fn openapi() -> Value {
    let mut generator = openapi::generator();
    let mut paths = Map::new();
    for r in ROUTES {
        let op = known(r.kind, r.operation);
        let item = paths.entry(r.path).or_insert_with(|| json!({}));
        item[r.method.as_str()] = route_item(r, op, &mut generator);
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
        "operationId": format!("{}.{}", r.method.as_str(), r.path.trim_start_matches('/')),
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
    use crate::http::seed::{known, ROUTES};

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
