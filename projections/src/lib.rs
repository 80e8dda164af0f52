//! Gatehouse's read side: projectors that feed read models in Postgres from the JetStream events
//! stream, and rebuilds of those read models from the event store.
//!
//! Every read model has a projector: a durable pull consumer `<ns>_<model>` on `<NS>_EVENTS`
//! whose batches commit together with the model's row in `projector_checkpoints`; what it cannot
//! apply goes to `<NS>_DLQ` on `<ns>.dlq.<consumer>`. The tables come from `migrations/`.
//!
//! Layout:
//! - [`model`]: the [`ReadModel`] trait, [`Tables`], [`ApplyError`].
//! - [`runtime`]: [`run`], one model's projector role.
//! - [`settings`]: [`ProjectorSettings`] and the test hooks.
//! - [`rebuild`](mod@rebuild): [`rebuild()`] a model from `events` into shadow tables, then swap.
//! - [`audit`]: the `audit` read model (`audit_log`).
//! - [`policy`]: the `policies` read model (`policies`, `policy_versions`, and `runs` through
//!   `run`): the policy and run contexts.
//! - [`quarantine`]: the `quarantine` read model (`repos`, `artifacts`, `decisions`,
//!   `quarantine_cases`): the repo, decision and quarantine contexts.
//! - [`catalog`]: the catalog projector (`catalog_items`, `catalog_rejections`), fed from the
//!   catalog stream `<NS>_CATALOG` rather than the events stream.
//! - [`consumer`]: the consumer runtime every consumer loop shares (outcomes, retries without a
//!   budget, heartbeats, panics, [`consumer::Health`]).
//! - [`dead_letter`]: the dead-letter stream and the headers of a dead letter.
//! - `batch`, `fallback`, `delivery`, `checkpoint`: one batch through a projector, each message
//!   on its own when the batch fails, one delivered message, and the checkpoint.

pub mod audit;
mod batch;
pub mod catalog;
mod checkpoint;
pub mod consumer;
pub mod dead_letter;
mod delivery;
pub mod error;
mod fallback;
pub mod flag;
pub mod json_text;
pub mod model;
pub mod policy;
pub mod quarantine;
pub mod rebuild;
mod run;
pub mod runtime;
pub mod settings;

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream;
use deadpool_postgres::Pool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use audit::AuditLog;
pub use catalog::CatalogSettings;
pub use error::ProjectorError;
pub use model::{ApplyError, Interest, ReadModel, Tables};
pub use policy::Policies;
pub use quarantine::Quarantine;
pub use rebuild::{rebuild, RebuildReport};
pub use runtime::run;
pub use settings::ProjectorSettings;
#[doc(hidden)]
pub use settings::{Hook, Hooks};

/// Every read model, in a stable order.
pub fn read_models() -> Vec<Arc<dyn ReadModel>> {
    vec![
        Arc::new(AuditLog),
        Arc::new(Policies),
        Arc::new(Quarantine),
        Arc::new(flag::Flags),
    ]
}

/// The read model called `name` (`audit`, `policies`, `quarantine`).
pub fn read_model(name: &str) -> Option<Arc<dyn ReadModel>> {
    read_models().into_iter().find(|model| model.name() == name)
}

/// A projector `gatehouse projector --model <name>` can run: a read model's, or the catalog's.
#[derive(Clone)]
pub enum Projector {
    /// A read model fed from the events stream.
    ReadModel(Arc<dyn ReadModel>),
    /// The catalog projector, fed from the catalog stream.
    Catalog,
}

impl Projector {
    /// Runs it until `shutdown` (the catalog's with [`CatalogSettings::new`]`(settings)`).
    pub async fn run(
        self,
        settings: ProjectorSettings,
        pool: Pool,
        js: jetstream::Context,
        shutdown: CancellationToken,
    ) -> Result<(), ProjectorError> {
        match self {
            Projector::ReadModel(model) => run(model, settings, pool, js, shutdown).await,
            Projector::Catalog => {
                catalog::run(CatalogSettings::new(settings), pool, js, shutdown).await
            }
        }
    }
}

/// Every projector's name: the read models', then `catalog`.
pub fn projector_names() -> Vec<&'static str> {
    let mut names: Vec<_> = read_models().iter().map(|m| m.name()).collect();
    names.push(catalog::NAME);
    names
}

/// The projector called `name` (`audit`, `policies`, `catalog`).
pub fn projector(name: &str) -> Option<Projector> {
    if name == catalog::NAME {
        return Some(Projector::Catalog);
    }
    read_model(name).map(Projector::ReadModel)
}

/// Runs every projector (each read model's and the catalog's) until `shutdown`. The first one
/// to stop stops the others; its error (or `Ok` on shutdown) is returned once all have stopped.
pub async fn run_all(
    settings: ProjectorSettings,
    pool: Pool,
    js: jetstream::Context,
    shutdown: CancellationToken,
) -> Result<(), ProjectorError> {
    let stop = shutdown.child_token();
    let mut projectors = JoinSet::new();
    let mut names = HashMap::new();
    for model in read_models() {
        let name = model.name();
        let task = projectors.spawn(run(
            model,
            settings.clone(),
            pool.clone(),
            js.clone(),
            stop.clone(),
        ));
        names.insert(task.id(), name);
    }
    let catalog = CatalogSettings::new(settings);
    let task = projectors.spawn(catalog::run(catalog, pool, js, stop.clone()));
    names.insert(task.id(), catalog::NAME);
    let mut first: Option<Result<(), ProjectorError>> = None;
    while let Some(joined) = projectors.join_next_with_id().await {
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            Err(e) => (
                e.id(),
                Err(ProjectorError::Task {
                    model: "",
                    source: e,
                }),
            ),
        };
        let model = names.get(&id).copied().unwrap_or_default();
        let result = result.map_err(|e| match e {
            ProjectorError::Task { source, .. } => ProjectorError::Task { model, source },
            e => e,
        });
        if let Err(e) = &result {
            tracing::error!(error.message = %e, error.cause_chain = ?e, projector = model,
                "projector failed");
        }
        if first.is_none() {
            tracing::info!(
                projector = model,
                "first projector stopped; stopping the others"
            );
            stop.cancel();
            first = Some(result);
        }
    }
    first.unwrap_or(Ok(()))
}
