//! The `artifact` aggregate: one item in one repo — its decisions and its one quarantine case.
//!
//! Stream: `events` rows with `aggregate_type = 'artifact'`, id `<repo>:<item_id>`. A decision
//! and the case it opens or joins are one command, so they commit together. The case goes
//! `quarantined → released | rejected` once; it is never reopened.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use gatehouse_events::artifact::{
    ArtifactEvent, CaseResolved, DecisionRecorded, QuarantineJoined, QuarantineOpened, AGGREGATE,
};
use gatehouse_events::quarantine::{CaseStatus, MAX_REASON_LEN};
use gatehouse_events::rules::Decision;
use serde::{Deserialize, Serialize};

/// A command to the artifact aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum ArtifactCommand {
    /// Record a decision the gateway evaluated; a `quarantine` decision opens or joins the case.
    Decide {
        decision: DecisionRecorded,
        /// The evaluated attributes (kept with the case for a later evaluation).
        attributes: serde_json::Value,
    },
    /// Resolve the open case.
    Resolve {
        repo: String,
        item_id: String,
        resolution: Resolution,
        reason: String,
        actor: String,
        at: DateTime<Utc>,
    },
}

/// How a case is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Release,
    Reject,
}

impl Resolution {
    pub fn status(self) -> CaseStatus {
        match self {
            Resolution::Release => CaseStatus::Released,
            Resolution::Reject => CaseStatus::Rejected,
        }
    }
}

/// Why the artifact aggregate refused a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArtifactError {
    /// Release or reject of an item that has no case.
    #[error("item `{item_id}` has no quarantine case in repo `{repo}`")]
    NoCase { repo: String, item_id: String },
    /// Release or reject of a case resolved before.
    #[error("the case of `{item_id}` in repo `{repo}` is already {} (by `{resolved_by}` at {resolved_at})", status.as_str())]
    AlreadyResolved {
        repo: String,
        item_id: String,
        status: CaseStatus,
        resolved_by: String,
        resolved_at: DateTime<Utc>,
    },
    /// A reason that is empty or too long.
    #[error("a reason is required, at most {MAX_REASON_LEN} characters")]
    InvalidReason,
}

/// The item's case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub status: CaseStatus,
    /// Quarantine decisions it holds.
    pub decisions: u32,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// The state of one artifact, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub repo: String,
    pub item_id: String,
    pub decisions: u64,
    pub case: Option<Case>,
}

impl Artifact {
    fn decide(
        &self,
        decision: DecisionRecorded,
        attributes: serde_json::Value,
    ) -> Vec<ArtifactEvent> {
        let quarantine = decision.decision == Decision::Quarantine;
        let case = match (&self.case, quarantine) {
            (_, false) => None,
            (None, true) => Some(ArtifactEvent::QuarantineOpened(QuarantineOpened {
                policy_id: decision.policy_id.clone(),
                version: decision.version,
                rule_id: decision.rule_id.clone(),
                reason: decision.reason.clone(),
                attributes,
                opened_by: decision.decided_by.clone(),
                opened_at: decision.decided_at,
            })),
            (Some(case), true) if case.status == CaseStatus::Quarantined => {
                Some(ArtifactEvent::QuarantineJoined(QuarantineJoined {
                    policy_id: decision.policy_id.clone(),
                    version: decision.version,
                    rule_id: decision.rule_id.clone(),
                    reason: decision.reason.clone(),
                    attributes,
                    joined_at: decision.decided_at,
                }))
            }
            // A resolved case stays resolved: the decision is recorded, nothing reopens.
            (Some(_), true) => None,
        };
        std::iter::once(ArtifactEvent::DecisionRecorded(decision))
            .chain(case)
            .collect()
    }

    fn resolve(
        &self,
        (repo, item_id): (String, String),
        resolution: Resolution,
        reason: String,
        actor: String,
        at: DateTime<Utc>,
    ) -> Result<ArtifactEvent, ArtifactError> {
        let Some(case) = self.case.as_ref() else {
            return Err(ArtifactError::NoCase { repo, item_id });
        };
        if case.status != CaseStatus::Quarantined {
            return Err(ArtifactError::AlreadyResolved {
                repo,
                item_id,
                status: case.status,
                resolved_by: case.resolved_by.clone().unwrap_or_default(),
                resolved_at: case.resolved_at.unwrap_or_default(),
            });
        }
        if reason.trim().is_empty() || reason.chars().count() > MAX_REASON_LEN {
            return Err(ArtifactError::InvalidReason);
        }
        let resolved = CaseResolved {
            reason,
            resolved_by: actor,
            resolved_at: at,
        };
        Ok(match resolution {
            Resolution::Release => ArtifactEvent::QuarantineReleased(resolved),
            Resolution::Reject => ArtifactEvent::QuarantineRejected(resolved),
        })
    }

