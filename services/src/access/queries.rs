//! Access queries: the grants in force.

use gatehouse_events::access::{ListRoles, ListTokens, TokenView, UserRoles};
use gatehouse_events::envelope::Rejection;

use crate::api::App;

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
