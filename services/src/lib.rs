//! Gatehouse's command side and the `gatehouse` binary's roles.
//!
//! Every role is `run(settings, shutdown)`: tests start roles in-process, `gatehouse up` runs
//! them all in one process, and `gatehouse gateway|relay|projector` run one each for scale-out.
//!
//! Layout:
//! - [`settings`]: typed settings from the environment.
//! - [`db`], [`broker`]: Postgres pools and migrations; NATS connections and streams.
//! - [`store`]: the event store executor (conflict retries, durable command dedupe).
//! - [`policy`]: the `policy` aggregate.
//! - [`gateway`]: commands and queries over the NATS services API.
//! - [`relay`]: the transactional outbox relay onto JetStream.
//! - [`notifier`]: `policy.promoted` announcements for external subscribers.
//! - [`worker`]: evaluation workers (batch jobs of Prepare runs, live evaluation of changes).
//! - [`audit`]: audit-log and replay queries.
//! - [`roles`]: `up` and the projector role.
//! - [`client`]: a typed NATS client for Gatehouse (the CLI and tests use it).
//! - [`cli`]: the `gatehouse` command line.
pub mod audit;
pub mod broker;
pub mod cli;
pub mod client;
pub mod db;
pub mod gateway;
pub mod notifier;
pub mod policy;
pub mod relay;
pub mod roles;
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
    #[error("broker: {0}")]
    Broker(String),
    #[error("projector: {0}")]
    Projection(String),
}
