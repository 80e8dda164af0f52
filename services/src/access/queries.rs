//! Access queries: the grants in force.

use gatehouse_events::access::{Caller, ListRoles, ListTokens, TokenView, UserRoles, WhoAmI};
use gatehouse_events::envelope::Rejection;

use crate::api::{App, Identity};

/// `access.roles`: every user's roles (only `user`'s when given), as the role check sees them.
pub async fn roles(app: &App, query: ListRoles) -> Result<Vec<UserRoles>, Rejection> {
    let grants = app.grants.now(&app.pg).await?;
    Ok(grants.access.roles(query.user.as_deref()))
}

/// `access.tokens`: the bearer tokens in force (only `user`'s when given), without secrets.
pub async fn tokens(app: &App, query: ListTokens) -> Result<Vec<TokenView>, Rejection> {
    let grants = app.grants.now(&app.pg).await?;
    Ok(grants.access.tokens(query.user.as_deref()))
}

/// `access.whoami`: the caller and the roles they hold now (a front end offers only what they
/// allow).
pub async fn whoami(app: &App, caller: &Identity, _query: WhoAmI) -> Result<Caller, Rejection> {
    let Identity::User(user) = caller else {
        return Ok(Caller {
            user: None,
            internal: true,
            roles: Vec::new(),
        });
    };
    let grants = app.grants.now(&app.pg).await?;
    let roles = grants
        .access
        .roles(Some(&user.user))
        .into_iter()
        .flat_map(|u| u.roles)
        .collect();
    Ok(Caller {
        user: Some(user.user.clone()),
        internal: false,
        roles,
    })
}
