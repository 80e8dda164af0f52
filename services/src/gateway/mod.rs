//! The command gateway: every command and query arrives here as a NATS request.
//!
//! It registers with the NATS services API as `gatehouse` (queue group `gatehouse`, so any
//! number of instances share the load; discoverable with `$SRV.PING|INFO|STATS`), with one
//! endpoint per command (`<ns>.cmd.<aggregate>.<command>`) and per query
//! (`<ns>.query.<model>.<query>`). Every reply is JSON ([`gatehouse_events::envelope::Reply`]).
//!
//! Layout:
//! - [`request`]: parsing and envelope checks (`bad_request`).
//! - [`commands`]: command execution on the aggregates and the rejection mapping.
//! - [`queries`]: read-model and event-store queries ([`run_queries`], [`catalog_queries`]).
//! - [`consistency`]: a query's `wait_for` (read-your-writes).

pub mod catalog_queries;
pub mod commands;
pub mod consistency;
pub mod queries;
pub mod request;
pub mod run_queries;
pub mod runs;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use async_nats::service::ServiceExt;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use gatehouse_events::envelope::{Rejection, RejectionCode, Reply};
use gatehouse_events::subjects;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::settings::Settings;
use crate::{broker, db, RoleError};

/// Every endpoint: (group, name within the group). The subject is `<ns>.<group>.<name>`.
pub const COMMANDS: &[&str] = &[
    "policy.create",
    "policy.draft",
    "policy.restore",
    "policy.prepare",
    "policy.cancel_run",
    "policy.resume_run",
    "policy.promote",
    "policy.complete_run",
    "policy.fail_run",
];
pub const QUERIES: &[&str] = &[
    "policy.list",
    "policy.get",
    "policy.versions",
    "policy.version",
    "policy.diff",
    "audit.log",
    "audit.replay",
    "run.get",
    "run.list",
    "run.diff",
    "catalog.get",
    "catalog.stats",
    "catalog.public",
];

/// What one gateway instance shares between its requests.
pub struct Gateway {
    pub(crate) commands: commands::Commands,
    pub(crate) queries: queries::Queries,
    namespace: String,
}

/// Which endpoint a request arrived on.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Command(&'static str),
    Query(&'static str),
}

/// Runs a gateway until `shutdown`; requests in hand are answered before it returns.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    let pg = db::pool(&settings.database_url, settings.db_pool_size)?;
    let sqlx = db::sqlx_pool(&settings.database_url, settings.db_pool_size as u32).await?;
    let client = broker::connect(&settings, "gateway").await?;
    let gateway = Arc::new(Gateway {
        commands: commands::Commands::new(sqlx, pg.clone()),
        queries: queries::Queries::new(pg),
        namespace: settings.namespace.clone(),
    });
    let service = client
        .service_builder()
        .description("Gatehouse command gateway: commands and queries")
        .queue_group(subjects::QUEUE_GROUP)
        .start(subjects::SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| RoleError::Broker(e.to_string()))?;
    let mut streams = Vec::new();
    for (group, names, kind) in [
        (
            subjects::command_group(&settings.namespace),
            COMMANDS,
            Endpoint::Command as fn(&'static str) -> Endpoint,
        ),
        (
            subjects::query_group(&settings.namespace),
            QUERIES,
            Endpoint::Query,
        ),
    ] {
        let group = service.group(group);
        for name in names {
            let endpoint = group
                .endpoint_builder()
                .name(name.replace('.', "-"))
                .add(*name)
                .await
                .map_err(|e| RoleError::Broker(e.to_string()))?;
            streams.push(endpoint.map(move |req| (kind(name), req)).boxed());
        }
    }
    tracing::info!(namespace = %settings.namespace, "gateway serving");
    let mut requests = futures::stream::select_all(streams);
    let limit = Arc::new(Semaphore::new(settings.max_inflight));
    loop {
        let (endpoint, request) = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = requests.next() => match next {
                Some(r) => r,
                None => break,
            },
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let subject = request.message.subject.to_string();
            let span = tracing::info_span!("request", %subject);
            let handling = gateway.handle(endpoint, &request.message.payload);
            let reply = unless_panicked(handling).instrument(span).await;
            if let Err(e) = request.respond(Ok(reply)).await {
                tracing::warn!(error.message = %e, "cannot send a reply");
            }
            drop(permit);
        });
    }
    // Let the requests in hand finish before the connection goes.
    let _ = limit.acquire_many(settings.max_inflight as u32).await;
    let _ = service.stop().await;
    let _ = client.drain().await;
    Ok(())
}

impl Gateway {
    async fn handle(&self, endpoint: Endpoint, payload: &[u8]) -> Bytes {
        match endpoint {
            Endpoint::Command(name) => {
                reply(self.commands.handle(&self.namespace, name, payload).await)
            }
            Endpoint::Query(name) => match self.queries.handle(name, payload).await {
                Ok(value) => reply(Ok(value)),
                Err(e) => reply::<()>(Err(e)),
            },
        }
    }
}

/// The reply `handling` makes; if it panics, an `internal` rejection, so that the caller gets
/// an answer rather than a timeout.
async fn unless_panicked(handling: impl Future<Output = Bytes>) -> Bytes {
    match AssertUnwindSafe(handling).catch_unwind().await {
        Ok(reply) => reply,
        Err(_) => {
            tracing::error!("handling the request panicked");
            reply::<()>(Err(Rejection::new(
                RejectionCode::Internal,
                "unexpected server error (details in the server log)",
            )))
        }
    }
}

/// Serializes a reply; a rejection also carries its code for logs.
fn reply<T: Serialize>(outcome: Result<T, Rejection>) -> Bytes {
    let reply = match outcome {
        Ok(value) => Reply::success(value),
        Err(rejection) => {
            if rejection.code == RejectionCode::Internal {
                tracing::error!(error.message = %rejection.message, "request failed");
            }
            Reply::rejected(rejection)
        }
    };
    Bytes::from(serde_json::to_vec(&reply).unwrap_or_else(|_| b"{\"ok\":false}".to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_whose_handling_panics_is_answered_internal() {
        let reply = unless_panicked(async { panic!("a bug") }).await;
        let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(reply["ok"], false);
        assert_eq!(reply["error"]["code"], "internal");
    }
}
