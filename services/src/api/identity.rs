//! Who sends a request: resolved once per request by the adapter, passed into
//! [`super::Operation::call`], and checked against a command envelope's `actor`.
//!
//! On NATS the caller is the user nats-server names in the `Nats-Request-Info` header it stamps
//! on requests crossing the `CLIENTS` → `GATEHOUSE` service import (`share: true`); the server
//! replaces a header of that name set by the client. A request without the header comes from a
//! connection inside the `GATEHOUSE` account, i.e. from Gatehouse itself (the workers) or an
//! operator: it is [`Identity::Internal`]. The HTTP adapter ([`crate::http`]) builds an [`Identity::User`]
//! from a bearer token the same way.
//!
//! Delegates (users holding the `delegate` role, e.g. the HTTP adapter's NATS user, which
//! authenticates people itself) may name another person as the `actor`; their events record
//! both. [`super::Operation::call`] sets [`User::delegate`] from the grants in force.

use gatehouse_events::envelope::{Rejection, RejectionCode};
use serde::Deserialize;

/// The NATS header nats-server stamps on a request that crossed a shared service import.
pub const REQUEST_INFO_HEADER: &str = "Nats-Request-Info";

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A connection of Gatehouse's own account (the workers, operators): trusted to name any
    /// actor, recorded as the envelope says.
    Internal,
    /// An authenticated user of a client account.
    User(User),
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name (in operator/JWT mode, the name or public key the server reports).
    pub user: String,
    /// The account the user connected to, e.g. `CLIENTS`.
    pub account: String,
    /// May act for another person (see the module doc).
    pub delegate: bool,
}

/// The actor a command is recorded as, and the delegate that sent it for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub actor: String,
    pub delegated_by: Option<String>,
}

/// The part of `Nats-Request-Info` Gatehouse reads; the rest (`rtt`, `server`, `start` ...)
/// is ignored.
#[derive(Debug, Deserialize)]
struct RequestInfo {
    acc: String,
    #[serde(default)]
    user: Option<String>,
}

impl Identity {
    /// The identity of a NATS request from the values of its `Nats-Request-Info` header (all
    /// of them, exact header name): none is [`Identity::Internal`]; one naming a user is that
    /// user (no delegate until the grants say so); anything else is `unauthenticated`.
    pub fn from_request_info(values: &[&str]) -> Result<Self, Rejection> {
        let raw = match values {
            [] => return Ok(Identity::Internal),
            [raw] => raw,
            _ => {
                return Err(unauthenticated(
                    "the request carries Nats-Request-Info twice",
                ))
            }
        };
        let info: RequestInfo = serde_json::from_str(raw)
            .map_err(|_| unauthenticated("the request's Nats-Request-Info is not readable"))?;
        let user = info.user.filter(|u| !u.is_empty()).ok_or_else(|| {
            unauthenticated(format!(
                "the request from account {} names no user: its import of Gatehouse's subjects \
                 lacks `share: true`",
                info.acc
            ))
        })?;
        Ok(Identity::User(User {
            delegate: false,
            user,
            account: info.acc,
        }))
    }

    /// Who a command whose envelope names `claimed` is recorded as; `actor_mismatch` when a
    /// user who is no delegate claims to be someone else.
    pub fn actor(&self, claimed: &str) -> Result<Actor, Rejection> {
        let as_claimed = |delegated_by| Actor {
            actor: claimed.to_owned(),
            delegated_by,
        };
        match self {
            Identity::Internal => Ok(as_claimed(None)),
            Identity::User(user) if user.user == claimed => Ok(as_claimed(None)),
            Identity::User(user) if user.delegate => Ok(as_claimed(Some(user.user.clone()))),
            Identity::User(user) => Err(Rejection::new(
                RejectionCode::ActorMismatch,
                format!(
                    "you are authenticated as `{}`, not `{claimed}`; send actor `{}` (only a \
                     delegate may act for someone else)",
                    user.user, user.user
                ),
            )
            .with_field("actor")),
        }
    }
}

fn unauthenticated(message: impl Into<String>) -> Rejection {
    Rejection::new(RejectionCode::Unauthenticated, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = r#"{"start":"2026-12-05T19:09:05.009119029Z","host":"127.0.0.1","id":10,"acc":"CLIENTS","user":"alice","name":"cli-alice","rtt":114680,"server":"NCVV","kind":"Client","client_type":"nats"}"#;

    fn resolve(values: &[&str]) -> Result<Identity, Rejection> {
        Identity::from_request_info(values)
    }

    fn user(name: &str, delegate: bool) -> Identity {
        Identity::User(User {
            user: name.into(),
            account: "CLIENTS".into(),
            delegate,
        })
    }

    #[test]
    fn a_request_without_request_info_is_gatehouses_own() {
        assert_eq!(resolve(&[]).unwrap(), Identity::Internal);
    }

    #[test]
    fn the_stamped_user_and_account_are_the_identity() {
        assert_eq!(resolve(&[ALICE]).unwrap(), user("alice", false));
    }

    #[test]
    fn request_info_without_a_user_is_unauthenticated() {
        let r = resolve(&[r#"{"acc":"CLIENTS","rtt":147429}"#]).unwrap_err();
        assert_eq!(r.code, RejectionCode::Unauthenticated);
        assert!(r.message.contains("share: true"), "{}", r.message);
    }

    #[test]
    fn request_info_twice_or_unreadable_is_unauthenticated() {
        for values in [vec![ALICE, ALICE], vec!["x"]] {
            let r = resolve(&values).unwrap_err();
            assert_eq!(r.code, RejectionCode::Unauthenticated);
        }
    }

    #[test]
    fn a_user_is_recorded_as_themselves() {
        let actor = user("alice", false).actor("alice").unwrap();
        assert_eq!((actor.actor.as_str(), actor.delegated_by), ("alice", None));
    }

    #[test]
    fn a_user_claiming_another_actor_is_an_actor_mismatch_naming_the_field() {
        let r = user("alice", false).actor("bob").unwrap_err();
        assert_eq!(r.code, RejectionCode::ActorMismatch);
        assert_eq!(r.field.as_deref(), Some("actor"));
    }

    #[test]
    fn a_delegate_acting_for_someone_is_recorded_with_both() {
        let actor = user("console", true).actor("carol").unwrap();
        assert_eq!(actor.actor, "carol");
        assert_eq!(actor.delegated_by.as_deref(), Some("console"));
    }

    #[test]
    fn gatehouses_own_requests_are_recorded_as_they_claim() {
        let actor = Identity::Internal.actor("gatehouse-worker").unwrap();
        assert_eq!(actor.actor, "gatehouse-worker");
        assert_eq!(actor.delegated_by, None);
    }
}
