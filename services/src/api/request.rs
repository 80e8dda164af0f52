//! Turning raw request bytes into typed commands and queries, or a `bad_request` naming the
//! field at fault. Nothing is executed for a request that fails here.

use gatehouse_events::envelope::{
    CommandRequest, Rejection, RejectionCode, WaitFor, MAX_ACTOR_LEN, MAX_ID_LEN,
    MAX_REQUEST_BYTES, MAX_REQUEST_DEPTH, MAX_WAIT_MS, WAIT_FOR_FIELD,
};
use gatehouse_events::subjects;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::Identity;
use crate::store::CommandContext;

/// A command request that passed the envelope checks.
pub struct Parsed<C> {
    pub context: CommandContext,
    pub command: C,
}

/// The tag of the current request hash: SHA-256 over the tag, the command type and the
/// canonical command JSON. Stored hashes without it are legacy ones, over the NATS subject.
pub const REQUEST_HASH_V2: &str = "v2:";

/// Parses a command request for `command_type` (e.g. `policy.draft`) in `namespace`, sent by
/// `caller`: the envelope's `actor` must be the caller unless the caller may delegate.
pub fn command<C: DeserializeOwned>(
    namespace: &str,
    command_type: &str,
    caller: &Identity,
    payload: &[u8],
) -> Result<Parsed<C>, Rejection> {
    check_size(payload)?;
    let request: CommandRequest<serde_json::Value> = from_slice(payload, "")?;
    check_id("command_id", &request.command_id, MAX_ID_LEN)?;
    check_id("actor", &request.actor, MAX_ACTOR_LEN)?;
    let actor = caller.actor(&request.actor)?;
    for (field, value) in [
        ("correlation_id", &request.correlation_id),
        ("causation_id", &request.causation_id),
    ] {
        if let Some(v) = value {
            check_id(field, v, MAX_ID_LEN)?;
        }
    }
    check_no_nul(&request.command, "command")?;
    // serde_json's maps are sorted, so this serialization is canonical for the hash.
    let canonical = serde_json::to_vec(&request.command).unwrap_or_default();
    let command: C = from_value(request.command, "command")?;
    let context = CommandContext {
        correlation_id: request
            .correlation_id
            .unwrap_or_else(|| request.command_id.clone()),
        causation_id: request
            .causation_id
            .unwrap_or_else(|| request.command_id.clone()),
        command_id: request.command_id,
        actor: actor.actor,
        delegated_by: actor.delegated_by,
        command_type: command_type.to_owned(),
        request_hash: request_hash(command_type, &canonical),
        legacy_request_hash: legacy_request_hash(namespace, command_type, &canonical),
    };
    Ok(Parsed { context, command })
}

/// The `actor` a command envelope names, read leniently (the full checks come later): whose
/// roles count when a delegate sends it.
pub fn claimed_actor(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        actor: Option<String>,
    }
    serde_json::from_slice::<Envelope>(payload).ok()?.actor
}

/// The context of a command Gatehouse sends itself (actor `gatehouse`), without a round trip
/// over NATS: `command_id` makes it idempotent like any client's.
pub fn internal<C: serde::Serialize>(
    namespace: &str,
    command_type: &str,
    command_id: &str,
    command: &C,
) -> CommandContext {
    let canonical = serde_json::to_value(command)
        .and_then(|v| serde_json::to_vec(&v))
        .unwrap_or_default();
    CommandContext {
        command_id: command_id.to_owned(),
        actor: INTERNAL_ACTOR.to_owned(),
        delegated_by: None,
        correlation_id: command_id.to_owned(),
        causation_id: command_id.to_owned(),
        command_type: command_type.to_owned(),
        request_hash: request_hash(command_type, &canonical),
        legacy_request_hash: legacy_request_hash(namespace, command_type, &canonical),
    }
}

/// The actor of the commands Gatehouse sends itself.
pub const INTERNAL_ACTOR: &str = "gatehouse";

/// `v2:` + SHA-256 of the tag, the command type and the canonical command: the same request
/// hashes alike whichever route (NATS subject, HTTP path) it came by.
fn request_hash(command_type: &str, canonical: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(REQUEST_HASH_V2.as_bytes());
    hasher.update(command_type.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical);
    format!("{REQUEST_HASH_V2}{}", hex::encode(hasher.finalize()))
}

