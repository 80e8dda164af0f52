//! The `policy` aggregate: a policy's declared attribute schema and its immutable versions.
//!
//! Stream: `events` rows with `aggregate_type = 'policy'`, one stream per policy id.
//! Commands: [`PolicyCommand`]; events: [`PolicyEvent`]. Only a promotion (a later slice) may
//! change the active version.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use gatehouse_events::policy::{
    ConfigurePolicy, CreatePolicy, DraftVersion, PolicyConfigured, PolicyCreated, PolicyEvent,
    PolicyVersionDrafted, RestoreVersion, AGGREGATE, MAX_ATTRIBUTES, MAX_NAME_LEN, MAX_NOTES_LEN,
};
use gatehouse_events::rules::{AttributeSchema, RulesDocument};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::validation::{self, FieldError};
use crate::run::aggregate::{Prepare, RunState};
use gatehouse_events::run::{
    BlockingReason, CompleteRun, FailRun, PromoteRun, RunCounters, RunRef, RunStatus,
    MAX_ERROR_MESSAGE,
};

/// A command to the policy aggregate: the protocol's command as the client sent it, with what
/// the gateway adds (the authenticated actor, the time, and facts it read, such as a run's
/// counters from `run_progress`).
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyCommand {
    Create {
        command: CreatePolicy,
        actor: String,
        at: DateTime<Utc>,
    },
    Draft {
        command: DraftVersion,
        author: String,
        at: DateTime<Utc>,
    },
    Restore {
        command: RestoreVersion,
        author: String,
        at: DateTime<Utc>,
    },
    Configure {
        command: ConfigurePolicy,
        actor: String,
        at: DateTime<Utc>,
    },
    /// A Prepare with its defaults resolved and the snapshot the gateway froze.
    Prepare {
        prepare: Prepare,
        actor: String,
        at: DateTime<Utc>,
    },
    CompleteRun {
        command: CompleteRun,
        /// The run's counters as its workers committed them (`run_progress`).
        counters: RunCounters,
        at: DateTime<Utc>,
    },
    FailRun {
        command: FailRun,
        counters: RunCounters,
        at: DateTime<Utc>,
    },
    CancelRun {
        command: RunRef,
        actor: String,
        at: DateTime<Utc>,
    },
    ResumeRun {
        command: RunRef,
        actor: String,
        at: DateTime<Utc>,
    },
    Promote {
        command: PromoteRun,
        /// The run's progress as its workers committed it (`run_progress`, as `run.get` shows
        /// it): the numbers of an unfinished run's blocking reasons.
        progress: RunCounters,
        actor: String,
        at: DateTime<Utc>,
    },
}