    fn resolved(&mut self, status: CaseStatus, resolved: CaseResolved) {
        if let Some(case) = &mut self.case {
            case.status = status;
            case.resolved_by = Some(resolved.resolved_by);
            case.resolved_at = Some(resolved.resolved_at);
        }
    }
}

impl Aggregate for Artifact {
    const TYPE: &'static str = AGGREGATE;
    type Command = ArtifactCommand;
    type Event = ArtifactEvent;
    type Error = ArtifactError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = match command {
            ArtifactCommand::Decide {
                decision,
                attributes,
            } => self.decide(decision, attributes),
            ArtifactCommand::Resolve {
                repo,
                item_id,
                resolution,
                reason,
                actor,
                at,
            } => vec![self.resolve((repo, item_id), resolution, reason, actor, at)?],
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ArtifactEvent::DecisionRecorded(d) => {
                self.repo = d.repo;
                self.item_id = d.item_id;
                self.decisions += 1;
            }
            ArtifactEvent::QuarantineOpened(_) => {
                self.case = Some(Case {
                    status: CaseStatus::Quarantined,
                    decisions: 1,
                    resolved_by: None,
                    resolved_at: None,
                })
            }
            ArtifactEvent::QuarantineJoined(_) => {
                if let Some(case) = &mut self.case {
                    case.decisions += 1;
                }
            }
            ArtifactEvent::QuarantineReleased(r) => self.resolved(CaseStatus::Released, r),
            ArtifactEvent::QuarantineRejected(r) => self.resolved(CaseStatus::Rejected, r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use gatehouse_events::decision::Action;
    use serde_json::json;

    type ArtifactTest = TestFramework<Artifact>;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn decision(decision: Decision) -> DecisionRecorded {
        DecisionRecorded {
            repo: "npm".into(),
            item_id: "a-1".into(),
            action: Action::Publish,
            decision,
            rule_id: Some("scan".into()),
            reason: "scan not clean".into(),
            policy_id: "media".into(),
            version: 1,
            input_digest: "sha256:00".into(),
            digests: vec![],
            decided_by: "svc".into(),
            decided_at: at(),
            attributes: None,
        }
    }

    fn decide(d: Decision) -> ArtifactCommand {
        ArtifactCommand::Decide {
            decision: decision(d),
            attributes: json!({"q": 1}),
        }
    }

    fn recorded(d: Decision) -> ArtifactEvent {
        ArtifactEvent::DecisionRecorded(decision(d))
    }

    fn opened() -> ArtifactEvent {
        ArtifactEvent::QuarantineOpened(QuarantineOpened {
            policy_id: "media".into(),
            version: 1,
            rule_id: Some("scan".into()),
            reason: "scan not clean".into(),
            attributes: json!({"q": 1}),
            opened_by: "svc".into(),
            opened_at: at(),
        })
    }

    fn joined() -> ArtifactEvent {
        ArtifactEvent::QuarantineJoined(QuarantineJoined {
            policy_id: "media".into(),
            version: 1,
            rule_id: Some("scan".into()),
            reason: "scan not clean".into(),
            attributes: json!({"q": 1}),
            joined_at: at(),
        })
    }

    fn resolution(by: &str) -> CaseResolved {
        CaseResolved {
            reason: "checked".into(),
            resolved_by: by.into(),
            resolved_at: at(),
        }
    }

    fn resolve(resolution: Resolution, reason: &str) -> ArtifactCommand {
        ArtifactCommand::Resolve {
            repo: "npm".into(),
            item_id: "a-1".into(),
            resolution,
            reason: reason.into(),
            actor: "alice".into(),
            at: at(),
        }
    }

    #[tokio::test]
    async fn allow_and_deny_decisions_are_recorded_without_a_case() {
        for d in [Decision::Allow, Decision::Deny] {
            ArtifactTest::with(())
                .given_no_previous_events()
                .when_async(decide(d))
                .await
                .then_expect_events(vec![recorded(d)]);
        }
    }

    #[tokio::test]
    async fn a_quarantine_decision_opens_the_case() {
        ArtifactTest::with(())
            .given_no_previous_events()
            .when_async(decide(Decision::Quarantine))
            .await
            .then_expect_events(vec![recorded(Decision::Quarantine), opened()]);
    }

    #[tokio::test]
    async fn a_second_quarantine_decision_joins_the_open_case() {
        ArtifactTest::with(())
            .given(vec![recorded(Decision::Quarantine), opened()])
            .when_async(decide(Decision::Quarantine))
            .await
            .then_expect_events(vec![recorded(Decision::Quarantine), joined()]);
    }

    #[tokio::test]
    async fn a_quarantine_decision_on_a_resolved_case_reopens_nothing() {
        for resolved in [
            ArtifactEvent::QuarantineReleased(resolution("alice")),
            ArtifactEvent::QuarantineRejected(resolution("alice")),
        ] {
            ArtifactTest::with(())
                .given(vec![recorded(Decision::Quarantine), opened(), resolved])
                .when_async(decide(Decision::Quarantine))
                .await
                .then_expect_events(vec![recorded(Decision::Quarantine)]);
        }
    }

    #[tokio::test]
    async fn an_open_case_is_released_or_rejected_with_the_reason() {
        ArtifactTest::with(())
            .given(vec![recorded(Decision::Quarantine), opened()])
            .when_async(resolve(Resolution::Release, "checked"))
            .await
            .then_expect_events(vec![ArtifactEvent::QuarantineReleased(resolution("alice"))]);
        ArtifactTest::with(())
            .given(vec![recorded(Decision::Quarantine), opened(), joined()])
            .when_async(resolve(Resolution::Reject, "checked"))
            .await
            .then_expect_events(vec![ArtifactEvent::QuarantineRejected(resolution("alice"))]);
    }

    #[tokio::test]
    async fn a_second_resolution_names_the_state_and_who_resolved_it() {
        for (first, status) in [
            (
                ArtifactEvent::QuarantineReleased(resolution("bob")),
                CaseStatus::Released,
            ),
            (
                ArtifactEvent::QuarantineRejected(resolution("bob")),
                CaseStatus::Rejected,
            ),
        ] {
            for again in [Resolution::Release, Resolution::Reject] {
                ArtifactTest::with(())
                    .given(vec![
                        recorded(Decision::Quarantine),
                        opened(),
                        first.clone(),
                    ])
                    .when_async(resolve(again, "again"))
                    .await
                    .then_expect_error(ArtifactError::AlreadyResolved {
                        repo: "npm".into(),
                        item_id: "a-1".into(),
                        status,
                        resolved_by: "bob".into(),
                        resolved_at: at(),
                    });
            }
        }
    }

    #[tokio::test]
    async fn resolving_an_item_without_a_case_is_refused() {
        ArtifactTest::with(())
            .given(vec![recorded(Decision::Allow)])
            .when_async(resolve(Resolution::Release, "why"))
            .await
            .then_expect_error(ArtifactError::NoCase {
                repo: "npm".into(),
                item_id: "a-1".into(),
            });
    }

    #[tokio::test]
    async fn a_resolution_needs_a_reason() {
        ArtifactTest::with(())
            .given(vec![recorded(Decision::Quarantine), opened()])
            .when_async(resolve(Resolution::Reject, "  "))
            .await
            .then_expect_error(ArtifactError::InvalidReason);
    }

    #[test]
    fn apply_counts_decisions_and_tracks_the_case() {
        let mut a = Artifact::default();
        for e in [
            recorded(Decision::Quarantine),
            opened(),
            recorded(Decision::Quarantine),
            joined(),
        ] {
            a.apply(e);
        }
        assert_eq!(a.decisions, 2);
        assert_eq!(a.case.as_ref().unwrap().decisions, 2);
        a.apply(ArtifactEvent::QuarantineRejected(resolution("alice")));
        let case = a.case.unwrap();
        assert_eq!(
            (case.status, case.resolved_by.as_deref()),
            (CaseStatus::Rejected, Some("alice"))
        );
    }
}
