//! `gatehouse access ...`: grant and revoke roles, list the grants in force.

use clap::Subcommand;
use gatehouse_events::access::{GrantRole, ListRoles, RevokeRole, UserRoles, AGGREGATE};

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