/// Why the policy aggregate refused a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// `create` on a policy id that exists.
    #[error("policy `{0}` already exists")]
    AlreadyExists(String),
    /// Any command but `create` on a policy id that does not exist.
    #[error("policy does not exist")]
    NotFound,
    /// A field of the command breaks its format or size rule.
    #[error("{0}")]
    InvalidField(FieldError),
    /// The rules document failed validation; every problem is listed.
    #[error("the rules document is invalid: {}", .0.first().map(|e| e.message.as_str()).unwrap_or("?"))]
    InvalidRules(Vec<gatehouse_rules::RuleError>),
    /// `restore` of a version that does not exist.
    #[error("policy version {0} does not exist")]
    VersionNotFound(u32),
    /// `configure` that would change no setting.
    #[error("four-eyes promotion is already {}", if *.0 { "on" } else { "off" })]
    SettingUnchanged(bool),
    /// `restore` whose rules equal the latest version's.
    #[error(
        "version {restored} has the same rules as the latest version {latest}: nothing to restore"
    )]
    RestoreUnchanged { restored: u32, latest: u32 },
    /// `prepare` (or `resume`) while another run of the policy is running.
    #[error("run {0} of this policy is still running")]
    RunAlreadyRunning(String),
    /// `prepare` or `promote` of the version that is already active.
    #[error("version {0} is already active")]
    VersionAlreadyActive(u32),
    /// `promote` of a run that was promoted before (its version may no longer be active).
    #[error("run {run_id} was already promoted ({})", crate::run::aggregate::describe_promoted(*version, *active))]
    RunAlreadyPromoted {
        run_id: String,
        version: u32,
        active: Option<u32>,
    },
    /// A run command naming a run this policy does not have.
    #[error("run `{0}` does not exist")]
    RunNotFound(String),
    /// `cancel_run`, `complete_run` or `fail_run` of a run that is not running.
    #[error("run {run_id} is {}, not running", status.as_str())]
    RunNotRunning { run_id: String, status: RunStatus },
    /// `resume_run` of a run that is neither failed nor cancelled.
    #[error("run {run_id} is {}: only a failed or cancelled run can be resumed", status.as_str())]
    RunNotResumable { run_id: String, status: RunStatus },
    /// A worker's message from an epoch before a resume.
    #[error("the run is in epoch {current}, not {given}")]
    StaleEpoch { current: u32, given: u32 },
    /// `complete_run` before every snapshot item is processed.
    #[error("only {processed} of {total} snapshot items are processed")]
    RunIncomplete { processed: u64, total: u64 },
    /// Counters whose outcomes do not add up to `processed`.
    #[error("inconsistent counters: {0:?}")]
    InconsistentCounters(RunCounters),
    /// `promote`, by the author of the run's version, of a policy that requires a second
    /// approver.
    #[error("version {version} was authored by `{author}`: this policy requires someone else to promote it, not `{promoter}`")]
    ApprovalRequired {
        version: u32,
        author: String,
        promoter: String,
    },
    /// `promote` while a condition of `ready_to_promote` fails.
    #[error("the run is not ready to promote: {}", crate::run::aggregate::describe(.0))]
    PromoteBlocked(Vec<BlockingReason>),
    /// A coverage threshold outside [0, 1].
    #[error("coverage_threshold {0} is not between 0 and 1")]
    InvalidThreshold(f64),
    /// A batch size outside 1..=20,000.
    #[error("batch_size {0} is not between 1 and 20000")]
    InvalidBatchSize(u32),
}

/// One stored version, as the aggregate needs it (restore copies its rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVersion {
    pub version: u32,
    pub rules: RulesDocument,
    pub rules_hash: String,
    pub author: String,
    pub drafted_at: DateTime<Utc>,
    pub restored_from: Option<u32>,
}

/// The state of one policy, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub policy_id: Option<String>,
    pub name: String,
    pub description: String,
    pub attributes: AttributeSchema,
    pub versions: Vec<StoredVersion>,
    /// `None` until a promotion.
    pub active_version: Option<u32>,
    /// Every run, oldest first.
    pub runs: Vec<RunState>,
    /// Four-eyes promotion: the promoter may not be the author of the run's version.
    #[serde(default)]
    pub require_second_approver: bool,
}

impl Policy {
    /// The latest version number, 0 before the first draft.
    pub fn latest_version(&self) -> u32 {
        self.versions.last().map_or(0, |v| v.version)
    }

    pub(crate) fn version(&self, n: u32) -> Option<&StoredVersion> {
        self.versions.iter().find(|v| v.version == n)
    }

    fn create(
        &self,
        cmd: CreatePolicy,
        actor: String,
        at: DateTime<Utc>,
    ) -> Result<PolicyEvent, PolicyError> {
        if let Some(id) = &self.policy_id {
            return Err(PolicyError::AlreadyExists(id.clone()));
        }
        validation::policy_id(&cmd.policy_id).map_err(PolicyError::InvalidField)?;
        validation::text("command.name", &cmd.name, 1, MAX_NAME_LEN)
            .map_err(PolicyError::InvalidField)?;
        validation::text("command.description", &cmd.description, 0, MAX_NOTES_LEN)
            .map_err(PolicyError::InvalidField)?;
        validation::attributes(&cmd.attributes, MAX_ATTRIBUTES)
            .map_err(PolicyError::InvalidField)?;
        Ok(PolicyEvent::PolicyCreated(PolicyCreated {
            policy_id: cmd.policy_id,
            name: cmd.name,
            description: cmd.description,
            attributes: cmd.attributes,
            created_by: actor,
            created_at: at,
            require_second_approver: cmd.require_second_approver,
        }))
    }

