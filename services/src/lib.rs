//! Gatehouse's command side and the `gatehouse` binary's roles.
//!
//! Every role is `run(settings, shutdown)`: tests start roles in-process, `gatehouse up` runs
//! them all in one process, and `gatehouse gateway|relay|projector` run one each for scale-out.
//!
//! Layout — the contexts, each the same name in every layer (the protocol in
//! `gatehouse_events`, the read models in `gatehouse_projections`, the CLI in [`cli`]):
//! - [`policy`]: versioned policies (the `policy` aggregate, its commands and queries).
//! - [`run`]: evaluation runs (the run half of the policy aggregate, Prepare, Promote, diffs).
//! - [`catalog`]: the host's items and each policy's public catalog.
//! - [`audit`]: the audit log and replays from the event store.
//! - [`repo`]: repos bound to a policy (the `repo` aggregate).
//! - [`decision`]: publish/promote decisions, within a budget, failing closed.
//! - [`quarantine`]: quarantine cases: release, reject, auto-release ([`quarantine::releaser`]).
//! - [`artifact`]: the `artifact` aggregate (one item in one repo) and `artifact.can_read`.
//! - [`flag`]: flags, progressive rollouts, emergency stop and safe mode.
//!
//! And what serves them:
//! - [`api`]: the operations every context declares, and what they share (parsing, waits).
//! - [`gateway`]: the NATS adapter over [`api`] (services API, queue group).
//! - [`store`]: the event store executor (kept aggregates, conflict retries, durable dedupe).
//! - [`relay`]: the transactional outbox relay onto JetStream.
//! - [`worker`]: evaluation workers (batch jobs of Prepare runs, live evaluation of changes).
//! - [`notifier`]: `policy.promoted` announcements for external subscribers.
//! - [`roles`]: `up` and the projector role; [`settings`], [`db`], [`broker`]: set-up.
//! - [`client`]: a typed NATS client for Gatehouse (the CLI and tests use it).
//! - [`cli`]: the `gatehouse` command line.
//! - [`ops`]: metrics, readiness and `gatehouse doctor`.
pub mod access;
pub mod api;
pub mod artifact;
pub mod audit;
pub mod broker;
pub mod catalog;
pub mod category;
pub mod cli;
pub mod client;
pub mod db;
pub mod decision;
pub mod flag;
pub mod gateway;
pub mod http;
pub mod notifier;
pub mod ops;
pub mod policy;
pub mod quarantine;
pub mod relay;
pub mod repo;
pub mod roles;
pub mod run;
pub mod settings;
pub mod store;
pub mod worker;

/// Why a role stopped.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("cannot open the event store pool")]
    EventStore(#[from] sqlx::Error),
    #[error(transparent)]
    BrokerSetup(#[from] broker::BrokerError),
    /// A NATS call while setting up failed: what it was doing, and why.
    #[error("broker: cannot {doing}")]
    Broker {
        doing: String,
        #[source]
        source: store::Cause,
    },
    /// A task of the role panicked; the panic's message.
    #[error("{task} panicked: {message}")]
    Panicked { task: &'static str, message: String },
    #[error("unknown projector `{name}` (known: {known})")]
    UnknownProjector { name: String, known: String },
    #[error(transparent)]
    Projection(#[from] gatehouse_projections::error::ProjectorError),
    /// The HTTP adapter cannot listen or serve.
    #[error("http: cannot {action}")]
    Http {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

impl RoleError {
    /// For `map_err`: a failed NATS call while `doing` something.
    pub fn broker<E: Into<store::Cause>>(doing: impl Into<String>) -> impl FnOnce(E) -> RoleError {
        let doing = doing.into();
        move |source| RoleError::Broker {
            doing,
            source: source.into(),
        }
    }
}
