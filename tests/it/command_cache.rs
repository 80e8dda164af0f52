//! The command path keeps loaded aggregates between commands: a kept copy that another writer
//! (another gateway) has overtaken must never decide a command. Two stores over one database
//! stand for two gateway instances.

use chrono::Utc;
use gatehouse::policy::{Policy, PolicyCommand, PolicyError};
use gatehouse::store::{CommandContext, CommandError, Store};
use gatehouse_events::policy::{DraftVersion, RestoreVersion};
use gatehouse_events::rules::RulesDocument;

use crate::fixtures;
use crate::helpers::spawn_app;

async fn store(url: &str) -> Store<Policy> {
    let sqlx = gatehouse::db::sqlx_pool(url, 2).await.expect("sqlx pool");
    let pg = gatehouse::db::pool(url, 2).expect("pool");
    Store::new(sqlx, pg)
}

fn context(command_type: &str) -> CommandContext {
    let id = uuid::Uuid::now_v7().to_string();
    CommandContext {
        command_id: id.clone(),
        actor: "alice".into(),
        delegated_by: None,
        correlation_id: id.clone(),
        causation_id: id,
        command_type: command_type.into(),
        request_hash: uuid::Uuid::new_v4().to_string(),
        legacy_request_hash: String::new(),
    }
}

fn draft(threshold: f64) -> PolicyCommand {
    let rules: RulesDocument =
        serde_json::from_value(fixtures::rules(threshold)).expect("fixture rules");
    PolicyCommand::Draft {
        command: DraftVersion {
            policy_id: "media".into(),
            rules,
            notes: format!("quality bar {threshold}"),
        },
        author: "alice".into(),
        at: Utc::now(),
    }
}

async fn create(store: &Store<Policy>, id: &str) {
    let command = PolicyCommand::Create {
        command: fixtures::create_policy(id),
        actor: "alice".into(),
        at: Utc::now(),
    };
    store
        .execute(&context("policy.create"), id, command)
        .await
        .expect("create");
}

#[tokio::test]
async fn a_kept_copy_behind_the_store_appends_after_the_other_writer() {
    let app = spawn_app().await;
    let (a, b) = (
        store(&app.settings.database_url).await,
        store(&app.settings.database_url).await,
    );
    create(&a, "media").await;
    let first = a
        .execute(&context("policy.draft"), "media", draft(0.3))
        .await;
    assert_eq!(first.expect("first draft").detail["version"], 1);
    // `b` writes version 2 behind `a`'s back; `a` still keeps the policy at version 1.
    let second = b
        .execute(&context("policy.draft"), "media", draft(0.4))
        .await;
    assert_eq!(second.expect("second draft").sequence, 3);
    let third = a
        .execute(&context("policy.draft"), "media", draft(0.5))
        .await
        .expect("a stale copy is reloaded, not an error");
    assert_eq!(third.sequence, 4);
    assert_eq!(third.detail["version"], 3);
    app.stop().await;
}

#[tokio::test]
async fn a_kept_copy_behind_the_store_never_refuses_what_the_store_allows() {
    let app = spawn_app().await;
    let (a, b) = (
        store(&app.settings.database_url).await,
        store(&app.settings.database_url).await,
    );
    create(&a, "media").await;
    a.execute(&context("policy.draft"), "media", draft(0.3))
        .await
        .expect("version 1");
    for threshold in [0.4, 0.5] {
        b.execute(&context("policy.draft"), "media", draft(threshold))
            .await
            .expect("versions 2 and 3, unknown to a's kept copy");
    }
    let restore = PolicyCommand::Restore {
        command: RestoreVersion {
            policy_id: "media".into(),
            version: 2,
            notes: "back to 0.4".into(),
        },
        author: "alice".into(),
        at: Utc::now(),
    };
    let restored = a
        .execute(&context("policy.restore"), "media", restore)
        .await
        .expect("version 2 exists in the store");
    assert_eq!(restored.detail["version"], 4);
    // A refusal from a fresh load is still a refusal.
    let missing = PolicyCommand::Restore {
        command: RestoreVersion {
            policy_id: "media".into(),
            version: 9,
            notes: String::new(),
        },
        author: "alice".into(),
        at: Utc::now(),
    };
    let refused = a
        .execute(&context("policy.restore"), "media", missing)
        .await
        .expect_err("version 9 does not exist");
    assert!(
        matches!(
            refused,
            CommandError::Rejected(PolicyError::VersionNotFound(9))
        ),
        "{refused:?}"
    );
    app.stop().await;
}
