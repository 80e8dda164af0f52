//! Who may call what: every [`super::Operation`] declares the [`Role`] it needs, and
//! [`check`] runs in [`super::Operation::call`] before anything is parsed or persisted; a
//! refusal is [`record`]ed in `denials` (`audit.denials`) and answered `forbidden`.
//!
//! - [`Identity::Internal`] (Gatehouse's own account: the workers, the tests, operators on the
//!   server) may call every operation; it alone may call the [`Role::Internal`] ones (the
//!   workers' `policy.complete_run`, `policy.fail_run`).
//! - An [`Identity::User`] needs a grant of the operation's role; roles do not imply one
//!   another (an `admin` who also promotes holds `approver` too).
//!
//! Grants are, for now, a configured table ([`Grants::parse`] of `GATEHOUSE_ROLES`); the
//! event-sourced `access` context (issue 9, part 2) will replace it. A delegate's own grants
//! are checked, not those of the person it acts for.

use std::collections::HashMap;
use std::fmt;

use deadpool_postgres::Pool;
use gatehouse_events::envelope::{Rejection, RejectionCode};

use super::Identity;

/// A role an operation needs. The names are a public contract (`docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Queries.
    Viewer,
    /// `policy.create`, `policy.draft`, `policy.restore`.
    Author,
    /// `policy.prepare`, `policy.cancel_run`, `policy.resume_run`.
    Operator,
    /// `policy.promote`.
    Approver,
    /// Other services: catalog publishing and outcome reports (no operation yet).
    Service,
    /// Grants of roles.
    Admin,
    /// Gatehouse's own connections only; no grant gives it.
    Internal,
}

impl Role {
    /// The roles a user can be granted.
    pub const GRANTABLE: [Role; 6] = [
        Role::Viewer,
        Role::Author,
        Role::Operator,
        Role::Approver,
        Role::Service,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Author => "author",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Service => "service",
            Role::Admin => "admin",
            Role::Internal => "internal",
        }
    }

    /// A grantable role by name.
    pub fn grantable(name: &str) -> Option<Role> {
        Role::GRANTABLE.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The roles granted to each user of a client account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(HashMap<String, Vec<Role>>);

/// The grants of the development users `nats.conf` ships. Never a default: `scripts/lib.sh`
/// asks for them (`GATEHOUSE_ROLES=development`) when it runs its own nats-server, and the test
/// harness sets them; a deployment's users have no role until granted one.
pub const DEVELOPMENT_GRANTS: &str = "alice=viewer+author+operator+approver+admin,bob=viewer,\
                                      console=viewer+author+operator+approver,svc=service";

/// The value of `GATEHOUSE_ROLES` that stands for [`DEVELOPMENT_GRANTS`].
pub const DEVELOPMENT: &str = "development";

impl Grants {
    /// [`DEVELOPMENT_GRANTS`].
    pub fn development() -> Self {
        Grants::parse(DEVELOPMENT_GRANTS)
            .expect("the development grants parse (a unit test checks)")
    }

    /// `alice=viewer+author,bob=viewer`: comma-separated `user=role+role`; an unknown role or
    /// an entry without `=` is an error naming it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.trim() == DEVELOPMENT {
            return Ok(Grants::development());
        }
        let mut grants = Grants::default();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (user, roles) = entry
                .split_once('=')
                .ok_or_else(|| format!("`{entry}` is not user=role+role"))?;
            for name in roles.split('+').map(str::trim).filter(|r| !r.is_empty()) {
                let role = Role::grantable(name).ok_or_else(|| format!("unknown role `{name}`"))?;
                grants.grant(user.trim(), role);
            }
        }
        Ok(grants)
    }

    /// Gives `user` the `role` (once).
    pub fn grant(&mut self, user: &str, role: Role) {
        let roles = self.0.entry(user.to_owned()).or_default();
        if !roles.contains(&role) {
            roles.push(role);
        }
    }

    /// Whether `user` holds `role`.
    pub fn holds(&self, user: &str, role: Role) -> bool {
        self.0.get(user).is_some_and(|roles| roles.contains(&role))
    }
}

/// A request refused for lack of a role: what [`record`] stores and the caller is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub user: String,
    pub account: String,
    pub operation: &'static str,
    pub missing: Role,
}

