//! Every operation Gatehouse answers, declared once: each context (`policy`, `run`, `catalog`,
//! `audit`, `access`) lists its commands and queries in an `OPERATIONS` table — name, request type, reply
//! type, which read model a query reads, and the handler — with the [`command!`](crate::command) and [`query!`](crate::query)
//! macros. Adapters iterate [`operations`]: the NATS gateway registers one services-API endpoint
//! per entry, and an HTTP adapter can serve the same table; no adapter keeps a list of names.
//!
//! An operation takes the raw request body and answers JSON or a [`Rejection`]: parsing and the
//! envelope checks ([`request`]), a query's read-your-writes wait ([`consistency`]), the
//! handler, then the reply's serialization all happen in [`Operation::call`], the same for every
//! adapter.
//!
//! Layout:
//! - this file: [`App`] (what handlers share), [`Operation`], the table of tables.
//! - [`identity`]: who sends a request, resolved by the adapter; a command's `actor` is checked
//!   against it (`actor_mismatch`).
//! - [`roles`]: the [`Role`] each operation declares, checked before the handler (`forbidden`).
//! - [`request`]: request parsing and envelope checks (`bad_request` naming the field).
//! - [`consistency`]: `wait_for` on queries.
//! - [`read`]: what query handlers share (columns, pages, database failures).

pub mod consistency;
pub mod identity;
pub mod read;
pub mod request;
pub mod roles;

use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use gatehouse_events::envelope::{Rejection, RejectionCode};
use serde::Serialize;

use crate::access::{grants, Access};
use crate::artifact::Artifact;
use crate::category::CategoryRules;
use crate::flag::{Flag, Global};
use crate::policy::Policy;
use crate::repo::Repo;
use crate::settings::Settings;
use crate::store::{CommandError, Store};
use crate::worker::policies::PolicyCache;
pub use consistency::ReadModel;
pub use identity::Identity;
pub use roles::{Grants, Role};

/// What every handler shares: the event stores, the read-model pool, the namespace, the
/// grants in force.
pub struct App {
    pub(crate) policies: Store<Policy>,
    pub(crate) access: Store<Access>,
    pub(crate) repos: Store<Repo>,
    pub(crate) artifacts: Store<Artifact>,
    /// Compiled policy versions for decisions, compiled once per process.
    pub(crate) compiled: PolicyCache,
    pub(crate) pg: Pool,
    pub(crate) namespace: String,
    pub(crate) grants: grants::Current,
    pub(crate) flags: Store<Flag>,
    pub(crate) global: Store<Global>,
    pub(crate) categories: Store<CategoryRules>,
    /// `GATEHOUSE_EMERGENCY_STOP`, read when the app starts (`flag.evaluate` honours it).
    pub(crate) emergency: gatehouse_flags::EmergencyOverride,
    /// The NATS connection `/readyz` and `/metrics` read JetStream through ([`App::with_broker`]).
    pub(crate) broker: Option<Broker>,
}

/// A connection to NATS and the streams the system needs there.
pub struct Broker {
    pub(crate) client: async_nats::Client,
    pub(crate) streams: Vec<async_nats::jetstream::stream::Config>,
}

impl App {
    pub fn new(sqlx: sqlx::PgPool, pg: Pool, namespace: impl Into<String>) -> Self {
        App {
            policies: Store::new(sqlx.clone(), pg.clone()),
            access: Store::new(sqlx.clone(), pg.clone()),
            repos: Store::new(sqlx.clone(), pg.clone()),
            artifacts: Store::new(sqlx.clone(), pg.clone()),
            compiled: PolicyCache::default(),
            flags: Store::new(sqlx.clone(), pg.clone()),
            global: Store::new(sqlx.clone(), pg.clone()),
            categories: Store::new(sqlx, pg.clone()),
            pg,
            namespace: namespace.into(),
            grants: grants::Current::default(),
            emergency: gatehouse_flags::EmergencyOverride::from_env(),
            broker: None,
        }
    }

    /// With `client` for readiness and the broker's metrics, expecting the streams `settings`
    /// configure.
    pub fn with_broker(mut self, client: async_nats::Client, settings: &Settings) -> Self {
        self.broker = Some(Broker {
            client,
            streams: crate::ops::expected::streams(settings),
        });
        self
    }
}

/// A command changes an aggregate (`<ns>.cmd.<name>` on NATS); a query reads
/// (`<ns>.query.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Command,
    Query,
}

/// Answers one request of a caller: the body in, JSON or a rejection out.
pub type Handler = for<'a> fn(
    &'a App,
    &'a Identity,
    &'a [u8],
) -> BoxFuture<'a, Result<serde_json::Value, Rejection>>;

