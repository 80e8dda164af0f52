//! The `access` aggregate: who holds which role.
//!
//! Commands (`<ns>.cmd.access.<name>`): `grant`, `revoke`, `issue_token`, `revoke_token` (role
//! `admin`). Queries (`<ns>.query.access.<name>`): `roles` (the grants in force), `tokens`. Events: [`AccessEvent`], published on
//! `<ns>.events.access.grants.<event_type>`: one stream ([`GRANTS`]) holds every grant, so a
//! refusal that needs all of them (revoking the last admin) is decided on one consistent state.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The aggregate type name, as stored in the event store and used in subjects.
pub const AGGREGATE: &str = "access";
/// The id of the one `access` aggregate.
pub const GRANTS: &str = "grants";
/// Longest user name a grant may name.
pub const MAX_USER_LEN: usize = 256;
/// Longest reason of a grant or revocation.
pub const MAX_REASON_LEN: usize = 4_000;

/// A role an operation needs. The names are a public contract (`docs/protocol.md`, Roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Queries.
    Viewer,
    /// `policy.create`, `policy.draft`, `policy.restore`.
    Author,
    /// `policy.prepare`, `policy.cancel_run`, `policy.resume_run`.
    Operator,
    /// `policy.promote`.
    Approver,
    /// Other services: decisions, catalog publishing, outcome reports.
    Service,
    /// `access.grant`, `access.revoke`.
    Admin,
    /// May send a command for another person (the HTTP adapter, the console), who needs the
    /// command's role; the events record both.
    Delegate,
    /// Gatehouse's own connections only; no grant gives it.
    Internal,
    /// Every authenticated caller, holding a role or not (`access.whoami`); never granted.
    Authenticated,
}

impl Role {
    /// The roles a user can be granted: all but [`Role::Internal`].
    pub const GRANTABLE: [Role; 7] = [
        Role::Viewer,
        Role::Author,
        Role::Operator,
        Role::Approver,
        Role::Service,
        Role::Admin,
        Role::Delegate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Author => "author",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Service => "service",
            Role::Admin => "admin",
            Role::Delegate => "delegate",
            Role::Internal => "internal",
            Role::Authenticated => "authenticated",
        }
    }

    /// A grantable role by name.
    pub fn grantable(name: &str) -> Option<Role> {
        Role::GRANTABLE.into_iter().find(|r| r.as_str() == name)
    }

    /// The grantable role names, comma-separated, for messages.
    pub fn grantable_names() -> String {
        Role::GRANTABLE.map(Role::as_str).join(", ")
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `grant`: `user` holds `role` from now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GrantRole {
    /// The user as the server authenticates them (a NATS user of a client account).
    pub user: String,
    /// One of [`Role::GRANTABLE`], by name.
    pub role: String,
    /// Why: shown in `access.roles` and the audit log.
    #[serde(default)]
    pub reason: String,
}

/// `revoke`: `user` no longer holds `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RevokeRole {
    pub user: String,
    pub role: String,
    #[serde(default)]
    pub reason: String,
}

/// Longest name of a token.
pub const MAX_TOKEN_NAME_LEN: usize = 200;
/// How a bearer token starts: `gh_<token_id>.<secret>`.
pub const TOKEN_PREFIX: &str = "gh_";

/// `issue_token`: a bearer token for `user` (the HTTP API). The reply carries its secret, once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    pub user: String,
    /// What it is for, e.g. `laptop` or `ci`: shown in `access.tokens`.
    pub name: String,
}

/// `revoke_token`: the token no longer authenticates anyone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RevokeToken {
    pub token_id: String,
    #[serde(default)]
    pub reason: String,
}

/// Every event of the `access` aggregate, stored externally tagged under the name spelled out
/// here (see `PolicyEvent`); `events/tests/stored_events.rs` pins them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum AccessEvent {
    #[serde(rename = "RoleGranted")]
    RoleGranted(RoleGranted),
    #[serde(rename = "RoleRevoked")]
    RoleRevoked(RoleRevoked),
    #[serde(rename = "TokenIssued")]
    TokenIssued(TokenIssued),
    #[serde(rename = "TokenRevoked")]
    TokenRevoked(TokenRevoked),
}

/// A bearer token was issued: only the SHA-256 of its secret is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenIssued {
    pub token_id: String,
    pub user: String,
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub issued_by: String,
    pub issued_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenRevoked {
    pub token_id: String,
    pub reason: String,
    pub revoked_by: String,
    pub revoked_at: DateTime<Utc>,
}

/// The reply to `issue_token`: the command's acceptance and the token, shown this once (a
/// repeat of the command answers `token: null`: revoke it and issue another if it is lost).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IssuedToken {
    #[serde(flatten)]
    pub accepted: crate::envelope::CommandAccepted,
    pub token_id: Option<String>,
    pub token: Option<String>,
}

/// `tokens`: the tokens that authenticate, by id; only `user`'s when given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ListTokens {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A token in force, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenView {
    pub token_id: String,
    pub user: String,
    pub name: String,
    pub issued_by: String,
    pub issued_at: DateTime<Utc>,
}

impl AccessEvent {
    /// The stable stored type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            AccessEvent::RoleGranted(_) => "RoleGranted",
            AccessEvent::RoleRevoked(_) => "RoleRevoked",
            AccessEvent::TokenIssued(_) => "TokenIssued",
            AccessEvent::TokenRevoked(_) => "TokenRevoked",
        }
    }

    /// The payload schema version of this event type.
    pub fn event_version(&self) -> &'static str {
        "1.0"
    }
}

#[cfg(feature = "cqrs")]
impl cqrs_es::DomainEvent for AccessEvent {
    fn event_type(&self) -> String {
        AccessEvent::event_type(self).to_owned()
    }

    fn event_version(&self) -> String {
        AccessEvent::event_version(self).to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoleGranted {
    pub user: String,
    pub role: Role,
    pub reason: String,
    pub granted_by: String,
    pub granted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoleRevoked {
    pub user: String,
    pub role: Role,
    pub reason: String,
    pub revoked_by: String,
    pub revoked_at: DateTime<Utc>,
}

/// `roles`: the grants in force, by user; only `user`'s when given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ListRoles {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A user's roles, by role name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserRoles {
    pub user: String,
    pub roles: Vec<RoleGrant>,
}

/// `whoami`: the caller's own grants (no fields).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhoAmI {}

/// Who the caller is and the roles they hold: what a front end needs to offer only what the
/// caller may do.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Caller {
    /// The authenticated user; absent for Gatehouse's own connections.
    pub user: Option<String>,
    /// A connection of Gatehouse's own account: may call every operation.
    pub internal: bool,
    /// The grants in force for `user`.
    pub roles: Vec<RoleGrant>,
}

/// One grant in force: who gave it, when, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoleGrant {
    pub role: Role,
    pub granted_by: String,
    pub granted_at: DateTime<Utc>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_their_wire_names() {
        for role in Role::GRANTABLE.into_iter().chain([Role::Internal]) {
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::Value::String(role.as_str().into())
            );
        }
        assert_eq!(Role::grantable("delegate"), Some(Role::Delegate));
        assert_eq!(Role::grantable("internal"), None);
        assert_eq!(Role::grantable("root"), None);
    }
}
