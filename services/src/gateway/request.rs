//! Turning raw request bytes into typed commands and queries, or a `bad_request` naming the
//! field at fault. Nothing is executed for a request that fails here.

use gatehouse_events::envelope::{
    CommandRequest, Rejection, RejectionCode, MAX_ACTOR_LEN, MAX_ID_LEN, MAX_REQUEST_BYTES,
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::store::CommandContext;

/// A command request that passed the envelope checks.
pub struct Parsed<C> {
    pub context: CommandContext,
    pub command: C,
}

/// Parses a command request for `command_type` (e.g. `policy.draft`) sent on `subject`.
pub fn command<C: DeserializeOwned>(
    subject: &str,
    command_type: &str,
    payload: &[u8],
) -> Result<Parsed<C>, Rejection> {
    check_size(payload)?;
    let request: CommandRequest<serde_json::Value> = from_slice(payload, "")?;
    check_id("command_id", &request.command_id, MAX_ID_LEN)?;
    check_id("actor", &request.actor, MAX_ACTOR_LEN)?;
    for (field, value) in [
        ("correlation_id", &request.correlation_id),
        ("causation_id", &request.causation_id),
    ] {
        if let Some(v) = value {
            check_id(field, v, MAX_ID_LEN)?;
        }
    }
    // serde_json's maps are sorted, so this serialization is canonical for the hash.
    let canonical = serde_json::to_vec(&request.command).unwrap_or_default();
    let command: C = from_value(request.command, "command")?;
    let mut hasher = Sha256::new();
    hasher.update(subject.as_bytes());
    hasher.update(b"\n");
    hasher.update(&canonical);
    let context = CommandContext {
        correlation_id: request
            .correlation_id
            .unwrap_or_else(|| request.command_id.clone()),
        causation_id: request
            .causation_id
            .unwrap_or_else(|| request.command_id.clone()),
        command_id: request.command_id,
        actor: request.actor,
        command_type: command_type.to_owned(),
        request_hash: hex::encode(hasher.finalize()),
    };
    Ok(Parsed { context, command })
}

/// Parses a query request body.
pub fn query<Q: DeserializeOwned>(payload: &[u8]) -> Result<Q, Rejection> {
    check_size(payload)?;
    let payload = if payload.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        payload
    };
    from_slice(payload, "")
}

fn check_size(payload: &[u8]) -> Result<(), Rejection> {
    if payload.len() > MAX_REQUEST_BYTES {
        return Err(bad_request(format!(
            "the request is {} bytes; at most {MAX_REQUEST_BYTES} are accepted",
            payload.len()
        )));
    }
    Ok(())
}

fn check_id(field: &str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        return Err(bad_request(format!("`{field}` must not be empty")).with_field(field));
    }
    if value.len() > max {
        return Err(bad_request(format!(
            "`{field}` is {} bytes long; at most {max} are allowed",
            value.len()
        ))
        .with_field(field));
    }
    if value.chars().any(char::is_control) {
        return Err(
            bad_request(format!("`{field}` must not contain control characters")).with_field(field),
        );
    }
    Ok(())
}

fn from_slice<T: DeserializeOwned>(payload: &[u8], prefix: &str) -> Result<T, Rejection> {
    let de = &mut serde_json::Deserializer::from_slice(payload);
    let value = serde_path_to_error::deserialize(de).map_err(|e| path_error(e, prefix))?;
    Ok(value)
}

fn from_value<T: DeserializeOwned>(value: serde_json::Value, prefix: &str) -> Result<T, Rejection> {
    serde_path_to_error::deserialize(value).map_err(|e| path_error(e, prefix))
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>, prefix: &str) -> Rejection {
    let path = e.path().to_string();
    let field = match (prefix, path.as_str()) {
        (p, ".") => p.to_owned(),
        ("", p) => p.to_owned(),
        (pre, p) => format!("{pre}.{p}"),
    };
    let inner = e.into_inner();
    let message = if inner.is_syntax() || inner.is_eof() {
        format!("the request is not valid JSON: {inner}")
    } else if field.is_empty() {
        inner.to_string()
    } else {
        format!("{field}: {inner}")
    };
    let rejection = bad_request(message);
    if field.is_empty() || inner.is_syntax() || inner.is_eof() {
        rejection
    } else {
        rejection.with_field(field)
    }
}

pub fn bad_request(message: impl Into<String>) -> Rejection {
    Rejection::new(RejectionCode::BadRequest, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_events::policy::CreatePolicy;

    fn parse(raw: &str) -> Result<Parsed<CreatePolicy>, Rejection> {
        command(
            "gatehouse.cmd.policy.create",
            "policy.create",
            raw.as_bytes(),
        )
    }

    const GOOD: &str = r#"{"command_id":"c1","actor":"alice","command":{"policy_id":"p1","name":"P","attributes":{"kind":"string"}}}"#;

    #[test]
    fn a_valid_request_parses_with_defaults_for_correlation_and_causation() {
        let p = parse(GOOD).unwrap();
        assert_eq!(p.context.correlation_id, "c1");
        assert_eq!(p.context.causation_id, "c1");
        assert_eq!(p.command.policy_id, "p1");
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        let r = parse("{\"command_id\": ").err().unwrap();
        assert_eq!(r.code, RejectionCode::BadRequest);
        assert!(r.message.contains("not valid JSON"), "{}", r.message);
    }

    #[test]
    fn an_unknown_field_in_the_command_is_named() {
        let raw = GOOD.replace("\"name\":\"P\"", "\"name\":\"P\",\"colour\":1");
        let r = parse(&raw).err().unwrap();
        assert_eq!(r.field.as_deref(), Some("command.colour"));
        assert!(r.message.contains("colour"), "{}", r.message);
    }

    #[test]
    fn a_missing_command_id_is_named() {
        let r = parse(r#"{"actor":"a","command":{}}"#).err().unwrap();
        assert!(r.message.contains("command_id"), "{}", r.message);
    }

    #[test]
    fn an_empty_actor_is_a_bad_request() {
        let raw = GOOD.replace("\"alice\"", "\"  \"");
        assert_eq!(parse(&raw).err().unwrap().field.as_deref(), Some("actor"));
    }

    #[test]
    fn an_oversized_payload_is_a_bad_request() {
        let raw = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_REQUEST_BYTES));
        assert!(parse(&raw).err().unwrap().message.contains("at most"));
    }

    #[test]
    fn the_request_hash_ignores_key_order_but_not_content() {
        let a = parse(GOOD).unwrap().context.request_hash;
        let reordered = r#"{"command_id":"c1","actor":"alice","command":{"name":"P","policy_id":"p1","attributes":{"kind":"string"}}}"#;
        assert_eq!(parse(reordered).unwrap().context.request_hash, a);
        let changed = GOOD.replace("\"P\"", "\"Q\"");
        assert_ne!(parse(&changed).unwrap().context.request_hash, a);
    }
}
