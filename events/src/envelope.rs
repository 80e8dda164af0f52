//! The request and reply envelopes shared by every command and query.
//!
//! A command request is `{"command_id", "actor", "correlation_id"?, "causation_id"?, "command"}`;
//! every reply is `{"ok": true, "result": ...}` or `{"ok": false, "error": {"code", "message", ...}}`.

use serde::{Deserialize, Serialize};

/// The largest request payload the gateway accepts, in bytes (larger requests: `bad_request`).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// The deepest nesting of objects and arrays a request may have (deeper: `bad_request`). It is
/// serde_json's own recursion limit, so no request the gateway accepts is one it cannot read.
pub const MAX_REQUEST_DEPTH: usize = 128;

/// The longest command, correlation or causation id accepted.
pub const MAX_ID_LEN: usize = 128;

/// The longest actor name accepted.
pub const MAX_ACTOR_LEN: usize = 128;

/// A command as sent by a client: who, which idempotency key, and the command body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandRequest<C> {
    /// Client-chosen idempotency key: a retry with the same id returns the original reply.
    pub command_id: String,
    /// Who asks (a user or service name), recorded on every event the command produces.
    pub actor: String,
    /// Groups the commands of one business flow; defaults to `command_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The message that caused this command; defaults to `command_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    pub command: C,
}

/// Every reply: `ok` tells which of `result` and `error` is present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Reply<T> {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Rejection>,
}

impl<T> Reply<T> {
    pub fn success(result: T) -> Self {
        Reply {
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn rejected(error: Rejection) -> Self {
        Reply {
            ok: false,
            result: None,
            error: Some(error),
        }
    }

    /// The result, or the rejection.
    pub fn into_result(self) -> Result<T, Rejection> {
        match (self.ok, self.result, self.error) {
            (true, Some(r), _) => Ok(r),
            (_, _, Some(e)) => Err(e),
            _ => Err(Rejection::new(
                RejectionCode::Internal,
                "reply has neither result nor error",
            )),
        }
    }
}

/// What a successful command reply carries: enough to wait for read models to catch up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CommandAccepted {
    pub command_id: String,
    /// The aggregate type, e.g. `policy`.
    pub aggregate: String,
    pub aggregate_id: String,
    /// The aggregate's sequence after the command (its last event's sequence).
    pub sequence: u64,
    /// The events the command recorded, in order.
    pub events: Vec<RecordedEvent>,
    /// True when this is the stored outcome of an earlier request with the same `command_id`.
    pub duplicate: bool,
    /// Command-specific facts, e.g. `{"version": 3}` for a drafted policy version.
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// Read-your-writes: any query may carry `"wait_for"` naming the aggregate sequence a command
/// reply returned. The gateway answers once the read model the query reads reflects that
/// sequence, waiting at most `timeout_ms` (default [`DEFAULT_WAIT_MS`], at most
/// [`MAX_WAIT_MS`]); still behind then, it answers `not_caught_up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct WaitFor {
    /// The aggregate type, e.g. `policy`.
    pub aggregate: String,
    pub aggregate_id: String,
    /// The aggregate's sequence to wait for (a command reply's `sequence`).
    pub sequence: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// The request field of a query that holds its [`WaitFor`].
pub const WAIT_FOR_FIELD: &str = "wait_for";
/// How long a query waits for its `wait_for` unless it says otherwise, in milliseconds.
pub const DEFAULT_WAIT_MS: u64 = 5_000;
/// The longest `wait_for.timeout_ms` accepted.
pub const MAX_WAIT_MS: u64 = 30_000;

impl WaitFor {
    /// Waits for the effect of the command that `done` answers, with the default timeout.
    pub fn after(done: &CommandAccepted) -> Self {
        WaitFor {
            aggregate: done.aggregate.clone(),
            aggregate_id: done.aggregate_id.clone(),
            sequence: done.sequence,
            timeout_ms: None,
        }
    }
}

/// One event recorded by a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RecordedEvent {
    pub sequence: u64,
    pub event_type: String,
}

/// A rejection: a stable machine-readable `code` and a human `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Rejection {
    pub code: RejectionCode,
    pub message: String,
    /// The request field at fault, as a path (`command.rules[2].condition`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Further machine-readable details (e.g. every rule validation error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<serde_json::Value>,
}

