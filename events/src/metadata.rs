//! The metadata stored with every event (all values are strings), and the NATS headers the
//! relay puts on every published event.

/// Who issued the command: the authenticated user, or the person a delegate acted for.
pub const ACTOR: &str = "actor";
/// The delegate (e.g. the HTTP adapter's NATS user) that sent the command for `actor`; absent
/// when the actor sent it itself.
pub const DELEGATED_BY: &str = "delegated_by";
/// The client-supplied idempotency key of the command that recorded the event.
pub const COMMAND_ID: &str = "command_id";
/// The business flow the command belongs to.
pub const CORRELATION_ID: &str = "correlation_id";
/// The message that caused the command.
pub const CAUSATION_ID: &str = "causation_id";
/// The command's name, e.g. `policy.draft`.
pub const COMMAND_TYPE: &str = "command_type";
/// SHA-256 of the command's subject and canonical body, to tell retries from id reuse.
pub const REQUEST_HASH: &str = "request_hash";

/// Header: the event's global position in the event store.
pub const HEADER_POSITION: &str = "Gatehouse-Position";
/// Header: the aggregate type.
pub const HEADER_AGGREGATE: &str = "Gatehouse-Aggregate";
/// Header: the aggregate id.
pub const HEADER_AGGREGATE_ID: &str = "Gatehouse-Aggregate-Id";
/// Header: the event's sequence within its aggregate.
pub const HEADER_SEQUENCE: &str = "Gatehouse-Sequence";
/// Header: the stored event type.
pub const HEADER_EVENT_TYPE: &str = "Gatehouse-Event-Type";
/// Header: the stored event version.
pub const HEADER_EVENT_VERSION: &str = "Gatehouse-Event-Version";
/// Header: when the event was recorded (RFC 3339).
pub const HEADER_RECORDED_AT: &str = "Gatehouse-Recorded-At";
/// Header (dead letters): why the message was parked.
pub const HEADER_DLQ_REASON: &str = "Gatehouse-Dead-Letter-Reason";
