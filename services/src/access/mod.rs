//! The `access` context: who holds which role.
//!
//! Commands `access.grant`, `access.revoke` (role `admin`); query `access.roles` (declared in
//! [`OPERATIONS`]). Every grant lives in one `access` aggregate ([`Access`]); the role check
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

use gatehouse_events::access::{GrantRole, ListRoles, RevokeRole, UserRoles};
use gatehouse_events::envelope::CommandAccepted;

use crate::api::Operation;
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
    query!(
        "access.roles",
        Viewer,
        "the grants in force, by user (read from the event store: always current)",
        ListRoles => Vec<UserRoles>,
        queries::roles,
        None
    ),
];
