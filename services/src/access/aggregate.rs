//! The `access` aggregate: every grant in force, in one stream ([`GRANTS`]).
//!
//! `grant` and `revoke` change it; the role check ([`super::grants`]) and `access.roles` read
//! its state folded from the stored events. One stream keeps refusals that need every grant
//! (revoking the last admin) consistent; grants change rarely, and the state is kept between
//! commands like any aggregate's.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use gatehouse_events::access::{
    AccessEvent, Role, RoleGrant, RoleGranted, RoleRevoked, TokenIssued, TokenRevoked, TokenView,
    UserRoles, AGGREGATE, MAX_REASON_LEN, MAX_TOKEN_NAME_LEN, MAX_USER_LEN, TOKEN_PREFIX,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::validation::FieldError;

/// A command to the access aggregate, with the authenticated actor and the time.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessCommand {
    Grant {
        user: String,
        role: String,
        reason: String,
        actor: String,
        at: DateTime<Utc>,
    },
    Revoke {
        user: String,
        role: String,
        reason: String,
        actor: String,
        at: DateTime<Utc>,
    },
    /// A token whose id and secret the handler drew; only the secret's hash comes in.
    IssueToken {
        token_id: String,
        user: String,
        name: String,
        secret_sha256: String,
        actor: String,
        at: DateTime<Utc>,
    },
    RevokeToken {
        token_id: String,
        reason: String,
        actor: String,
        at: DateTime<Utc>,
    },
}

/// Why a grant or revocation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AccessError {
    /// A field breaks its format or size rule (or names no grantable role).
    #[error("{0}")]
    InvalidField(FieldError),
    /// `grant` of a role the user holds.
    #[error("`{user}` already holds the role `{role}` (granted by {granted_by})")]
    AlreadyHeld {
        user: String,
        role: Role,
        granted_by: String,
    },
    /// `revoke` of a role the user does not hold.
    #[error("`{user}` does not hold the role `{role}`")]
    NotHeld { user: String, role: Role },
    /// `revoke` of the last admin's `admin`: nobody could grant anything after it.
    #[error(
        "`{0}` is the only admin: grant `admin` to someone else first (nobody could grant a role \
         after this)"
    )]
    LastAdmin(String),
    /// `revoke_token` of a token that does not authenticate anyone (never issued, or revoked).
    #[error("no token `{0}` is in force")]
    UnknownToken(String),
}

/// Every grant in force: user → role → how it was granted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Access {
    grants: BTreeMap<String, BTreeMap<Role, RoleGrant>>,
    /// The tokens in force, by id.
    #[serde(default)]
    tokens: BTreeMap<String, Token>,
}

/// A bearer token in force: whose it is, and the hash of its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Token {
    user: String,
    name: String,
    secret_sha256: String,
    issued_by: String,
    issued_at: DateTime<Utc>,
}

impl Access {
    /// Whether `user` holds `role`.
    pub fn holds(&self, user: &str, role: Role) -> bool {
        self.grants
            .get(user)
            .is_some_and(|roles| roles.contains_key(&role))
    }

    /// The grants in force, by user (only `user`'s when given), users and roles in name order.
    pub fn roles(&self, user: Option<&str>) -> Vec<UserRoles> {
        self.grants
            .iter()
            .filter(|(name, _)| user.is_none_or(|u| u == name.as_str()))
            .map(|(name, roles)| UserRoles {
                user: name.clone(),
                roles: roles.values().cloned().collect(),
            })
            .collect()
    }