/// One command or query of a context.
#[derive(Clone, Copy)]
pub struct Operation {
    /// `<context>.<name>`, e.g. `policy.draft`: the subject below the kind's group on NATS.
    pub name: &'static str,
    pub kind: Kind,
    /// One line for people (service descriptions, API documents).
    pub about: &'static str,
    /// The request body's type in `gatehouse_events` (e.g. `DraftVersion`).
    pub request: &'static str,
    /// The reply `result`'s type.
    pub reply: &'static str,
    /// The JSON Schemas of the request and the reply, for API documents.
    pub schemas: fn(&mut schemars::SchemaGenerator) -> [schemars::Schema; 2],
    /// The role a caller needs ([`roles::check`]).
    pub role: Role,
    /// The read model a query reads, for `wait_for`; `None` for commands and for queries of
    /// models no command writes (the catalog).
    pub reads: Option<ReadModel>,
    pub handler: Handler,
}

impl Operation {
    /// The context: `policy` of `policy.draft`.
    pub fn context(&self) -> &'static str {
        self.name.split('.').next().unwrap_or(self.name)
    }

    /// Answers `payload` sent by `caller`: `forbidden` unless the caller holds the operation's
    /// role (checked before anything is parsed or persisted; the denial is recorded); a query first waits for its
    /// `wait_for`, if any. Counted in the process's metrics ([`crate::ops::metrics`]) by outcome.
    pub async fn call(
        &self,
        app: &App,
        caller: &Identity,
        payload: &[u8],
    ) -> Result<serde_json::Value, Rejection> {
        let started = std::time::Instant::now();
        let outcome = self.answer(app, caller, payload).await;
        crate::ops::metrics::record(self, &outcome, started.elapsed());
        outcome
    }

    async fn answer(
        &self,
        app: &App,
        caller: &Identity,
        payload: &[u8],
    ) -> Result<serde_json::Value, Rejection> {
        let caller = &self.authorize(app, caller, payload).await?;
        match self.kind {
            Kind::Command => (self.handler)(app, caller, payload).await,
            Kind::Query => {
                let (payload, wait_for) = request::split_wait(payload)?;
                if let Some(wait_for) = &wait_for {
                    consistency::wait(&app.pg, self, wait_for).await?;
                }
                (self.handler)(app, caller, &payload).await
            }
        }
    }
}

impl Operation {
    /// The caller as the role check sees it, once it may call this operation: a user's
    /// delegation and roles are the grants in force now; a denial is recorded and answered
    /// `forbidden` before anything is parsed or persisted.
    async fn authorize(
        &self,
        app: &App,
        caller: &Identity,
        payload: &[u8],
    ) -> Result<Identity, Rejection> {
        let Identity::User(user) = caller else {
            return Ok(Identity::Internal);
        };
        let grants = app.grants.now(&app.pg).await?;
        let user = Identity::User(roles::with_delegation(&grants.access, user));
        let claimed = match (&user, self.kind) {
            (Identity::User(u), Kind::Command) if u.delegate => request::claimed_actor(payload),
            _ => None,
        };
        if let Err(denied) = roles::check(
            &grants.access,
            &user,
            claimed.as_deref(),
            self.name,
            self.role,
        ) {
            roles::record(&app.pg, &denied).await;
            return Err(denied.rejection());
        }
        Ok(user)
    }
}

/// Every context's operations.
const CONTEXTS: &[&[Operation]] = &[
    crate::policy::OPERATIONS,
    crate::run::OPERATIONS,
    crate::catalog::OPERATIONS,
    crate::audit::OPERATIONS,
    crate::access::OPERATIONS,
    crate::repo::OPERATIONS,
    crate::decision::OPERATIONS,
    crate::quarantine::OPERATIONS,
    crate::artifact::OPERATIONS,
    crate::flag::OPERATIONS,
    crate::flag::GLOBAL_OPERATIONS,
    crate::category::OPERATIONS,
];

/// Every operation of every context, commands and queries.
pub fn operations() -> impl Iterator<Item = &'static Operation> {
    CONTEXTS.iter().flat_map(|ops| ops.iter())
}

/// The operation of `kind` called `name`.
pub fn operation(kind: Kind, name: &str) -> Option<&'static Operation> {
    operations().find(|op| op.kind == kind && op.name == name)
}

/// A handler's outcome as the JSON `result` of a reply.
pub fn to_json<T: Serialize>(
    outcome: Result<T, Rejection>,
) -> Result<serde_json::Value, Rejection> {
    let value = outcome?;
    serde_json::to_value(value).map_err(|e| read::internal(e.to_string()))
}

