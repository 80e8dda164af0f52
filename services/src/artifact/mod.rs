//! The `artifact` context: the aggregate of one item in one repo (its decisions and its one
//! quarantine case, written by [`crate::decision`] and [`crate::quarantine`]) and the read check
//! `artifact.can_read` (declared in [`OPERATIONS`]).
//!
//! Layout: [`aggregate`]; [`queries`] (`can_read`); the reply detail and the rejections of its
//! commands here.
pub mod aggregate;
pub mod queries;

pub use aggregate::{Artifact, ArtifactCommand, ArtifactError, Resolution};

use gatehouse_events::artifact::{ArtifactEvent, CanRead, ReadAllowed};
use gatehouse_events::envelope::{Rejection, RejectionCode};
use serde_json::json;

use crate::api::{infrastructure_rejection, Operation, ReadModel};
use crate::query;
use crate::store::{CommandError, CommandTarget};

/// The artifact context's queries.
pub const OPERATIONS: &[Operation] = &[query!(
    "artifact.can_read",
    Service,
    "may an item (or the items with a digest) of a repo be read: refused quarantined_blob while its case is quarantined or rejected",
    CanRead => ReadAllowed,
    queries::can_read,
    Some(ReadModel::Quarantine)
)];

impl CommandTarget for Artifact {
    /// The decision recorded (as stored) and what happened to the case.
    fn reply_detail(aggregate_id: &str, events: &[serde_json::Value]) -> serde_json::Value {
        let mut detail = json!({"artifact_id": aggregate_id});
        for event in events
            .iter()
            .filter_map(|e| serde_json::from_value::<ArtifactEvent>(e.clone()).ok())
        {
            match event {
                ArtifactEvent::DecisionRecorded(d) => {
                    detail["decision"] = serde_json::to_value(d).unwrap_or_default()
                }
                ArtifactEvent::QuarantineOpened(_) => {
                    detail["case_opened"] = true.into();
                    detail["case"] = "quarantined".into();
                }
                ArtifactEvent::QuarantineJoined(_) => detail["case"] = "quarantined".into(),
                ArtifactEvent::QuarantineReleased(r) => {
                    detail["case"] = "released".into();
                    detail["resolved_by"] = r.resolved_by.into();
                }
                ArtifactEvent::QuarantineRejected(r) => {
                    detail["case"] = "rejected".into();
                    detail["resolved_by"] = r.resolved_by.into();
                }
            }
        }
        detail
    }
}

/// The wire rejection for a failed artifact command.
pub(crate) fn artifact_rejection(error: CommandError<ArtifactError>) -> Rejection {
    let domain = match error {
        CommandError::Rejected(e) => e,
        other => return infrastructure_rejection(other),
    };
    let message = domain.to_string();
    match domain {
        ArtifactError::NoCase { .. } => {
            Rejection::new(RejectionCode::NotFound, message).with_field("command.item_id")
        }
        ArtifactError::AlreadyResolved {
            repo,
            item_id,
            status,
            resolved_by,
            resolved_at,
        } => Rejection::new(RejectionCode::InvalidState, message).with_details(vec![json!({
            "repo": repo,
            "item_id": item_id,
            "status": status,
            "resolved_by": resolved_by,
            "resolved_at": resolved_at,
        })]),
        ArtifactError::InvalidReason => {
            Rejection::new(RejectionCode::BadRequest, message).with_field("command.reason")
        }
    }
}
