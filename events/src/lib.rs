//! The Gatehouse protocol: everything a client or service needs to talk to Gatehouse.
//!
//! It depends on serde (and chrono for times) only, no NATS, SQL or runtime, so any Rust
//! service can use it. Every JSON shape and subject here is a public contract, pinned by tests.
//!
//! Layout:
//! - [`access`]: the `access` aggregate: roles granted and revoked.
//! - [`subjects`]: every subject, stream and consumer name.
//! - [`envelope`]: command requests, replies, rejections and their codes.
//! - [`rules`]: the rules document of a policy version and the attribute schema.
//! - [`policy`]: the `policy` aggregate's commands, events, queries and views.
//! - [`audit`]: audit-log and replay queries.
//! - [`catalog`]: catalog changes, items and the public catalog.
//! - [`run`]: evaluation runs (Prepare, status, diff, Promote) and `policy.promoted`.
//! - [`repo`]: repos bound to a policy (`repo.bind`), and evaluation timeouts.
//! - [`decision`]: publish/promote decisions (`decision.evaluate`, `decision.list`).
//! - [`quarantine`]: quarantine cases (`release`, `reject`, `list`, `get`).
//! - [`artifact`]: the `artifact` aggregate (decisions and the case of one item in one repo)
//!   and `artifact.can_read`.
//! - [`flag`]: flags, rollouts, emergency stop and safe mode (the `flag` and `global` aggregates).
//! - [`record`]: one stored event as published and replayed.
//! - [`metadata`]: the metadata keys stored with every event.
pub mod access;
pub mod artifact;
pub mod audit;
pub mod catalog;
pub mod category;
pub mod decision;
pub mod envelope;
pub mod flag;
pub mod metadata;
pub mod policy;
pub mod quarantine;
pub mod record;
pub mod repo;
pub mod rules;
pub mod run;
pub mod subjects;