impl Rejection {
    pub fn new(code: RejectionCode, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
            field: None,
            details: Vec::new(),
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_details(mut self, details: Vec<serde_json::Value>) -> Self {
        self.details = details;
        self
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Rejection {}

/// Every rejection code. The strings are a public contract: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    /// Malformed JSON, unknown/missing/oversized fields, payload over the size limit.
    BadRequest,
    /// The same `command_id` was used before with a different request.
    IdempotencyConflict,
    /// Concurrent writers kept colliding; retry with the same `command_id`.
    Conflict,
    /// The addressed aggregate or record does not exist.
    NotFound,
    /// The aggregate to create exists already.
    AlreadyExists,
    /// The rules document failed validation; `details` lists every problem.
    InvalidRules,
    /// The named policy version does not exist.
    VersionNotFound,
    /// The command would record nothing new (e.g. restoring the latest version's rules).
    Unchanged,
    /// The command is not allowed in the aggregate's current state.
    InvalidState,
    /// Another run of the policy is running; `field` is `run_id` and the message names it.
    AlreadyRunning,
    /// Promote refused: `details` lists every blocking reason with its numbers.
    NotReady,
    /// A query's `wait_for` was not reached in time: the read model is behind; retry.
    NotCaughtUp,
    /// The service cannot serve the request right now (database or broker down); retry.
    Unavailable,
    /// An unexpected server error; the details are in the server's log.
    Internal,
    /// The envelope's `actor` is not the authenticated user, who is no delegate.
    ActorMismatch,
    /// The request names no authenticated user (a client account imports Gatehouse's
    /// subjects without `share: true`).
    Unauthenticated,
    /// The caller lacks the role the operation needs; the message names it. Nothing reaches an
    /// aggregate; the denial is recorded (`audit.denials`).
    Forbidden,
    /// Promote refused by four-eyes: the promoter authored the run's version and the policy
    /// requires a second approver; the message names both.
    ApprovalRequired,
    /// A decision could not be made and fails closed (never `allow`): the repo is bound to no
    /// policy, the policy has no active version, the item does not fit the schema, or a rule
    /// failed on it. Nothing is recorded.
    PolicyUnavailable,
    /// The evaluation ran past the repo's budget and fails closed: `details` is
    /// `[{"fail_closed": true, "budget_ms", "repo", "item_id", "action"}]`. Only the
    /// `PolicyTimedOut` audit record is written.
    PolicyTimeout,
    /// A read of an artifact whose quarantine case is `quarantined` or `rejected`: `details`
    /// names the repo, the item and the case's status (HTTP: 423 Locked).
    QuarantinedBlob,
}

impl RejectionCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionCode::BadRequest => "bad_request",
            RejectionCode::IdempotencyConflict => "idempotency_conflict",
            RejectionCode::Conflict => "conflict",
            RejectionCode::NotFound => "not_found",
            RejectionCode::AlreadyExists => "already_exists",
            RejectionCode::InvalidRules => "invalid_rules",
            RejectionCode::VersionNotFound => "version_not_found",
            RejectionCode::Unchanged => "unchanged",
            RejectionCode::InvalidState => "invalid_state",
            RejectionCode::AlreadyRunning => "already_running",
            RejectionCode::NotReady => "not_ready",
            RejectionCode::NotCaughtUp => "not_caught_up",
            RejectionCode::Unavailable => "unavailable",
            RejectionCode::Internal => "internal",
            RejectionCode::ActorMismatch => "actor_mismatch",
            RejectionCode::Unauthenticated => "unauthenticated",
            RejectionCode::Forbidden => "forbidden",
            RejectionCode::ApprovalRequired => "approval_required",
            RejectionCode::PolicyUnavailable => "policy_unavailable",
            RejectionCode::PolicyTimeout => "policy_timeout",
            RejectionCode::QuarantinedBlob => "quarantined_blob",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rejection_reply_has_a_stable_shape() {
        let reply: Reply<()> = Reply::rejected(
            Rejection::new(RejectionCode::BadRequest, "missing field `actor`").with_field("actor"),
        );
        assert_eq!(
            serde_json::to_value(&reply).unwrap(),
            json!({"ok": false, "error": {"code": "bad_request", "message": "missing field `actor`", "field": "actor"}})
        );
    }

    #[test]
    fn wait_for_has_a_stable_shape() {
        let wait = WaitFor {
            aggregate: "policy".into(),
            aggregate_id: "media".into(),
            sequence: 3,
            timeout_ms: Some(1000),
        };
        assert_eq!(
            serde_json::to_value(&wait).unwrap(),
            json!({"aggregate": "policy", "aggregate_id": "media", "sequence": 3, "timeout_ms": 1000})
        );
    }

    #[test]
    fn a_command_request_rejects_unknown_fields() {
        let raw = json!({"command_id": "c1", "actor": "a", "command": {}, "extra": 1});
        assert!(serde_json::from_value::<CommandRequest<serde_json::Value>>(raw).is_err());
    }

    #[test]
    fn rejection_codes_serialize_as_their_names() {
        for code in [
            RejectionCode::IdempotencyConflict,
            RejectionCode::InvalidRules,
            RejectionCode::Conflict,
            RejectionCode::Forbidden,
            RejectionCode::ApprovalRequired,
            RejectionCode::PolicyUnavailable,
            RejectionCode::PolicyTimeout,
            RejectionCode::QuarantinedBlob,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
    }
}