/// Declares a command: `command!("policy.draft", Author, "about", DraftVersion => CommandAccepted,
/// handler)` where `Author` is the [`Role`] it needs and `handler(&App, Parsed<DraftVersion>)` answers `Result<CommandAccepted, Rejection>`.
#[macro_export]
macro_rules! command {
    ($name:literal, $role:ident, $about:literal, $request:ty => $reply:ty, $handler:path) => {
        $crate::api::Operation {
            name: $name,
            kind: $crate::api::Kind::Command,
            role: $crate::api::Role::$role,
            about: $about,
            request: stringify!($request),
            reply: stringify!($reply),
            schemas: $crate::http::openapi::schemas_of::<$request, $reply>,
            reads: None,
            handler: {
                fn handle<'a>(
                    app: &'a $crate::api::App,
                    caller: &'a $crate::api::Identity,
                    payload: &'a [u8],
                ) -> ::futures::future::BoxFuture<
                    'a,
                    Result<::serde_json::Value, ::gatehouse_events::envelope::Rejection>,
                > {
                    Box::pin(async move {
                        let parsed = $crate::api::request::command::<$request>(
                            &app.namespace,
                            $name,
                            caller,
                            payload,
                        )?;
                        let outcome: Result<$reply, _> = $handler(app, parsed).await;
                        $crate::api::to_json(outcome)
                    })
                }
                handle
            },
        }
    };
}

/// Declares a query: `query!("policy.get", Viewer, "about", GetPolicy => PolicySummary, handler,
/// reads)` where `Viewer` is the [`Role`] it needs, `handler(&App, GetPolicy)` answers `Result<PolicySummary, Rejection>` and `reads` is
/// the [`ReadModel`] `wait_for` waits on (`None` when no command writes what it reads).
#[macro_export]
macro_rules! query {
    ($name:literal, $role:ident, $about:literal, $request:ty => $reply:ty, $handler:path, $reads:expr) => {
        $crate::api::Operation {
            name: $name,
            kind: $crate::api::Kind::Query,
            role: $crate::api::Role::$role,
            about: $about,
            request: stringify!($request),
            reply: stringify!($reply),
            schemas: $crate::http::openapi::schemas_of::<$request, $reply>,
            reads: $reads,
            handler: {
                fn handle<'a>(
                    app: &'a $crate::api::App,
                    _caller: &'a $crate::api::Identity,
                    payload: &'a [u8],
                ) -> ::futures::future::BoxFuture<
                    'a,
                    Result<::serde_json::Value, ::gatehouse_events::envelope::Rejection>,
                > {
                    Box::pin(async move {
                        let query = $crate::api::request::query::<$request>(payload)?;
                        let outcome: Result<$reply, _> = $handler(app, query).await;
                        $crate::api::to_json(outcome)
                    })
                }
                handle
            },
        }
    };
}

