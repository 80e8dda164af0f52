//! The `repo` aggregate: one repo's binding to a policy, and the evaluations that timed out.
//!
//! Stream: `events` rows with `aggregate_type = 'repo'`, one stream per repo name.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use gatehouse_events::repo::{
    is_valid_repo, BindRepo, PolicyTimedOut, RepoBound, RepoEvent, AGGREGATE, DEFAULT_BUDGET_MS,
    MAX_BUDGET_MS, MAX_REPO_LEN,
};
use serde::{Deserialize, Serialize};

/// A command to the repo aggregate, with what the gateway adds.
#[derive(Debug, Clone, PartialEq)]
pub enum RepoCommand {
    Bind {
        command: BindRepo,
        /// Whether the policy exists (read by the gateway from the event store).
        policy_exists: bool,
        actor: String,
        at: DateTime<Utc>,
    },
    /// The `policy.timeout` audit record of an evaluation past the budget.
    RecordTimeout(PolicyTimedOut),
}

/// Why the repo aggregate refused a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RepoError {
    #[error("`{0}` is not a repo name ([a-z0-9][a-z0-9_-]*, at most {MAX_REPO_LEN} characters)")]
    InvalidRepo(String),
    #[error("budget_ms {0} is not between 1 and {MAX_BUDGET_MS}")]
    InvalidBudget(u32),
    #[error("policy `{0}` does not exist")]
    PolicyNotFound(String),
    #[error("repo `{0}` is bound to no policy")]
    NotBound(String),
}

/// The state of one repo, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Repo {
    pub repo: Option<String>,
    pub policy_id: Option<String>,
    pub budget_ms: u32,
    pub auto_release: bool,
    pub timeouts: u64,
}

impl Repo {
    fn bind(
        &self,
        cmd: BindRepo,
        policy_exists: bool,
        actor: String,
        at: DateTime<Utc>,
    ) -> Result<RepoEvent, RepoError> {
        if !is_valid_repo(&cmd.repo) {
            return Err(RepoError::InvalidRepo(cmd.repo));
        }
        let budget_ms = cmd.budget_ms.unwrap_or(DEFAULT_BUDGET_MS);
        if !(1..=MAX_BUDGET_MS).contains(&budget_ms) {
            return Err(RepoError::InvalidBudget(budget_ms));
        }
        if !policy_exists {
            return Err(RepoError::PolicyNotFound(cmd.policy_id));
        }
        Ok(RepoEvent::RepoBound(RepoBound {
            previous_policy_id: self
                .policy_id
                .clone()
                .filter(|previous| *previous != cmd.policy_id),
            repo: cmd.repo,
            policy_id: cmd.policy_id,
            budget_ms,
            auto_release: cmd.auto_release.unwrap_or(true),
            bound_by: actor,
            bound_at: at,
        }))
    }
}

impl Aggregate for Repo {
    const TYPE: &'static str = AGGREGATE;
    type Command = RepoCommand;
    type Event = RepoEvent;
    type Error = RepoError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            RepoCommand::Bind {
                command,
                policy_exists,
                actor,
                at,
            } => self.bind(command, policy_exists, actor, at)?,
            RepoCommand::RecordTimeout(timeout) => {
                if self.policy_id.is_none() {
                    return Err(RepoError::NotBound(timeout.repo));
                }
                RepoEvent::PolicyTimedOut(timeout)
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            RepoEvent::RepoBound(b) => {
                self.repo = Some(b.repo);
                self.policy_id = Some(b.policy_id);
                self.budget_ms = b.budget_ms;
                self.auto_release = b.auto_release;
            }
            RepoEvent::PolicyTimedOut(_) => self.timeouts += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use gatehouse_events::decision::Action;

    type RepoTest = TestFramework<Repo>;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn bind(policy: &str, budget_ms: Option<u32>, auto_release: Option<bool>) -> RepoCommand {
        RepoCommand::Bind {
            command: BindRepo {
                repo: "npm".into(),
                policy_id: policy.into(),
                budget_ms,
                auto_release,
            },
            policy_exists: true,
            actor: "alice".into(),
            at: at(),
        }
    }

    fn bound(policy: &str, budget_ms: u32, previous: Option<&str>) -> RepoEvent {
        RepoEvent::RepoBound(RepoBound {
            repo: "npm".into(),
            policy_id: policy.into(),
            budget_ms,
            auto_release: true,
            previous_policy_id: previous.map(Into::into),
            bound_by: "alice".into(),
            bound_at: at(),
        })
    }

    fn timeout() -> PolicyTimedOut {
        PolicyTimedOut {
            repo: "npm".into(),
            item_id: "a-1".into(),
            action: Action::Publish,
            policy_id: "media".into(),
            budget_ms: 250,
            request_command_id: "c1".into(),
            timed_out_at: at(),
        }
    }

    #[tokio::test]
    async fn bind_records_the_binding_with_its_defaults() {
        RepoTest::with(())
            .given_no_previous_events()
            .when_async(bind("media", None, None))
            .await
            .then_expect_events(vec![bound("media", DEFAULT_BUDGET_MS, None)]);
    }

    #[tokio::test]
    async fn rebinding_is_a_new_event_naming_the_previous_policy() {
        RepoTest::with(())
            .given(vec![bound("media", 250, None)])
            .when_async(bind("strict", Some(100), None))
            .await
            .then_expect_events(vec![bound("strict", 100, Some("media"))]);
    }

    #[tokio::test]
    async fn bind_refuses_a_budget_outside_the_range() {
        for budget in [0, MAX_BUDGET_MS + 1] {
            RepoTest::with(())
                .given_no_previous_events()
                .when_async(bind("media", Some(budget), None))
                .await
                .then_expect_error(RepoError::InvalidBudget(budget));
        }
    }

    #[tokio::test]
    async fn bind_refuses_a_missing_policy_and_a_bad_repo_name() {
        let mut missing = bind("nope", None, None);
        if let RepoCommand::Bind { policy_exists, .. } = &mut missing {
            *policy_exists = false;
        }
        RepoTest::with(())
            .given_no_previous_events()
            .when_async(missing)
            .await
            .then_expect_error(RepoError::PolicyNotFound("nope".into()));
        let mut bad = bind("media", None, None);
        if let RepoCommand::Bind { command, .. } = &mut bad {
            command.repo = "Bad:Name".into();
        }
        RepoTest::with(())
            .given_no_previous_events()
            .when_async(bad)
            .await
            .then_expect_error(RepoError::InvalidRepo("Bad:Name".into()));
    }

    #[tokio::test]
    async fn auto_release_can_be_turned_off() {
        let mut expected = bound("media", 250, None);
        if let RepoEvent::RepoBound(b) = &mut expected {
            b.auto_release = false;
        }
        RepoTest::with(())
            .given_no_previous_events()
            .when_async(bind("media", None, Some(false)))
            .await
            .then_expect_events(vec![expected]);
    }

    #[tokio::test]
    async fn a_timeout_is_recorded_on_a_bound_repo_only() {
        RepoTest::with(())
            .given(vec![bound("media", 250, None)])
            .when_async(RepoCommand::RecordTimeout(timeout()))
            .await
            .then_expect_events(vec![RepoEvent::PolicyTimedOut(timeout())]);
        RepoTest::with(())
            .given_no_previous_events()
            .when_async(RepoCommand::RecordTimeout(timeout()))
            .await
            .then_expect_error(RepoError::NotBound("npm".into()));
    }
}
