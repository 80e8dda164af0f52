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
//! - A user holding [`Role::Delegate`] (the HTTP adapter, the console) may name another person
//!   as a command's actor; the person's roles are checked then, not the delegate's, and the
//!   denial or the events record both.
//!
//! The grants are the `access` aggregate's ([`crate::access`]), read from the event store for
//! each request ([`crate::access::grants::Current`]); [`Grants`] are those the environment
//! seeds at start-up.

use std::collections::BTreeMap;

use deadpool_postgres::Pool;
use gatehouse_events::envelope::{Rejection, RejectionCode};

pub use gatehouse_events::access::Role;

use super::identity::User;
use super::Identity;
use crate::access::Access;

/// Grants named in configuration (`GATEHOUSE_ROLES`), seeded into the `access` aggregate at
/// start-up ([`crate::access::seed`]): user → roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(BTreeMap<String, Vec<Role>>);

/// The grants of the development users `nats.conf` ships. Never a default: `scripts/lib.sh`
/// asks for them (`GATEHOUSE_ROLES=development`) when it runs its own nats-server, and the test
/// harness sets them; a deployment's users have no role until granted one.
pub const DEVELOPMENT_GRANTS: &str =
    "alice=viewer+author+operator+approver+service+admin,bob=viewer,\
                                      console=viewer+delegate,svc=service";

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
                let role = Role::grantable(name).ok_or_else(|| {
                    format!(
                        "unknown role `{name}` (the roles are {})",
                        Role::grantable_names()
                    )
                })?;
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

    /// Every `(user, role)`, users in name order.
    pub fn iter(&self) -> impl Iterator<Item = (String, Role)> + '_ {
        self.0
            .iter()
            .flat_map(|(user, roles)| roles.iter().map(move |role| (user.clone(), *role)))
    }

    /// Whether `user` is named with `role`.
    pub fn holds(&self, user: &str, role: Role) -> bool {
        self.0.get(user).is_some_and(|roles| roles.contains(&role))
    }
}

/// A request refused for lack of a role: what [`record`] stores and the caller is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// Who lacked the role: the authenticated user, or the person a delegate acted for.
    pub user: String,
    pub account: String,
    /// The delegate that sent the request for `user`, if any.
    pub delegated_by: Option<String>,
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
                 admin grants it (`gatehouse access grant {user} {missing}`)"
            ),
        };
        Rejection::new(RejectionCode::Forbidden, message)
    }
}

/// `Ok` when `caller` may call `operation`, which needs `role`, by the grants of `access`.
/// A delegate's command naming another person as its actor (`claimed`) is checked against that
/// person's roles, not the delegate's: the delegate only vouches for who the person is.
pub fn check(
    access: &Access,
    caller: &Identity,
    claimed: Option<&str>,
    operation: &'static str,
    role: Role,
) -> Result<(), Denied> {
    let user = match caller {
        Identity::Internal => return Ok(()),
        Identity::User(user) => user,
    };
    let (subject, delegated_by) = match claimed {
        Some(person) if user.delegate && person != user.user => (person, Some(user.user.clone())),
        _ => (user.user.as_str(), None),
    };
    if role == Role::Authenticated || (role != Role::Internal && access.holds(subject, role)) {
        return Ok(());
    }
    Err(Denied {
        user: subject.to_owned(),
        account: user.account.clone(),
        delegated_by,
        operation,
        missing: role,
    })
}

/// `user` with `delegate` set as `access` says.
pub fn with_delegation(access: &Access, user: &User) -> User {
    User {
        delegate: access.holds(&user.user, Role::Delegate),
        ..user.clone()
    }
}

