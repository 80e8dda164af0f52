//! Running roles: `up` (everything in one process) and the projector role.
//!
//! When several roles share a process, the first one to stop is logged and stops the rest.

use gatehouse_projections::ProjectorSettings;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
use crate::{broker, db, gateway, notifier, relay, worker, RoleError};

/// Runs migrations, then the gateway, the relay, every projector, a worker, the notifier, the
/// releaser and the search indexer until `shutdown`.
pub async fn up(settings: Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    db::migrate(&settings.database_url).await?;
    let mut roles = JoinSet::new();
    let stop = shutdown.child_token();
    roles.spawn(named(
        "gateway",
        gateway::run(settings.clone(), stop.clone()),
    ));
    roles.spawn(named("relay", relay::run(settings.clone(), stop.clone())));
    roles.spawn(named("worker", worker::run(settings.clone(), stop.clone())));
    roles.spawn(named(
        "notifier",
        notifier::run(settings.clone(), stop.clone()),
    ));
    roles.spawn(named(
        "releaser",
        crate::quarantine::releaser::run(settings.clone(), stop.clone()),
    ));
    roles.spawn(named(
        "flag-monitor",
        crate::flag::monitor::run(settings.clone(), stop.clone()),
    ));
    roles.spawn(named(
        "http",
        crate::http::run(settings.clone(), stop.clone()),
    ));
    roles.spawn(named(
        "indexer",
        crate::catalog::indexer::run(settings.clone(), stop.clone()),
    ));
    roles.spawn(named(
        "categoriser",
        crate::category::categoriser::run(settings.clone(), stop.clone()),
    ));
    roles.spawn(named(
        "projector",
        projector(settings.clone(), None, stop.clone()),
    ));
    let mut first_error = None;
    while let Some(joined) = roles.join_next().await {
        let (role, result) = joined.map_err(|e| RoleError::Panicked {
            task: "a role",
            message: e.to_string(),
        })?;
        match result {
            Ok(()) => tracing::info!(role, "role stopped"),
            Err(e) => {
                tracing::error!(role, error.message = %e, error.cause_chain = ?e, "role failed");
                first_error.get_or_insert(e);
            }
        }
        stop.cancel();
    }
    first_error.map_or(Ok(()), Err)
}

/// Runs the projector of one read model, or of all of them.
pub async fn projector(
    settings: Settings,
    model: Option<String>,
    shutdown: CancellationToken,
) -> Result<(), RoleError> {
    projector_with(
        settings,
        model,
        ProjectorSettings::new(String::new()),
        shutdown,
    )
    .await
}

/// Like [`projector`], with explicit projector settings (their namespace is replaced).
pub async fn projector_with(
    settings: Settings,
    model: Option<String>,
    mut projector_settings: ProjectorSettings,
    shutdown: CancellationToken,
) -> Result<(), RoleError> {
    projector_settings.namespace = settings.namespace.clone();
    let pg = db::pool(&settings.database_url, 4)?;
    let client = broker::connect(&settings, "projector").await?;
    let js = broker::jetstream(&client);
    broker::ensure_events_stream(&js, &settings).await?;
    let result = match model {
        None => gatehouse_projections::run_all(projector_settings, pg, js, shutdown).await,
        Some(name) => {
            let projector = gatehouse_projections::projector(&name).ok_or_else(|| {
                RoleError::UnknownProjector {
                    known: gatehouse_projections::projector_names().join(", "),
                    name: name.clone(),
                }
            })?;
            projector.run(projector_settings, pg, js, shutdown).await
        }
    };
    Ok(result?)
}

async fn named<F>(role: &'static str, f: F) -> (&'static str, Result<(), RoleError>)
where
    F: std::future::Future<Output = Result<(), RoleError>>,
{
    (role, f.await)
}
