//! Access commands: execute on the access stream, map a refusal to its wire rejection; and the
//! grants seeded from the environment at start-up.

use std::time::Duration;

use chrono::Utc;
use gatehouse_events::access::{
    AccessEvent, GrantRole, IssueToken, IssuedToken, RevokeRole, RevokeToken, Role, GRANTS,
    TOKEN_PREFIX,
};
use gatehouse_events::envelope::{CommandAccepted, Rejection, RejectionCode};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{AccessCommand, AccessError};
use crate::access::Access;
use crate::api::request::{self, Parsed, INTERNAL_ACTOR};
use crate::api::{infrastructure_rejection, roles::Grants, App};
use crate::store::{CommandContext, CommandError, CommandTarget};

/// `access.grant`: `user` holds `role` from now on.
pub async fn grant(app: &App, parsed: Parsed<GrantRole>) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let cmd = AccessCommand::Grant {
        user: command.user,
        role: command.role,
        reason: command.reason,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, cmd).await
}

/// `access.revoke`: `user` no longer holds `role`.
pub async fn revoke(app: &App, parsed: Parsed<RevokeRole>) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let cmd = AccessCommand::Revoke {
        user: command.user,
        role: command.role,
        reason: command.reason,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, cmd).await
}

/// `access.issue_token`: a bearer token for a user of the HTTP API. Its secret is drawn here and
/// answered once; only its SHA-256 is recorded.
pub async fn issue_token(app: &App, parsed: Parsed<IssueToken>) -> Result<IssuedToken, Rejection> {
    let Parsed { context, command } = parsed;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    let token_id = hex::encode(id);
    let cmd = AccessCommand::IssueToken {
        token_id: token_id.clone(),
        user: command.user,
        name: command.name,
        secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    let accepted = execute(app, &context, cmd).await?;
    // A repeat answers the first issue's outcome, whose secret is gone.
    let (token_id, token) = if accepted.duplicate {
        (
            accepted.detail["token_id"].as_str().map(str::to_owned),
            None,
        )
    } else {
        let token = format!("{TOKEN_PREFIX}{token_id}.{secret}");
        (Some(token_id), Some(token))
    };
    Ok(IssuedToken {
        accepted,
        token_id,
        token,
    })
}

/// `access.revoke_token`: the token no longer authenticates anyone, from the next request on.
pub async fn revoke_token(
    app: &App,
    parsed: Parsed<RevokeToken>,
) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let cmd = AccessCommand::RevokeToken {
        token_id: command.token_id,
        reason: command.reason,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    execute(app, &context, cmd).await
}

async fn execute(
    app: &App,
    context: &CommandContext,
    cmd: AccessCommand,
) -> Result<CommandAccepted, Rejection> {
    app.access
        .execute(context, GRANTS, cmd)
        .await
        .map_err(access_rejection)
}

impl CommandTarget for Access {
    /// Who was given or lost which role.
    fn reply_detail(_: &str, events: &[serde_json::Value]) -> serde_json::Value {
        let mut detail = json!({});
        for event in events
            .iter()
            .filter_map(|e| serde_json::from_value::<AccessEvent>(e.clone()).ok())
        {
            detail = match event {
                AccessEvent::RoleGranted(e) => json!({"user": e.user, "role": e.role}),
                AccessEvent::RoleRevoked(e) => json!({"user": e.user, "role": e.role}),
                AccessEvent::TokenIssued(e) => json!({"user": e.user, "token_id": e.token_id}),
                AccessEvent::TokenRevoked(e) => json!({"token_id": e.token_id}),
            };
        }
        detail
    }
}

/// The wire rejection for a failed access command.
fn access_rejection(error: CommandError<AccessError>) -> Rejection {
    let domain = match error {
        CommandError::Rejected(e) => e,
        other => return infrastructure_rejection(other),
    };
    let message = domain.to_string();
    match domain {
        AccessError::InvalidField(f) => {
            Rejection::new(RejectionCode::BadRequest, message).with_field(f.field)
        }
        AccessError::AlreadyHeld { .. } | AccessError::NotHeld { .. } => {
            Rejection::new(RejectionCode::Unchanged, message).with_field("command.role")
        }
        AccessError::LastAdmin(_) => {
            Rejection::new(RejectionCode::InvalidState, message).with_field("command.user")
        }
        AccessError::UnknownToken(_) => {
            Rejection::new(RejectionCode::NotFound, message).with_field("command.token_id")
        }
    }
}

/// The first pause after the database could not be reached while seeding; it doubles to
/// [`MAX_SEED_PAUSE`].
const FIRST_SEED_PAUSE: Duration = Duration::from_millis(500);
const MAX_SEED_PAUSE: Duration = Duration::from_secs(5);

/// Seeds the grants the environment names, as Gatehouse itself, before the gateway serves:
/// `admin` to `admin_user` while nobody holds `admin`, then every grant of `seeds`, each once
/// (command id `seed:<user>:<role>`). A database outage is waited out (until `shutdown`); a
/// seed the aggregate refuses (held already, a malformed user name) is logged and skipped.
pub async fn seed(
    app: &App,
    admin_user: Option<&str>,
    seeds: &Grants,
    shutdown: &CancellationToken,
) {
    let mut pause = FIRST_SEED_PAUSE;
    loop {
        match seed_once(app, admin_user, seeds).await {
            Ok(()) => return,
            Err(rejection) => {
                tracing::warn!(code = rejection.code.as_str(), error.message = %rejection.message,
                    "cannot seed the grants yet; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_SEED_PAUSE);
    }
}

/// One attempt: `Err` only for a failure worth retrying (`unavailable`, `conflict`).
async fn seed_once(app: &App, admin_user: Option<&str>, seeds: &Grants) -> Result<(), Rejection> {
    let current = app.grants.now(&app.pg).await?;
    let nobody_admin = !current.access.has_admin();
    let admin = admin_user
        .filter(|_| nobody_admin)
        .map(|user| (user.to_owned(), Role::Admin));
    for (user, role) in admin.into_iter().chain(seeds.iter()) {
        let command = GrantRole {
            user: user.clone(),
            role: role.as_str().to_owned(),
            reason: "seeded from the environment at start-up".into(),
        };
        let context = request::internal(
            &app.namespace,
            "access.grant",
            &format!("seed:{user}:{role}"),
            &command,
        );
        let cmd = AccessCommand::Grant {
            user: command.user,
            role: command.role,
            reason: command.reason,
            actor: INTERNAL_ACTOR.to_owned(),
            at: Utc::now(),
        };
        match execute(app, &context, cmd).await {
            Ok(_) => tracing::info!(%user, %role, "seeded a grant"),
            Err(r) if matches!(r.code, RejectionCode::Unavailable | RejectionCode::Conflict) => {
                return Err(r)
            }
            Err(r) if r.code == RejectionCode::Unchanged => {}
            Err(r) => {
                tracing::error!(%user, %role, code = r.code.as_str(), error.message = %r.message,
                    "a seeded grant was refused; skipped")
            }
        }
    }
    Ok(())
}