/// The hash stored before [`REQUEST_HASH_V2`]: SHA-256 of the NATS subject (rebuilt from the
/// namespace and the command type), a newline and the canonical command. Compared only with
/// stored rows that lack the tag.
fn legacy_request_hash(namespace: &str, command_type: &str, canonical: &[u8]) -> String {
    let (aggregate, name) = command_type.split_once('.').unwrap_or((command_type, ""));
    let mut hasher = Sha256::new();
    hasher.update(subjects::command(namespace, aggregate, name).as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical);
    hex::encode(hasher.finalize())
}

/// Postgres text and jsonb cannot hold U+0000: a string (or key) holding it is the sender's
/// error, named by its path (`command.rules.rules[2].reason`), never a database failure.
pub fn check_no_nul(value: &serde_json::Value, path: &str) -> Result<(), Rejection> {
    let nul = |path: &str| {
        Err(bad_request(format!(
            "{path}: must not contain the NUL character (U+0000)"
        ))
        .with_field(path))
    };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => nul(path),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_no_nul(v, &format!("{path}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().try_for_each(|(k, v)| {
            let path = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                return nul(&path);
            }
            check_no_nul(v, &path)
        }),
        _ => Ok(()),
    }
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

/// Takes a query's `wait_for` out of its body (checked, with a NUL anywhere refused): the
/// rest is the query itself, parsed by [`query`].
pub fn split_wait(payload: &[u8]) -> Result<(Vec<u8>, Option<WaitFor>), Rejection> {
    check_size(payload)?;
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok((b"{}".to_vec(), None));
    }
    let mut value: serde_json::Value = from_slice(payload, "")?;
    check_no_nul(&value, "")?;
    let wait = match value.as_object_mut().and_then(|o| o.remove(WAIT_FOR_FIELD)) {
        Some(w) => Some(from_value::<WaitFor>(w, WAIT_FOR_FIELD)?),
        None => None,
    };
    if let Some(timeout) = wait.as_ref().and_then(|w| w.timeout_ms) {
        if timeout > MAX_WAIT_MS {
            return Err(bad_request(format!(
                "wait_for.timeout_ms is {timeout}; at most {MAX_WAIT_MS} is allowed"
            ))
            .with_field("wait_for.timeout_ms"));
        }
    }
    let rest = serde_json::to_vec(&value).map_err(|e| bad_request(e.to_string()))?;
    Ok((rest, wait))
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
    // serde names a missing field only in its message; the path ends at the enclosing object.
    let field = match missing_field(&inner) {
        Some(missing) if field.is_empty() => missing,
        Some(missing) => format!("{field}.{missing}"),
        None => field,
    };
    let message = if inner.to_string().starts_with("recursion limit exceeded") {
        format!("the request nests deeper than {MAX_REQUEST_DEPTH} levels of objects and arrays")
    } else if inner.is_syntax() || inner.is_eof() {
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

/// The name in serde's "missing field `x`" error.
fn missing_field(e: &serde_json::Error) -> Option<String> {
    let text = e.to_string();
    let rest = text.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_owned())
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
            "gatehouse",
            "policy.create",
            &Identity::Internal,
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
    fn a_request_nested_deeper_than_the_limit_is_a_bad_request_naming_the_limit() {
        let deep = |levels: usize| {
            let value = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
            GOOD.replace("\"name\":\"P\"", &format!("\"name\":\"P\",\"x\":{value}"))
        };
        let r = parse(&deep(MAX_REQUEST_DEPTH + 10)).err().unwrap();
        assert_eq!(r.code, RejectionCode::BadRequest);
        assert!(
            r.message.contains("nests deeper than 128 levels"),
            "{}",
            r.message
        );
        // Within the limit the request reads; the unknown field is what is refused.
        let r = parse(&deep(MAX_REQUEST_DEPTH - 10)).err().unwrap();
        assert_eq!(r.field.as_deref(), Some("command.x"), "{}", r.message);
    }

    #[test]
    fn the_actor_is_the_callers_and_a_delegates_request_records_both() {
        let user = |name: &str, delegate| {
            Identity::User(super::super::identity::User {
                user: name.into(),
                account: "CLIENTS".into(),
                delegate,
            })
        };
        let create = |caller: &Identity| {
            command::<CreatePolicy>("gatehouse", "policy.create", caller, GOOD.as_bytes())
        };
        let alice = create(&user("alice", false)).ok().unwrap().context;
        assert_eq!((alice.actor.as_str(), alice.delegated_by), ("alice", None));
        let bob = create(&user("bob", false)).err().unwrap();
        assert_eq!(bob.code, RejectionCode::ActorMismatch);
        let console = create(&user("console", true)).ok().unwrap().context;
        assert_eq!(console.actor, "alice");
        assert_eq!(console.delegated_by.as_deref(), Some("console"));
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
        assert_eq!(r.field.as_deref(), Some("command_id"));
    }

    #[test]
    fn a_missing_command_is_named() {
        let r = parse(r#"{"command_id":"c1","actor":"a"}"#).err().unwrap();
        assert_eq!(r.field.as_deref(), Some("command"));
    }

    #[test]
    fn a_missing_field_inside_the_command_is_named_with_its_path() {
        let raw = GOOD.replace("\"name\":\"P\",", "");
        let r = parse(&raw).err().unwrap();
        assert_eq!(r.code, RejectionCode::BadRequest);
        assert_eq!(r.field.as_deref(), Some("command.name"), "{}", r.message);
    }

    #[test]
    fn a_nul_character_in_a_command_string_is_a_bad_request_naming_it() {
        let raw = GOOD.replace("\"P\"", "\"P\\u0000\"");
        let r = parse(&raw).err().unwrap();
        assert_eq!(r.code, RejectionCode::BadRequest);
        assert_eq!(r.field.as_deref(), Some("command.name"), "{}", r.message);
    }

    #[test]
    fn a_nul_character_deep_in_a_command_is_named_by_its_path() {
        let raw = r#"{"command_id":"c1","actor":"a","command":{"policy_id":"p1","notes":"n",
            "rules":{"rules":[{"id":"a","condition":"true","decision":"allow","reason":"ok"},
                              {"id":"b","condition":"true","decision":"deny","reason":"no\u0000"}],
                     "default_decision":"allow","score":"1.0"}}}"#;
        let r = command::<gatehouse_events::policy::DraftVersion>(
            "gatehouse",
            "policy.draft",
            &Identity::Internal,
            raw.as_bytes(),
        )
        .err()
        .unwrap();
        assert_eq!(
            r.field.as_deref(),
            Some("command.rules.rules[1].reason"),
            "{}",
            r.message
        );
    }

    #[test]
    fn the_request_hash_does_not_depend_on_the_namespace() {
        let hash = |namespace: &str| {
            command::<CreatePolicy>(
                namespace,
                "policy.create",
                &Identity::Internal,
                GOOD.as_bytes(),
            )
            .unwrap()
            .context
            .request_hash
        };
        assert_eq!(hash("a"), hash("b"));
        assert!(hash("a").starts_with(REQUEST_HASH_V2));
    }

    #[test]
    fn the_request_hash_covers_the_command_type() {
        let hash = |command_type: &str| {
            command::<CreatePolicy>(
                "gatehouse",
                command_type,
                &Identity::Internal,
                GOOD.as_bytes(),
            )
            .unwrap()
            .context
            .request_hash
        };
        assert_ne!(hash("policy.create"), hash("other.create"));
    }

    #[test]
    fn the_legacy_hash_is_over_the_subject_as_before() {
        let context = parse(GOOD).unwrap().context;
        let body = serde_json::json!({"policy_id":"p1","name":"P","attributes":{"kind":"string"}});
        let mut hasher = Sha256::new();
        hasher.update(b"gatehouse.cmd.policy.create\n");
        hasher.update(serde_json::to_vec(&body).unwrap());
        assert_eq!(context.legacy_request_hash, hex::encode(hasher.finalize()));
    }

    #[test]
    fn a_query_wait_for_is_taken_out_of_the_query() {
        let raw = br#"{"policy_id":"p","wait_for":{"aggregate":"policy","aggregate_id":"p","sequence":4}}"#;
        let (rest, wait) = split_wait(raw).unwrap();
        assert_eq!(wait.unwrap().sequence, 4);
        let q: gatehouse_events::policy::GetPolicy = query(&rest).unwrap();
        assert_eq!(q.policy_id, "p");
    }

    #[test]
    fn a_nul_character_in_a_query_is_a_bad_request_naming_it() {
        let r = split_wait(br#"{"policy_id":"p\u0000"}"#).err().unwrap();
        assert_eq!(r.field.as_deref(), Some("policy_id"));
    }

    #[test]
    fn a_wait_longer_than_the_maximum_is_a_bad_request() {
        let raw = br#"{"wait_for":{"aggregate":"policy","aggregate_id":"p","sequence":1,"timeout_ms":999999}}"#;
        let r = split_wait(raw).err().unwrap();
        assert_eq!(r.field.as_deref(), Some("wait_for.timeout_ms"));
    }
}
