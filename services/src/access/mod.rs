//! The `access` context: who holds which role.
//!
//! Commands `access.grant`, `access.revoke`, `access.issue_token`, `access.revoke_token` (role
//! `admin`); queries `access.roles`, `access.whoami`, `access.tokens` (declared in [`OPERATIONS`]). Every grant lives in one `access` aggregate ([`Access`]); the role check
//! of every request ([`crate::api::roles`]) reads its state through [`grants::Current`].
//!
//! The first admin comes from the environment: at start-up the gateway [`seed`]s
//! `GATEHOUSE_ADMIN_USER` as `admin` while nobody holds `admin`, and the grants of
//! `GATEHOUSE_ROLES`, each once (by a fixed command id: a restart does not give back a seeded
//! role revoked since).
//!
//! Layout:
//! - [`aggregate`]: the `access` aggregate (grant, revoke, the last-admin rule).
//! - [`grants`]: the grants in force, as the role check reads them.
//! - [`commands`], [`queries`]: the handlers of the operations; [`seed`].
pub mod aggregate;
pub mod commands;
pub mod grants;
pub mod queries;

pub use aggregate::{Access, AccessCommand, AccessError};
pub use commands::seed;

use gatehouse_events::access::{
    GrantRole, IssueToken, IssuedToken, ListRoles, ListTokens, RevokeRole, RevokeToken, TokenView,
    UserRoles,
};
use gatehouse_events::envelope::CommandAccepted;

use crate::api::{self, Identity, Kind, Operation, Role};
use crate::{command, query};

/// The access context's commands and queries.
pub const OPERATIONS: &[Operation] = &[
    command!(
        "access.grant",
        Admin,
        "give a user a role",
        GrantRole => CommandAccepted,
        commands::grant
    ),
    command!(
        "access.revoke",
        Admin,
        "take a role from a user (never the last admin's admin)",
        RevokeRole => CommandAccepted,
        commands::revoke
    ),
    command!(
        "access.issue_token",
        Admin,
        "issue a bearer token for a user of the HTTP API (its secret is answered once)",
        IssueToken => IssuedToken,
        commands::issue_token
    ),
    command!(
        "access.revoke_token",
        Admin,
        "revoke a bearer token: it authenticates nobody from the next request on",
        RevokeToken => CommandAccepted,
        commands::revoke_token
    ),
    query!(
        "access.roles",
        Viewer,
        "the grants in force, by user (read from the event store: always current)",
        ListRoles => Vec<UserRoles>,
        queries::roles,
        None
    ),
    Operation {
        name: "access.whoami",
        kind: Kind::Query,
        role: Role::Authenticated,
        about:
            "the caller and the roles they hold (for a front end to offer only what they may do)",
        request: "WhoAmI",
        reply: "Caller",
        schemas: crate::http::openapi::schemas_of::<
            gatehouse_events::access::WhoAmI,
            gatehouse_events::access::Caller,
        >,
        reads: None,
        handler: whoami,
    },
    query!(
        "access.tokens",
        Admin,
        "the bearer tokens in force, without their secrets",
        ListTokens => Vec<TokenView>,
        queries::tokens,
        None
    ),
];

/// `access.whoami`, by hand rather than by `query!`: its answer depends on the caller.
fn whoami<'a>(
    app: &'a api::App,
    caller: &'a Identity,
    payload: &'a [u8],
) -> futures::future::BoxFuture<'a, Result<serde_json::Value, gatehouse_events::envelope::Rejection>>
{
    Box::pin(async move {
        let query = api::request::query::<gatehouse_events::access::WhoAmI>(payload)?;
        api::to_json(queries::whoami(app, caller, query).await)
    })
}