    fn configure(
        &self,
        cmd: ConfigurePolicy,
        actor: String,
        at: DateTime<Utc>,
    ) -> Result<PolicyEvent, PolicyError> {
        if self.policy_id.is_none() {
            return Err(PolicyError::NotFound);
        }
        validation::text("command.notes", &cmd.notes, 0, MAX_NOTES_LEN)
            .map_err(PolicyError::InvalidField)?;
        if cmd.require_second_approver == self.require_second_approver {
            return Err(PolicyError::SettingUnchanged(cmd.require_second_approver));
        }
        Ok(PolicyEvent::PolicyConfigured(PolicyConfigured {
            require_second_approver: cmd.require_second_approver,
            notes: cmd.notes,
            configured_by: actor,
            configured_at: at,
        }))
    }

    fn draft(
        &self,
        rules: RulesDocument,
        notes: String,
        author: String,
        at: DateTime<Utc>,
    ) -> Result<PolicyEvent, PolicyError> {
        self.require_exists()?;
        validation::text("command.notes", &notes, 0, MAX_NOTES_LEN)
            .map_err(PolicyError::InvalidField)?;
        gatehouse_rules::validate(&rules, &self.attributes).map_err(PolicyError::InvalidRules)?;
        Ok(self.next_version(rules, notes, author, at, None))
    }

    fn restore(
        &self,
        version: u32,
        notes: String,
        author: String,
        at: DateTime<Utc>,
    ) -> Result<PolicyEvent, PolicyError> {
        self.require_exists()?;
        validation::text("command.notes", &notes, 0, MAX_NOTES_LEN)
            .map_err(PolicyError::InvalidField)?;
        let restored = self
            .version(version)
            .ok_or(PolicyError::VersionNotFound(version))?;
        let latest = self
            .versions
            .last()
            .ok_or(PolicyError::VersionNotFound(version))?;
        if restored.rules_hash == latest.rules_hash {
            return Err(PolicyError::RestoreUnchanged {
                restored: version,
                latest: latest.version,
            });
        }
        let notes = if notes.is_empty() {
            format!("restore of version {version}")
        } else {
            notes
        };
        Ok(self.next_version(restored.rules.clone(), notes, author, at, Some(version)))
    }

    fn next_version(
        &self,
        rules: RulesDocument,
        notes: String,
        author: String,
        drafted_at: DateTime<Utc>,
        restored_from: Option<u32>,
    ) -> PolicyEvent {
        PolicyEvent::PolicyVersionDrafted(PolicyVersionDrafted {
            version: self.latest_version() + 1,
            rules_hash: rules_hash(&rules),
            rules,
            notes,
            author,
            restored_from,
            drafted_at,
        })
    }

    pub(crate) fn require_exists(&self) -> Result<(), PolicyError> {
        self.policy_id
            .as_ref()
            .map(|_| ())
            .ok_or(PolicyError::NotFound)
    }
}