    /// The user a bearer token (`gh_<token_id>.<secret>`) authenticates, if it is in force.
    pub fn token_user(&self, token: &str) -> Option<&str> {
        let (token_id, secret) = token.strip_prefix(TOKEN_PREFIX)?.split_once('.')?;
        let held = self.tokens.get(token_id)?;
        let presented = hex::encode(Sha256::digest(secret.as_bytes()));
        // Compare every byte: how long the comparison takes says nothing about the hash.
        let same = presented.len() == held.secret_sha256.len()
            && presented
                .bytes()
                .zip(held.secret_sha256.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
        same.then_some(held.user.as_str())
    }

    /// The tokens in force (only `user`'s when given), by id, without their secrets.
    pub fn tokens(&self, user: Option<&str>) -> Vec<TokenView> {
        self.tokens
            .iter()
            .filter(|(_, t)| user.is_none_or(|u| u == t.user))
            .map(|(id, t)| TokenView {
                token_id: id.clone(),
                user: t.user.clone(),
                name: t.name.clone(),
                issued_by: t.issued_by.clone(),
                issued_at: t.issued_at,
            })
            .collect()
    }

    /// Whether anyone holds `admin`.
    pub fn has_admin(&self) -> bool {
        self.admins() > 0
    }

    /// How many users hold `admin`.
    fn admins(&self) -> usize {
        self.grants
            .values()
            .filter(|roles| roles.contains_key(&Role::Admin))
            .count()
    }

    fn grant(
        &self,
        user: String,
        role: &str,
        reason: String,
        actor: String,
        at: DateTime<Utc>,
    ) -> Result<AccessEvent, AccessError> {
        let role = validate(&user, role, &reason)?;
        if let Some(held) = self.grants.get(&user).and_then(|roles| roles.get(&role)) {
            return Err(AccessError::AlreadyHeld {
                user,
                role,
                granted_by: held.granted_by.clone(),
            });
        }
        Ok(AccessEvent::RoleGranted(RoleGranted {
            user,
            role,
            reason,
            granted_by: actor,
            granted_at: at,
        }))
    }

    fn revoke(
        &self,
        user: String,
        role: &str,
        reason: String,
        actor: String,
        at: DateTime<Utc>,
    ) -> Result<AccessEvent, AccessError> {
        let role = validate(&user, role, &reason)?;
        if !self.holds(&user, role) {
            return Err(AccessError::NotHeld { user, role });
        }
        if role == Role::Admin && self.admins() == 1 {
            return Err(AccessError::LastAdmin(user));
        }
        Ok(AccessEvent::RoleRevoked(RoleRevoked {
            user,
            role,
            reason,
            revoked_by: actor,
            revoked_at: at,
        }))
    }
}

fn invalid(field: &str, message: String) -> AccessError {
    AccessError::InvalidField(FieldError {
        field: format!("command.{field}"),
        message,
    })
}

/// A user name as the server authenticates it.
fn validate_user(user: &str) -> Result<(), AccessError> {
    if user.is_empty() || user.chars().count() > MAX_USER_LEN {
        return Err(invalid(
            "user",
            format!("must be 1 to {MAX_USER_LEN} characters"),
        ));
    }
    if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "user",
            "must not contain spaces or control characters (it is a user name as the server \
             authenticates it)"
                .into(),
        ));
    }
    Ok(())
}

/// The role named `role`, once `user`, `role` and `reason` pass their rules.
fn validate(user: &str, role: &str, reason: &str) -> Result<Role, AccessError> {
    validate_user(user)?;
    if reason.chars().count() > MAX_REASON_LEN {
        return Err(invalid(
            "reason",
            format!("must be at most {MAX_REASON_LEN} characters"),
        ));
    }
    match Role::grantable(role) {
        Some(role) => Ok(role),
        None if role == Role::Internal.as_str() => Err(invalid(
            "role",
            "`internal` is Gatehouse's own role and cannot be granted".into(),
        )),
        None => Err(invalid(
            "role",
            format!(
                "unknown role `{role}`; the roles are {}",
                Role::grantable_names()
            ),
        )),
    }
}

