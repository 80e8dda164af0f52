//! The NATS adapter: every command and query arrives here as a NATS request.
//!
//! It registers with the NATS services API as `gatehouse` (queue group `gatehouse`, so any
//! number of instances share the load; discoverable with `$SRV.PING|INFO|STATS`), with one
//! endpoint per operation the contexts declare ([`crate::api::operations`]): commands on
//! `<ns>.cmd.<context>.<name>`, queries on `<ns>.query.<context>.<name>`. It keeps no list of
//! its own; every reply is JSON ([`gatehouse_events::envelope::Reply`]), and a request whose
//! handling panics is answered `internal` rather than left to time out.
//!
//! Each request's caller is resolved from its `Nats-Request-Info` header
//! ([`crate::api::identity`]) before the operation is called.

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

use crate::api::identity::REQUEST_INFO_HEADER;
use crate::api::{self, App, Identity, Kind, Operation};
use crate::settings::Settings;
use crate::{access, broker, db, RoleError};

/// Runs a gateway until `shutdown`; requests in hand are answered before it returns.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    let pg = db::pool(&settings.database_url, settings.db_pool_size)?;
    let sqlx = db::sqlx_pool(&settings.database_url, settings.db_pool_size as u32).await?;
    let client = broker::connect(&settings, "gateway").await?;
    let app = Arc::new(App::new(sqlx, pg, settings.namespace.clone()));
    // Before serving: a user's first request already meets the seeded grants.
    access::seed(
        &app,
        settings.admin_user.as_deref(),
        &settings.grants,
        &shutdown,
    )
    .await;
    let service = client
        .service_builder()
        .description("Gatehouse command gateway: commands and queries")
        .queue_group(subjects::QUEUE_GROUP)
        .start(subjects::SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(RoleError::broker("start the gatehouse service"))?;
    let mut streams = Vec::new();
    let commands = service.group(subjects::command_group(&settings.namespace));
    let queries = service.group(subjects::query_group(&settings.namespace));
    for op in api::operations() {
        let group = match op.kind {
            Kind::Command => &commands,
            Kind::Query => &queries,
        };
        let endpoint = group
            .endpoint_builder()
            .name(op.name.replace('.', "-"))
            .add(op.name)
            .await
            .map_err(RoleError::broker(format!("add the endpoint {}", op.name)))?;
        streams.push(endpoint.map(move |req| (op, req)).boxed());
    }
    tracing::info!(namespace = %settings.namespace, "gateway serving");
    let mut requests = futures::stream::select_all(streams);
    let limit = Arc::new(Semaphore::new(settings.max_inflight));
    loop {
        let (op, request) = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = requests.next() => match next {
                Some(r) => r,
                None => break,
            },
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let subject = request.message.subject.to_string();
            let span = tracing::info_span!("request", %subject, caller = tracing::field::Empty);
            let caller = caller(request.message.headers.as_ref());
            let handling = answer(&app, op, caller, &request.message.payload);
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

/// Who sent a request: the user nats-server stamped in its `Nats-Request-Info` header (exact
/// name: the server replaces a client-set one, but lets a lower-case look-alike through).
fn caller(headers: Option<&async_nats::HeaderMap>) -> Result<Identity, Rejection> {
    let values: Vec<&str> = headers
        .map(|h| h.get_all(REQUEST_INFO_HEADER).map(|v| v.as_str()).collect())
        .unwrap_or_default();
    Identity::from_request_info(&values)
}

/// The reply to one request for `op` from `caller`.
async fn answer(
    app: &App,
    op: &Operation,
    caller: Result<Identity, Rejection>,
    payload: &[u8],
) -> Bytes {
    let outcome = match caller {
        Ok(caller) => {
            if let Identity::User(user) = &caller {
                tracing::Span::current().record("caller", user.user.as_str());
            }
            op.call(app, &caller, payload).await
        }
        Err(rejection) => Err(rejection),
    };
    reply(outcome)
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