impl Denied {
    /// The `forbidden` answer, naming the operation and the missing role.
    pub fn rejection(&self) -> Rejection {
        let Denied {
            user,
            operation,
            missing,
            ..
        } = self;
        let message = match missing {
            Role::Internal => format!(
                "{operation} needs the role `internal`: only Gatehouse's own connections (its \
                 workers) send it, and `{user}` is a client"
            ),
            _ => format!(
                "{operation} needs the role `{missing}`, which `{user}` does not hold; an \
                 administrator grants it (GATEHOUSE_ROLES, docs/protocol.md, Roles)"
            ),
        };
        Rejection::new(RejectionCode::Forbidden, message)
    }
}

/// `Ok` when `caller` may call `operation`, which needs `role`.
pub fn check(
    grants: &Grants,
    caller: &Identity,
    operation: &'static str,
    role: Role,
) -> Result<(), Denied> {
    let user = match caller {
        Identity::Internal => return Ok(()),
        Identity::User(user) => user,
    };
    if role != Role::Internal && grants.holds(&user.user, role) {
        return Ok(());
    }
    Err(Denied {
        user: user.user.clone(),
        account: user.account.clone(),
        operation,
        missing: role,
    })
}

/// Records `denied` in `denials` (its own statement: nothing else of the request is written).
/// A failure is logged and does not change the answer, which stays `forbidden`.
pub async fn record(pg: &Pool, denied: &Denied) {
    tracing::info!(user = %denied.user, operation = denied.operation,
        missing_role = %denied.missing, "request denied");
    let insert = async {
        let client = pg.get().await.map_err(|e| e.to_string())?;
        client
            .execute(
                "INSERT INTO denials (\"user\", account, operation, missing_role) \
                 VALUES ($1, $2, $3, $4)",
                &[
                    &denied.user,
                    &denied.account,
                    &denied.operation,
                    &denied.missing.as_str(),
                ],
            )
            .await
            .map_err(|e| e.to_string())
    };
    if let Err(e) = insert.await {
        tracing::error!(error.message = %e, "cannot record a denial");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::identity::User;

    fn user(name: &str) -> Identity {
        Identity::User(User {
            user: name.into(),
            account: "CLIENTS".into(),
            delegate: false,
        })
    }

    fn grants() -> Grants {
        Grants::parse("bob=viewer, carol = author+operator").unwrap()
    }

    #[test]
    fn a_user_holding_the_role_may_call() {
        assert!(check(&grants(), &user("bob"), "policy.get", Role::Viewer).is_ok());
        assert!(check(&grants(), &user("carol"), "policy.prepare", Role::Operator).is_ok());
    }

    #[test]
    fn a_user_without_the_role_is_forbidden_and_told_which_role() {
        let r = check(&grants(), &user("bob"), "policy.promote", Role::Approver)
            .unwrap_err()
            .rejection();
        assert_eq!(r.code, RejectionCode::Forbidden);
        assert!(r.message.contains("`approver`"), "{}", r.message);
        assert!(r.message.contains("policy.promote"), "{}", r.message);
    }

    #[test]
    fn an_unknown_user_holds_no_role() {
        let denied = check(&grants(), &user("mallory"), "policy.get", Role::Viewer).unwrap_err();
        assert_eq!(
            (denied.user.as_str(), denied.missing),
            ("mallory", Role::Viewer)
        );
        assert_eq!(denied.rejection().code, RejectionCode::Forbidden);
    }

    #[test]
    fn internal_operations_are_gatehouses_own_whatever_a_user_holds() {
        let all = Grants::parse("root=viewer+author+operator+approver+service+admin").unwrap();
        let denied = check(&all, &user("root"), "policy.fail_run", Role::Internal).unwrap_err();
        assert_eq!(denied.missing, Role::Internal);
        assert!(check(&all, &Identity::Internal, "policy.fail_run", Role::Internal).is_ok());
    }

    #[test]
    fn gatehouse_itself_may_call_everything() {
        for role in Role::GRANTABLE {
            assert!(check(&Grants::default(), &Identity::Internal, "x.y", role).is_ok());
        }
    }

    #[test]
    fn the_internal_role_cannot_be_granted_nor_an_unknown_one() {
        assert!(Grants::parse("bob=internal").is_err());
        assert!(Grants::parse("bob=root").is_err());
        assert!(Grants::parse("bob").is_err());
    }

    #[test]
    fn the_development_grants_parse() {
        let g = Grants::parse(DEVELOPMENT_GRANTS).unwrap();
        assert_eq!(Grants::parse(DEVELOPMENT).unwrap(), g);
        assert!(g.holds("alice", Role::Admin));
        assert!(g.holds("svc", Role::Service) && !g.holds("svc", Role::Viewer));
    }
}
