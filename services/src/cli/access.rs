//! `gatehouse access ...`: grant and revoke roles, list the grants in force.

use clap::Subcommand;
use gatehouse_events::access::{
    GrantRole, IssueToken, IssuedToken, ListRoles, ListTokens, RevokeRole, RevokeToken, TokenView,
    UserRoles, AGGREGATE,
};

use super::output::{self, table, time};
use super::Cli;
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Give a user a role (needs `admin`): viewer, author, operator, approver, service, admin,
    /// delegate.
    Grant {
        /// The user as the server authenticates them (a NATS user of a client account).
        user: String,
        role: String,
        /// Why: shown in `access roles` and the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Take a role from a user (needs `admin`; never the last admin's `admin`).
    Revoke {
        user: String,
        role: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Issue a bearer token for a user of the HTTP API (needs `admin`); prints it once.
    IssueToken {
        user: String,
        /// What it is for, e.g. `laptop` or `ci`.
        #[arg(long)]
        name: String,
    },
    /// Revoke a bearer token (needs `admin`).
    RevokeToken {
        token_id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The bearer tokens in force, without their secrets (needs `admin`).
    Tokens {
        #[arg(long)]
        user: Option<String>,
    },
    /// The grants in force, by user.
    Roles {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
}

pub async fn run(cli: &Cli, cmd: &AccessCommand, client: &Client) -> anyhow::Result<()> {
    match cmd {
        AccessCommand::Grant { user, role, reason } => {
            let command = GrantRole {
                user: user.clone(),
                role: role.clone(),
                reason: reason.clone(),
            };
            let done = client
                .command(AGGREGATE, "grant", &cli.sender(), command)
                .await?;
            super::accepted(cli, client, &done, &format!("granted {role} to {user}")).await;
        }
        AccessCommand::Revoke { user, role, reason } => {
            let command = RevokeRole {
                user: user.clone(),
                role: role.clone(),
                reason: reason.clone(),
            };
            let done = client
                .command(AGGREGATE, "revoke", &cli.sender(), command)
                .await?;
            super::accepted(cli, client, &done, &format!("revoked {role} from {user}")).await;
        }
        AccessCommand::IssueToken { user, name } => {
            let command = IssueToken {
                user: user.clone(),
                name: name.clone(),
            };
            let issued: IssuedToken = client
                .command_reply(AGGREGATE, "issue_token", &cli.sender(), command)
                .await?;
            if cli.json {
                output::json(&issued);
                return Ok(());
            }
            match &issued.token {
                Some(token) => {
                    crate::outln!("token {} for {user} ({name}):", opt_id(&issued));
                    crate::outln!("{token}");
                    crate::outln!("(shown this once: keep it secret)");
                }
                None => crate::outln!(
                    "token {} was issued by this command before; its secret was shown then \
                     (revoke it and issue another if it is lost)",
                    opt_id(&issued)
                ),
            }
        }
        AccessCommand::RevokeToken { token_id, reason } => {
            let command = RevokeToken {
                token_id: token_id.clone(),
                reason: reason.clone(),
            };
            let done = client
                .command(AGGREGATE, "revoke_token", &cli.sender(), command)
                .await?;
            super::accepted(cli, client, &done, &format!("revoked token {token_id}")).await;
        }
        AccessCommand::Tokens { user } => {
            let query = ListTokens { user: user.clone() };
            let tokens: Vec<TokenView> = client.query(AGGREGATE, "tokens", &query).await?;
            if cli.json {
                output::json(&tokens);
                return Ok(());
            }
            let mut t = table(&["TOKEN", "USER", "NAME", "ISSUED BY", "ISSUED AT"]);
            for tok in &tokens {
                t.add_row(vec![
                    tok.token_id.clone(),
                    tok.user.clone(),
                    tok.name.clone(),
                    tok.issued_by.clone(),
                    time(&tok.issued_at),
                ]);
            }
            crate::outln!("{t}");
        }
        AccessCommand::Roles { user } => {
            let query = ListRoles { user: user.clone() };
            let users: Vec<UserRoles> = client.query(AGGREGATE, "roles", &query).await?;
            if cli.json {
                output::json(&users);
                return Ok(());
            }
            let mut t = table(&["USER", "ROLE", "GRANTED BY", "GRANTED AT", "REASON"]);
            for u in &users {
                for grant in &u.roles {
                    t.add_row(vec![
                        u.user.clone(),
                        grant.role.to_string(),
                        grant.granted_by.clone(),
                        time(&grant.granted_at),
                        grant.reason.clone(),
                    ]);
                }
            }
            crate::outln!("{t}");
        }
    }
    Ok(())
}

fn opt_id(issued: &IssuedToken) -> &str {
    issued.token_id.as_deref().unwrap_or("?")
}
