//! The parameters of the seed routes: query strings and path segments become fields of an
//! operation's request; anything unknown, repeated or out of range is `bad_request` naming it.

use axum::extract::Query;
use serde_json::{Map, Value};

use crate::http::{bad_request, Failure};

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
pub(crate) fn query_fields(
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
pub(crate) type Pairs =
    Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

pub(crate) fn pairs(query: Pairs) -> Result<Vec<(String, String)>, Failure> {
    query.map(|Query(pairs)| pairs).map_err(|e| {
        bad_request(
            format!("the query string is invalid: {}", e.body_text()),
            None,
        )
    })
}

/// `body` (a JSON object, or nothing) with `fields` from the path: a body that names one
/// of them with another value is `bad_request` naming it.
pub(crate) fn with_path_fields(body: Value, fields: &[(&str, &str)]) -> Result<Value, Failure> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