/// Records `denied` in `denials` (its own statement: nothing else of the request is written).
/// A failure is logged and does not change the answer, which stays `forbidden`.
pub async fn record(pg: &Pool, denied: &Denied) {
    tracing::info!(user = %denied.user, delegated_by = ?denied.delegated_by,
        operation = denied.operation, missing_role = %denied.missing, "request denied");
    let insert = async {
        let client = pg.get().await.map_err(|e| e.to_string())?;
        client
            .execute(
                "INSERT INTO denials (\"user\", account, delegated_by, operation, missing_role) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &denied.user,
                    &denied.account,
                    &denied.delegated_by,
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
    use cqrs_es::Aggregate;
    use gatehouse_events::access::{AccessEvent, RoleGranted};

    fn user(name: &str, delegate: bool) -> Identity {
        Identity::User(User {
            user: name.into(),
            account: "CLIENTS".into(),
            delegate,
        })
    }

    /// bob: viewer; carol: author + operator; console: delegate.
    fn access() -> Access {
        let mut access = Access::default();
        for (name, role) in [
            ("bob", Role::Viewer),
            ("carol", Role::Author),
            ("carol", Role::Operator),
            ("console", Role::Delegate),
        ] {
            access.apply(AccessEvent::RoleGranted(RoleGranted {
                user: name.into(),
                role,
                reason: String::new(),
                granted_by: "gatehouse".into(),
                granted_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            }));
        }
        access
    }

    #[test]
    fn a_user_holding_the_role_may_call() {
        let bob = user("bob", false);
        assert!(check(&access(), &bob, None, "policy.get", Role::Viewer).is_ok());
        let carol = user("carol", false);
        assert!(check(&access(), &carol, None, "policy.prepare", Role::Operator).is_ok());
    }

    #[test]
    fn every_authenticated_user_may_call_an_operation_for_anyone_even_without_a_role() {
        let mallory = user("mallory", false);
        assert!(check(
            &access(),
            &mallory,
            None,
            "access.whoami",
            Role::Authenticated
        )
        .is_ok());
        assert!(
            Role::grantable("authenticated").is_none(),
            "no grant gives it"
        );
    }

    #[test]
    fn a_user_without_the_role_is_forbidden_and_told_which_role() {
        let r = check(
            &access(),
            &user("bob", false),
            None,
            "policy.promote",
            Role::Approver,
        )
        .unwrap_err()
        .rejection();
        assert_eq!(r.code, RejectionCode::Forbidden);
        assert!(r.message.contains("`approver`"), "{}", r.message);
        assert!(r.message.contains("policy.promote"), "{}", r.message);
        assert!(r.message.contains("gatehouse access grant bob approver"));
    }

    #[test]
    fn an_unknown_user_holds_no_role() {
        let denied = check(
            &access(),
            &user("mallory", false),
            None,
            "policy.get",
            Role::Viewer,
        )
        .unwrap_err();
        assert_eq!(
            (denied.user.as_str(), denied.missing),
            ("mallory", Role::Viewer)
        );
    }

    #[test]
    fn a_delegates_command_is_checked_against_the_person_it_names() {
        let console = user("console", true);
        // carol may prepare; the delegate itself may not, and needs not.
        assert!(check(
            &access(),
            &console,
            Some("carol"),
            "policy.prepare",
            Role::Operator
        )
        .is_ok());
        let denied = check(
            &access(),
            &console,
            Some("bob"),
            "policy.prepare",
            Role::Operator,
        )
        .unwrap_err();
        assert_eq!(denied.user, "bob");
        assert_eq!(denied.delegated_by.as_deref(), Some("console"));
        // Acting as itself, the delegate's own roles count.
        assert!(check(
            &access(),
            &console,
            Some("console"),
            "policy.get",
            Role::Viewer
        )
        .is_err());
    }

    #[test]
    fn only_a_delegate_speaks_for_someone_else() {
        // bob is no delegate: the claimed actor does not change whose roles count (the
        // envelope check answers actor_mismatch later).
        let denied = check(
            &access(),
            &user("bob", false),
            Some("carol"),
            "policy.draft",
            Role::Author,
        )
        .unwrap_err();
        assert_eq!((denied.user.as_str(), denied.delegated_by), ("bob", None));
    }

    #[test]
    fn delegation_comes_from_the_delegate_role() {
        let User { delegate, .. } = with_delegation(
            &access(),
            &User {
                user: "console".into(),
                account: "CLIENTS".into(),
                delegate: false,
            },
        );
        assert!(delegate);
        let bob = User {
            user: "bob".into(),
            account: "CLIENTS".into(),
            delegate: true,
        };
        assert!(!with_delegation(&access(), &bob).delegate);
    }

    #[test]
    fn internal_operations_are_gatehouses_own_whatever_a_user_holds() {
        let mut all = Access::default();
        for role in Role::GRANTABLE {
            all.apply(AccessEvent::RoleGranted(RoleGranted {
                user: "root".into(),
                role,
                reason: String::new(),
                granted_by: "gatehouse".into(),
                granted_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            }));
        }
        let denied = check(
            &all,
            &user("root", false),
            None,
            "policy.fail_run",
            Role::Internal,
        )
        .unwrap_err();
        assert_eq!(denied.missing, Role::Internal);
        assert!(check(
            &all,
            &Identity::Internal,
            None,
            "policy.fail_run",
            Role::Internal
        )
        .is_ok());
    }

    #[test]
    fn gatehouse_itself_may_call_everything() {
        for role in Role::GRANTABLE {
            assert!(check(&Access::default(), &Identity::Internal, None, "x.y", role).is_ok());
        }
    }

    #[test]
    fn the_internal_role_cannot_be_seeded_nor_an_unknown_one() {
        assert!(Grants::parse("bob=internal").is_err());
        assert!(Grants::parse("bob=root")
            .unwrap_err()
            .contains("viewer, author"));
        assert!(Grants::parse("bob").is_err());
    }

    #[test]
    fn the_development_grants_parse() {
        let g = Grants::parse(DEVELOPMENT_GRANTS).unwrap();
        assert_eq!(Grants::parse(DEVELOPMENT).unwrap(), g);
        assert!(g.holds("alice", Role::Admin));
        assert!(g.holds("console", Role::Delegate));
        assert!(g.holds("svc", Role::Service) && !g.holds("svc", Role::Viewer));
        assert_eq!(g.iter().filter(|(u, _)| u == "alice").count(), 6);
    }
}
