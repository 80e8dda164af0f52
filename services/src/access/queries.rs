//! Access queries: the grants in force.

use gatehouse_events::access::{ListRoles, UserRoles};
use gatehouse_events::envelope::Rejection;

use crate::api::App;

/// `access.roles`: every user's roles (only `user`'s when given), as the role check sees them.
pub async fn roles(app: &App, query: ListRoles) -> Result<Vec<UserRoles>, Rejection> {
    let grants = app.grants.now(&app.pg).await?;
    Ok(grants.access.roles(query.user.as_deref()))
}