/// SHA-256 (hex) of the rules document's JSON, whose field order serde fixes.
pub fn rules_hash(rules: &RulesDocument) -> String {
    let json = serde_json::to_vec(rules).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

impl Aggregate for Policy {
    const TYPE: &'static str = AGGREGATE;
    type Command = PolicyCommand;
    type Event = PolicyEvent;
    type Error = PolicyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = match command {
            PolicyCommand::Create { command, actor, at } => {
                vec![self.create(command, actor, at)?]
            }
            PolicyCommand::Draft {
                command,
                author,
                at,
            } => vec![self.draft(command.rules, command.notes, author, at)?],
            PolicyCommand::Restore {
                command,
                author,
                at,
            } => vec![self.restore(command.version, command.notes, author, at)?],
            PolicyCommand::Configure { command, actor, at } => {
                vec![self.configure(command, actor, at)?]
            }
            PolicyCommand::Prepare { prepare, actor, at } => self.prepare(prepare, actor, at)?,
            PolicyCommand::CompleteRun {
                command,
                counters,
                at,
            } => vec![self.complete(&command.run_id, command.epoch, counters, at)?],
            PolicyCommand::FailRun {
                command,
                counters,
                at,
            } => {
                let reason: String = command.reason.chars().take(MAX_ERROR_MESSAGE).collect();
                vec![self.fail(&command.run_id, command.epoch, reason, counters, at)?]
            }
            PolicyCommand::CancelRun { command, actor, at } => {
                vec![self.cancel(&command.run_id, actor, at)?]
            }
            PolicyCommand::ResumeRun { command, actor, at } => {
                vec![self.resume(&command.run_id, actor, at)?]
            }
            PolicyCommand::Promote {
                command,
                progress,
                actor,
                at,
            } => {
                let thresholds = (
                    command.coverage_threshold.unwrap_or(1.0),
                    command.max_errors.unwrap_or(0),
                );
                vec![self.promote(&command.run_id, thresholds, progress, actor, at)?]
            }
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PolicyEvent::PolicyCreated(e) => {
                self.policy_id = Some(e.policy_id);
                self.name = e.name;
                self.description = e.description;
                self.attributes = e.attributes;
                self.require_second_approver = e.require_second_approver;
            }
            PolicyEvent::PolicyVersionDrafted(e) => self.versions.push(StoredVersion {
                version: e.version,
                rules: e.rules,
                rules_hash: e.rules_hash,
                author: e.author,
                drafted_at: e.drafted_at,
                restored_from: e.restored_from,
            }),
            PolicyEvent::RunPrepared(e) => self.run_prepared(e),
            PolicyEvent::RunSucceeded(e) => {
                self.end_run(&e.run_id, RunStatus::Success, Some(e.counters))
            }
            PolicyEvent::RunFailed(e) => {
                self.end_run(&e.run_id, RunStatus::Failed, Some(e.counters))
            }
            PolicyEvent::RunCancelled(e) => self.end_run(&e.run_id, RunStatus::Cancelled, None),
            PolicyEvent::RunResumed(e) => self.run_resumed(e),
            PolicyEvent::PolicyPromoted(e) => self.promoted(e),
            PolicyEvent::PolicyConfigured(e) => {
                self.require_second_approver = e.require_second_approver
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use gatehouse_events::rules::{Decision, Rule};
    use serde_json::json;

    type PolicyTest = TestFramework<Policy>;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn schema() -> AttributeSchema {
        serde_json::from_value(json!({"kind": "string", "quality": "double"})).unwrap()
    }

    fn rules(threshold: f64) -> RulesDocument {
        RulesDocument {
            rules: vec![Rule {
                id: "low-quality".into(),
                condition: format!("quality < {threshold:?}"),
                decision: Decision::Deny,
                reason: "low quality".into(),
            }],
            default_decision: Decision::Allow,
            default_reason: "default".into(),
            score: "quality * 10.0".into(),
        }
    }

    fn created() -> PolicyEvent {
        PolicyEvent::PolicyCreated(PolicyCreated {
            policy_id: "media".into(),
            name: "Media".into(),
            description: String::new(),
            attributes: schema(),
            created_by: "alice".into(),
            created_at: at(),
            require_second_approver: false,
        })
    }

    fn drafted(
        version: u32,
        rules: RulesDocument,
        restored_from: Option<u32>,
        notes: &str,
    ) -> PolicyEvent {
        PolicyEvent::PolicyVersionDrafted(PolicyVersionDrafted {
            version,
            rules_hash: rules_hash(&rules),
            rules,
            notes: notes.into(),
            author: "bob".into(),
            restored_from,
            drafted_at: at(),
        })
    }

    fn create(policy_id: &str, attributes: AttributeSchema) -> PolicyCommand {
        PolicyCommand::Create {
            command: CreatePolicy {
                policy_id: policy_id.into(),
                name: "Media".into(),
                description: String::new(),
                attributes,
                require_second_approver: false,
            },
            actor: "alice".into(),
            at: at(),
        }
    }

    fn draft(rules: RulesDocument) -> PolicyCommand {
        PolicyCommand::Draft {
            command: DraftVersion {
                policy_id: "media".into(),
                rules,
                notes: "tighten".into(),
            },
            author: "bob".into(),
            at: at(),
        }
    }

    fn restore(version: u32) -> PolicyCommand {
        PolicyCommand::Restore {
            command: RestoreVersion {
                policy_id: "media".into(),
                version,
                notes: String::new(),
            },
            author: "bob".into(),
            at: at(),
        }
    }

    #[tokio::test]
    async fn create_records_the_policy_with_its_schema() {
        PolicyTest::with(())
            .given_no_previous_events()
            .when_async(create("media", schema()))
            .await
            .then_expect_events(vec![created()]);
    }

    #[tokio::test]
    async fn create_is_rejected_when_the_policy_exists() {
        PolicyTest::with(())
            .given(vec![created()])
            .when_async(create("media", schema()))
            .await
            .then_expect_error(PolicyError::AlreadyExists("media".into()));
    }

    fn configure(on: bool) -> PolicyCommand {
        PolicyCommand::Configure {
            command: ConfigurePolicy {
                policy_id: "media".into(),
                require_second_approver: on,
                notes: "audit".into(),
            },
            actor: "carol".into(),
            at: at(),
        }
    }

    fn configured(on: bool) -> PolicyEvent {
        PolicyEvent::PolicyConfigured(PolicyConfigured {
            require_second_approver: on,
            notes: "audit".into(),
            configured_by: "carol".into(),
            configured_at: at(),
        })
    }

    #[tokio::test]
    async fn configure_switches_four_eyes_on_then_off() {
        PolicyTest::with(())
            .given(vec![created()])
            .when_async(configure(true))
            .await
            .then_expect_events(vec![configured(true)]);
        PolicyTest::with(())
            .given(vec![created(), configured(true)])
            .when_async(configure(false))
            .await
            .then_expect_events(vec![configured(false)]);
    }

    #[tokio::test]
    async fn configure_that_changes_nothing_or_names_no_policy_is_refused() {
        PolicyTest::with(())
            .given(vec![created(), configured(true)])
            .when_async(configure(true))
            .await
            .then_expect_error(PolicyError::SettingUnchanged(true));
        PolicyTest::with(())
            .given_no_previous_events()
            .when_async(configure(true))
            .await
            .then_expect_error(PolicyError::NotFound);
    }

    #[tokio::test]
    async fn create_is_rejected_for_an_invalid_policy_id() {
        let result = PolicyTest::with(())
            .given_no_previous_events()
            .when_async(create("Media!", schema()))
            .await;
        assert!(
            matches!(result.inspect_result(), Err(PolicyError::InvalidField(f)) if f.field == "command.policy_id")
        );
    }

    #[tokio::test]
    async fn create_is_rejected_for_an_invalid_attribute_name() {
        let bad: AttributeSchema = serde_json::from_value(json!({"not-ident": "int"})).unwrap();
        let result = PolicyTest::with(())
            .given_no_previous_events()
            .when_async(create("media", bad))
            .await;
        assert!(matches!(
            result.inspect_result(),
            Err(PolicyError::InvalidField(_))
        ));
    }

    #[tokio::test]
    async fn the_first_draft_becomes_version_1() {
        PolicyTest::with(())
            .given(vec![created()])
            .when_async(draft(rules(0.4)))
            .await
            .then_expect_events(vec![drafted(1, rules(0.4), None, "tighten")]);
    }

    #[tokio::test]
    async fn a_draft_follows_the_latest_version() {
        PolicyTest::with(())
            .given(vec![
                created(),
                drafted(1, rules(0.4), None, "a"),
                drafted(2, rules(0.5), None, "b"),
            ])
            .when_async(draft(rules(0.6)))
            .await
            .then_expect_events(vec![drafted(3, rules(0.6), None, "tighten")]);
    }

    #[tokio::test]
    async fn a_draft_is_rejected_when_the_policy_does_not_exist() {
        PolicyTest::with(())
            .given_no_previous_events()
            .when_async(draft(rules(0.4)))
            .await
            .then_expect_error(PolicyError::NotFound);
    }

    #[tokio::test]
    async fn a_draft_with_an_unknown_attribute_is_rejected_and_records_nothing() {
        let mut bad = rules(0.4);
        bad.rules[0].condition = "colour == 'red'".into();
        let result = PolicyTest::with(())
            .given(vec![created()])
            .when_async(draft(bad))
            .await;
        match result.inspect_result() {
            Err(PolicyError::InvalidRules(errors)) => {
                assert!(
                    errors.iter().any(|e| e.message.contains("colour")),
                    "{errors:?}"
                )
            }
            other => panic!("expected invalid rules, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_draft_with_a_syntax_error_is_rejected() {
        let mut bad = rules(0.4);
        bad.rules[0].condition = "quality <".into();
        let result = PolicyTest::with(())
            .given(vec![created()])
            .when_async(draft(bad))
            .await;
        assert!(matches!(
            result.inspect_result(),
            Err(PolicyError::InvalidRules(_))
        ));
    }

    #[tokio::test]
    async fn a_draft_with_overlong_notes_is_rejected() {
        let cmd = PolicyCommand::Draft {
            command: DraftVersion {
                policy_id: "media".into(),
                rules: rules(0.4),
                notes: "x".repeat(MAX_NOTES_LEN + 1),
            },
            author: "b".into(),
            at: at(),
        };
        let result = PolicyTest::with(())
            .given(vec![created()])
            .when_async(cmd)
            .await;
        assert!(
            matches!(result.inspect_result(), Err(PolicyError::InvalidField(f)) if f.field == "command.notes")
        );
    }

    #[tokio::test]
    async fn restore_copies_an_earlier_version_into_a_new_one() {
        PolicyTest::with(())
            .given(vec![
                created(),
                drafted(1, rules(0.4), None, "a"),
                drafted(2, rules(0.5), None, "b"),
            ])
            .when_async(restore(1))
            .await
            .then_expect_events(vec![drafted(
                3,
                rules(0.4),
                Some(1),
                "restore of version 1",
            )]);
    }

    #[tokio::test]
    async fn restore_identical_to_the_latest_version_is_rejected() {
        PolicyTest::with(())
            .given(vec![
                created(),
                drafted(1, rules(0.4), None, "a"),
                drafted(2, rules(0.5), None, "b"),
                drafted(3, rules(0.4), Some(1), "c"),
            ])
            .when_async(restore(1))
            .await
            .then_expect_error(PolicyError::RestoreUnchanged {
                restored: 1,
                latest: 3,
            });
    }

    #[tokio::test]
    async fn restore_of_a_missing_version_is_rejected() {
        PolicyTest::with(())
            .given(vec![created(), drafted(1, rules(0.4), None, "a")])
            .when_async(restore(7))
            .await
            .then_expect_error(PolicyError::VersionNotFound(7));
    }

    #[tokio::test]
    async fn restore_on_a_missing_policy_is_rejected() {
        PolicyTest::with(())
            .given_no_previous_events()
            .when_async(restore(1))
            .await
            .then_expect_error(PolicyError::NotFound);
    }

    #[test]
    fn apply_tracks_versions_and_leaves_the_active_version_unset() {
        let mut p = Policy::default();
        p.apply(created());
        p.apply(drafted(1, rules(0.4), None, "a"));
        assert_eq!(p.latest_version(), 1);
        assert_eq!(p.active_version, None);
    }

    #[test]
    fn equal_rules_have_equal_hashes() {
        assert_eq!(rules_hash(&rules(0.4)), rules_hash(&rules(0.4)));
        assert_ne!(rules_hash(&rules(0.4)), rules_hash(&rules(0.5)));
    }
}