impl Aggregate for Access {
    const TYPE: &'static str = AGGREGATE;
    type Command = AccessCommand;
    type Event = AccessEvent;
    type Error = AccessError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            AccessCommand::Grant {
                user,
                role,
                reason,
                actor,
                at,
            } => self.grant(user, &role, reason, actor, at)?,
            AccessCommand::Revoke {
                user,
                role,
                reason,
                actor,
                at,
            } => self.revoke(user, &role, reason, actor, at)?,
            AccessCommand::IssueToken {
                token_id,
                user,
                name,
                secret_sha256,
                actor,
                at,
            } => {
                validate_user(&user)?;
                if name.trim().is_empty() || name.chars().count() > MAX_TOKEN_NAME_LEN {
                    return Err(invalid(
                        "name",
                        format!("must be 1 to {MAX_TOKEN_NAME_LEN} characters"),
                    ));
                }
                AccessEvent::TokenIssued(TokenIssued {
                    token_id,
                    user,
                    name,
                    secret_sha256,
                    issued_by: actor,
                    issued_at: at,
                })
            }
            AccessCommand::RevokeToken {
                token_id,
                reason,
                actor,
                at,
            } => {
                if !self.tokens.contains_key(&token_id) {
                    return Err(AccessError::UnknownToken(token_id));
                }
                if reason.chars().count() > MAX_REASON_LEN {
                    return Err(invalid(
                        "reason",
                        format!("must be at most {MAX_REASON_LEN} characters"),
                    ));
                }
                AccessEvent::TokenRevoked(TokenRevoked {
                    token_id,
                    reason,
                    revoked_by: actor,
                    revoked_at: at,
                })
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AccessEvent::RoleGranted(e) => {
                self.grants.entry(e.user).or_default().insert(
                    e.role,
                    RoleGrant {
                        role: e.role,
                        granted_by: e.granted_by,
                        granted_at: e.granted_at,
                        reason: e.reason,
                    },
                );
            }
            AccessEvent::TokenIssued(e) => {
                self.tokens.insert(
                    e.token_id,
                    Token {
                        user: e.user,
                        name: e.name,
                        secret_sha256: e.secret_sha256,
                        issued_by: e.issued_by,
                        issued_at: e.issued_at,
                    },
                );
            }
            AccessEvent::TokenRevoked(e) => {
                self.tokens.remove(&e.token_id);
            }
            AccessEvent::RoleRevoked(e) => {
                if let Some(roles) = self.grants.get_mut(&e.user) {
                    roles.remove(&e.role);
                    if roles.is_empty() {
                        self.grants.remove(&e.user);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type AccessTest = TestFramework<Access>;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn grant(user: &str, role: &str) -> AccessCommand {
        AccessCommand::Grant {
            user: user.into(),
            role: role.into(),
            reason: "because".into(),
            actor: "alice".into(),
            at: at(),
        }
    }

    fn revoke(user: &str, role: &str) -> AccessCommand {
        AccessCommand::Revoke {
            user: user.into(),
            role: role.into(),
            reason: String::new(),
            actor: "alice".into(),
            at: at(),
        }
    }

    fn granted(user: &str, role: Role) -> AccessEvent {
        AccessEvent::RoleGranted(RoleGranted {
            user: user.into(),
            role,
            reason: "because".into(),
            granted_by: "alice".into(),
            granted_at: at(),
        })
    }

    fn revoked(user: &str, role: Role) -> AccessEvent {
        AccessEvent::RoleRevoked(RoleRevoked {
            user: user.into(),
            role,
            reason: String::new(),
            revoked_by: "alice".into(),
            revoked_at: at(),
        })
    }

    fn field_of(error: AccessError) -> String {
        match error {
            AccessError::InvalidField(f) => f.field,
            other => panic!("not a field error: {other}"),
        }
    }

    #[tokio::test]
    async fn a_grant_records_who_gave_which_role_to_whom() {
        AccessTest::with(())
            .given_no_previous_events()
            .when_async(grant("bob", "approver"))
            .await
            .then_expect_events(vec![granted("bob", Role::Approver)]);
    }

    #[tokio::test]
    async fn a_role_held_is_not_granted_twice() {
        AccessTest::with(())
            .given(vec![granted("bob", Role::Viewer)])
            .when_async(grant("bob", "viewer"))
            .await
            .then_expect_error(AccessError::AlreadyHeld {
                user: "bob".into(),
                role: Role::Viewer,
                granted_by: "alice".into(),
            });
    }

    #[tokio::test]
    async fn a_revocation_removes_the_role() {
        AccessTest::with(())
            .given(vec![granted("bob", Role::Viewer)])
            .when_async(revoke("bob", "viewer"))
            .await
            .then_expect_events(vec![revoked("bob", Role::Viewer)]);
    }

    #[tokio::test]
    async fn a_role_not_held_cannot_be_revoked() {
        AccessTest::with(())
            .given(vec![
                granted("bob", Role::Viewer),
                revoked("bob", Role::Viewer),
            ])
            .when_async(revoke("bob", "viewer"))
            .await
            .then_expect_error(AccessError::NotHeld {
                user: "bob".into(),
                role: Role::Viewer,
            });
    }

    #[tokio::test]
    async fn the_last_admin_keeps_admin_but_one_of_two_may_go() {
        AccessTest::with(())
            .given(vec![granted("alice", Role::Admin)])
            .when_async(revoke("alice", "admin"))
            .await
            .then_expect_error(AccessError::LastAdmin("alice".into()));
        AccessTest::with(())
            .given(vec![
                granted("alice", Role::Admin),
                granted("carol", Role::Admin),
            ])
            .when_async(revoke("alice", "admin"))
            .await
            .then_expect_events(vec![revoked("alice", Role::Admin)]);
    }

    #[test]
    fn unknown_internal_and_malformed_are_refused_naming_the_field() {
        let access = Access::default();
        let refuse = |user: &str, role: &str, reason: &str| {
            access
                .grant(user.into(), role, reason.into(), "alice".into(), at())
                .unwrap_err()
        };
        let unknown = refuse("bob", "root", "");
        assert!(unknown.to_string().contains("viewer, author"), "{unknown}");
        assert_eq!(field_of(unknown), "command.role");
        let internal = refuse("bob", "internal", "");
        assert!(internal.to_string().contains("cannot be granted"));
        assert_eq!(field_of(internal), "command.role");
        assert_eq!(field_of(refuse("", "viewer", "")), "command.user");
        assert_eq!(field_of(refuse("bob smith", "viewer", "")), "command.user");
        let long = "x".repeat(MAX_USER_LEN + 1);
        assert_eq!(field_of(refuse(&long, "viewer", "")), "command.user");
        let essay = "x".repeat(MAX_REASON_LEN + 1);
        assert_eq!(field_of(refuse("bob", "viewer", &essay)), "command.reason");
    }

    fn issue(token_id: &str, secret: &str) -> AccessCommand {
        AccessCommand::IssueToken {
            token_id: token_id.into(),
            user: "carol".into(),
            name: "laptop".into(),
            secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            actor: "alice".into(),
            at: at(),
        }
    }

    fn issued(token_id: &str, secret: &str) -> AccessEvent {
        AccessEvent::TokenIssued(TokenIssued {
            token_id: token_id.into(),
            user: "carol".into(),
            name: "laptop".into(),
            secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            issued_by: "alice".into(),
            issued_at: at(),
        })
    }

    #[tokio::test]
    async fn a_token_is_issued_with_the_hash_of_its_secret_and_revoked_once() {
        AccessTest::with(())
            .given_no_previous_events()
            .when_async(issue("t1", "s3cret"))
            .await
            .then_expect_events(vec![issued("t1", "s3cret")]);
        let revoke = || AccessCommand::RevokeToken {
            token_id: "t1".into(),
            reason: "lost".into(),
            actor: "alice".into(),
            at: at(),
        };
        AccessTest::with(())
            .given(vec![issued("t1", "s3cret")])
            .when_async(revoke())
            .await
            .then_expect_events(vec![AccessEvent::TokenRevoked(TokenRevoked {
                token_id: "t1".into(),
                reason: "lost".into(),
                revoked_by: "alice".into(),
                revoked_at: at(),
            })]);
        AccessTest::with(())
            .given_no_previous_events()
            .when_async(revoke())
            .await
            .then_expect_error(AccessError::UnknownToken("t1".into()));
    }

    #[test]
    fn a_token_authenticates_its_user_only_with_its_secret_and_only_while_in_force() {
        let mut access = Access::default();
        access.apply(issued("t1", "s3cret"));
        assert_eq!(access.token_user("gh_t1.s3cret"), Some("carol"));
        for wrong in ["gh_t1.s3creT", "gh_t2.s3cret", "t1.s3cret", "gh_t1", ""] {
            assert_eq!(access.token_user(wrong), None, "{wrong}");
        }
        access.apply(AccessEvent::TokenRevoked(TokenRevoked {
            token_id: "t1".into(),
            reason: String::new(),
            revoked_by: "alice".into(),
            revoked_at: at(),
        }));
        assert_eq!(access.token_user("gh_t1.s3cret"), None);
        assert!(access.tokens(None).is_empty());
    }

    #[test]
    fn the_state_lists_the_grants_in_force_by_user() {
        let mut access = Access::default();
        for event in [
            granted("bob", Role::Viewer),
            granted("alice", Role::Admin),
            granted("bob", Role::Author),
            revoked("bob", Role::Viewer),
        ] {
            access.apply(event);
        }
        assert!(access.holds("bob", Role::Author) && !access.holds("bob", Role::Viewer));
        let roles = access.roles(None);
        assert_eq!(
            roles.iter().map(|u| u.user.as_str()).collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        assert_eq!(access.roles(Some("bob"))[0].roles[0].role, Role::Author);
        access.apply(revoked("bob", Role::Author));
        assert!(access.roles(Some("bob")).is_empty());
    }
}