/// Rejections every aggregate shares: idempotency, conflicts, infrastructure.
pub fn infrastructure_rejection<E: std::error::Error>(error: CommandError<E>) -> Rejection {
    match error {
        CommandError::Rejected(e) => Rejection::new(RejectionCode::InvalidState, e.to_string()),
        CommandError::IdempotencyConflict(_) => {
            Rejection::new(RejectionCode::IdempotencyConflict, error.to_string())
                .with_field("command_id")
        }
        CommandError::Conflict => Rejection::new(RejectionCode::Conflict, error.to_string()),
        CommandError::Store(cause) => {
            tracing::error!(error.message = %cause, error.cause_chain = ?cause, "event store unavailable");
            Rejection::new(
                RejectionCode::Unavailable,
                "the event store is unavailable; retry with the same command_id",
            )
        }
        CommandError::InvalidData(cause) => {
            tracing::warn!(error.message = %cause, error.cause_chain = ?cause,
                "the database refused a value of a command");
            Rejection::new(
                RejectionCode::BadRequest,
                "the database refused a value of this command; sent again unchanged it fails again",
            )
        }
        CommandError::Unexpected(cause) => {
            tracing::error!(error.message = %cause, error.cause_chain = ?cause,
                "unexpected event store error");
            Rejection::new(
                RejectionCode::Internal,
                "unexpected server error (details in the server log)",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_operation_is_declared_once_under_its_context() {
        let mut seen = HashSet::new();
        for op in operations() {
            assert!(
                seen.insert((op.kind, op.name)),
                "{} is declared twice",
                op.name
            );
            let (context, name) = op.name.split_once('.').expect("<context>.<name>");
            assert!(!name.is_empty() && !name.contains('.'), "{}", op.name);
            assert!(
                [
                    "policy",
                    "run",
                    "catalog",
                    "audit",
                    "access",
                    "repo",
                    "decision",
                    "quarantine",
                    "artifact",
                    "flag",
                    "global",
                    "category"
                ]
                .contains(&context),
                "{} is in an unknown context",
                op.name
            );
            assert_eq!(op.context(), context);
            assert!(!op.about.is_empty(), "{} says what it does", op.name);
        }
    }

    #[test]
    fn the_wire_names_stay_what_clients_send() {
        let names = |kind: Kind| -> Vec<&str> {
            operations()
                .filter(|op| op.kind == kind)
                .map(|op| op.name)
                .collect()
        };
        assert_eq!(
            names(Kind::Command),
            [
                "policy.create",
                "policy.draft",
                "policy.restore",
                "policy.configure",
                "policy.prepare",
                "policy.cancel_run",
                "policy.resume_run",
                "policy.promote",
                "policy.complete_run",
                "policy.fail_run",
                "access.grant",
                "access.revoke",
                "access.issue_token",
                "access.revoke_token",
                "repo.bind",
                "decision.evaluate",
                "quarantine.release",
                "quarantine.reject",
                "flag.create",
                "flag.update_values",
                "flag.archive",
                "flag.set_rollout",
                "flag.emergency_stop",
                "flag.resume",
                "flag.auto_rollback",
                "global.safe_mode",
                "category.draft_rules",
                "category.activate_rules",
            ]
        );
        assert_eq!(
            names(Kind::Query),
            [
                "policy.list",
                "policy.get",
                "policy.versions",
                "policy.version",
                "policy.diff",
                "run.get",
                "run.list",
                "run.diff",
                "catalog.get",
                "catalog.stats",
                "catalog.public",
                "catalog.search",
                "catalog.index_status",
                "audit.log",
                "audit.replay",
                "audit.denials",
                "access.roles",
                "access.whoami",
                "access.tokens",
                "repo.get",
                "repo.list",
                "decision.list",
                "quarantine.list",
                "quarantine.get",
                "artifact.can_read",
                "flag.get",
                "flag.list",
                "flag.history",
                "flag.snapshot",
                "flag.evaluate",
                "flag.evaluate_batch",
                "flag.stats",
                "global.get",
                "category.get",
                "category.list",
                "category.compute",
                "category.rules",
            ]
        );
    }

    #[test]
    fn every_operation_declares_the_documented_role() {
        let role = |name: &str| match name {
            "artifact.can_read" | "flag.snapshot" | "flag.evaluate" | "flag.evaluate_batch" => {
                Role::Service
            }
            "access.tokens" => Role::Admin,
            "access.whoami" => Role::Authenticated,
            _ if operation(Kind::Query, name).is_some() => Role::Viewer,
            "policy.create" | "policy.draft" | "policy.restore" => Role::Author,
            "policy.prepare" | "policy.cancel_run" | "policy.resume_run" => Role::Operator,
            "access.grant"
            | "access.revoke"
            | "access.issue_token"
            | "access.revoke_token"
            | "policy.configure" => Role::Admin,
            "policy.promote" | "quarantine.release" | "quarantine.reject" => Role::Approver,
            "repo.bind" => Role::Operator,
            "decision.evaluate" => Role::Service,
            "policy.complete_run" | "policy.fail_run" | "flag.auto_rollback" => Role::Internal,
            "flag.create" | "flag.update_values" | "flag.archive" => Role::Author,
            "category.draft_rules" => Role::Author,
            "category.activate_rules" => Role::Operator,
            "flag.set_rollout" | "flag.emergency_stop" | "flag.resume" | "global.safe_mode" => {
                Role::Operator
            }
            other => panic!("{other} has no documented role"),
        };
        for op in operations() {
            assert_eq!(op.role, role(op.name), "{}", op.name);
        }
    }

    #[test]
    fn queries_of_models_that_commands_write_can_wait_and_commands_never_do() {
        for op in operations() {
            match op.kind {
                Kind::Command => assert_eq!(op.reads, None, "{}", op.name),
                Kind::Query if op.context() == "catalog" && op.name != "catalog.public" => {
                    assert_eq!(op.reads, None, "{}", op.name)
                }
                // Written before the denied request is answered, or read from the event store:
                // nothing to wait for.
                Kind::Query
                    if [
                        "audit.denials",
                        "access.roles",
                        "access.whoami",
                        "access.tokens",
                        "flag.snapshot",
                    ]
                    .contains(&op.name) =>
                {
                    assert_eq!(op.reads, None, "{}", op.name)
                }
                // Counted by the flag monitor, not by a command's projector.
                Kind::Query if op.name == "flag.stats" => assert_eq!(op.reads, None),
                // The rules from the event store; units written by the categoriser from the
                // catalog stream, which no command's reply can name.
                Kind::Query if op.context() == "category" => assert_eq!(op.reads, None),
                Kind::Query => assert!(op.reads.is_some(), "{} can wait", op.name),
            }
        }
    }
}
