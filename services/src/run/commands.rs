//! Run commands: `prepare` (freezes the catalog snapshot first), `cancel_run`, `resume_run`,
//! `promote`, and the workers' `complete_run` / `fail_run`. The counters of `complete_run`,
//! `fail_run` and of promote's refusal of an unfinished run are read from `run_progress` (as
//! `run.get` reads them) rather than trusted from the sender.

use chrono::Utc;
use deadpool_postgres::Pool;
use gatehouse_events::envelope::{CommandAccepted, Rejection, RejectionCode};
use gatehouse_events::run::{
    policy_of, CompleteRun, FailRun, PrepareRun, PromoteRun, RunCounters, RunRef,
    DEFAULT_BATCH_SIZE,
};

use crate::api::read::{database, unavailable};
use crate::api::request::{bad_request, Parsed};
use crate::api::App;
use crate::policy::commands::policy_rejection;
use crate::policy::PolicyCommand;
use crate::run::aggregate::{Prepare, Snapshot};
use crate::store::CommandContext;

/// Executes `cmd` on the policy of run `run_id`.
async fn on_run(
    app: &App,
    context: &CommandContext,
    run_id: &str,
    cmd: PolicyCommand,
) -> Result<CommandAccepted, Rejection> {
    crate::policy::commands::execute(app, context, policy_id(run_id)?, cmd).await
}

/// `policy.cancel_run`: stop a running run; its results so far stay.
pub async fn cancel(app: &App, parsed: Parsed<RunRef>) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let run_id = command.run_id.clone();
    let cmd = PolicyCommand::CancelRun {
        command,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    on_run(app, &context, &run_id, cmd).await
}

/// `policy.resume_run`: run a cancelled or failed run's missing batches (a new epoch).
pub async fn resume(app: &App, parsed: Parsed<RunRef>) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let run_id = command.run_id.clone();
    let cmd = PolicyCommand::ResumeRun {
        command,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    on_run(app, &context, &run_id, cmd).await
}

/// `policy.promote`: make the run's version the active one, if the thresholds hold.
pub async fn promote(app: &App, parsed: Parsed<PromoteRun>) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    // The counters `run.get` shows, for the blocking reasons of an unfinished run.
    let progress = progress(&app.pg, &command.run_id).await?;
    let run_id = command.run_id.clone();
    let cmd = PolicyCommand::Promote {
        command,
        progress,
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    on_run(app, &context, &run_id, cmd).await
}

/// `policy.complete_run` (workers): the run evaluated its whole snapshot.
pub async fn complete(
    app: &App,
    parsed: Parsed<CompleteRun>,
) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let counters = progress(&app.pg, &command.run_id).await?;
    let run_id = command.run_id.clone();
    let cmd = PolicyCommand::CompleteRun {
        command,
        counters,
        at: Utc::now(),
    };
    on_run(app, &context, &run_id, cmd).await
}

/// `policy.fail_run` (workers): the run cannot finish, and why.
pub async fn fail(app: &App, parsed: Parsed<FailRun>) -> Result<CommandAccepted, Rejection> {
    let Parsed { context, command } = parsed;
    let counters = progress(&app.pg, &command.run_id).await?;
    let run_id = command.run_id.clone();
    let cmd = PolicyCommand::FailRun {
        command,
        counters,
        at: Utc::now(),
    };
    on_run(app, &context, &run_id, cmd).await
}

/// Prepare: reject early what the aggregate would reject, freeze the snapshot, then record the
/// run. A snapshot whose run was not recorded (rejected, or a retry) is discarded.
pub async fn prepare(app: &App, parsed: Parsed<PrepareRun>) -> Result<CommandAccepted, Rejection> {
    let (store, pg) = (&app.policies, &app.pg);
    let Parsed { context, command } = parsed;
    crate::policy::validation::policy_id(&command.policy_id)
        .map_err(|f| bad_request(f.to_string()).with_field(f.field))?;
    if let Some(done) = store
        .already_done(&context)
        .await
        .map_err(policy_rejection)?
    {
        return Ok(done);
    }
    let state = store
        .state(&command.policy_id)
        .await
        .map_err(policy_rejection)?;
    let prepare = Prepare {
        version: command.version,
        snapshot: Snapshot {
            snapshot_id: String::new(),
            cutoff: Utc::now(),
            total: 0,
        },
        batch_size: command.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
        coverage_threshold: command.coverage_threshold.unwrap_or(1.0),
        max_errors: command.max_errors.unwrap_or(0),
    };
    // The same checks the aggregate makes, before the (large) snapshot is written.
    state
        .check_prepare(&prepare)
        .map_err(|e| policy_rejection(crate::store::CommandError::Rejected(e)))?;
    let snapshot = freeze(pg, prepare.batch_size).await?;
    let snapshot_id = snapshot.snapshot_id.clone();
    let cmd = PolicyCommand::Prepare {
        prepare: Prepare {
            snapshot,
            ..prepare
        },
        actor: context.actor.clone(),
        at: Utc::now(),
    };
    let outcome = store
        .execute(&context, &command.policy_id, cmd)
        .await
        .map_err(policy_rejection);
    if !matches!(&outcome, Ok(done) if !done.duplicate) {
        discard(pg, &snapshot_id).await;
    }
    outcome
}

/// Numbers every ready, non-deleted item updated at or before now, in item id order, and
/// stores the ids batch by batch (`run_snapshot_batches`: batch `b` holds ordinals
/// `[b * batch_size, (b + 1) * batch_size)`).
async fn freeze(pg: &Pool, batch_size: u32) -> Result<Snapshot, Rejection> {
    let db = database;
    let mut client = pg.get().await.map_err(|e| unavailable(e.to_string()))?;
    let tx = client.transaction().await.map_err(db)?;
    let cutoff: chrono::DateTime<Utc> = tx.query_one("SELECT now()", &[]).await.map_err(db)?.get(0);
    let snapshot_id = uuid::Uuid::now_v7().to_string();
    // The subquery numbers the items in id order; a batch's array keeps that order.
    let total: i64 = tx
        .query_one(
            "WITH frozen AS (
                 INSERT INTO run_snapshot_batches (snapshot_id, batch, first_ordinal, item_ids)
                 SELECT $1, (n / $3)::integer, min(n), array_agg(item_id ORDER BY n)
                   FROM (SELECT item_id, row_number() OVER (ORDER BY item_id) - 1 AS n
                           FROM catalog_items
                          WHERE status = 'ready' AND NOT deleted AND updated_at <= $2) s
                  GROUP BY n / $3
                 RETURNING cardinality(item_ids) AS items)
             SELECT coalesce(sum(items), 0)::bigint FROM frozen",
            &[&snapshot_id, &cutoff, &i64::from(batch_size.max(1))],
        )
        .await
        .map_err(db)?
        .get(0);
    let total = total as u64;
    tx.commit().await.map_err(db)?;
    Ok(Snapshot {
        snapshot_id,
        cutoff,
        total,
    })
}

async fn discard(pg: &Pool, snapshot_id: &str) {
    let result = match pg.get().await {
        Ok(client) => client
            .execute(
                "DELETE FROM run_snapshot_batches WHERE snapshot_id = $1",
                &[&snapshot_id],
            )
            .await
            .map(drop),
        Err(e) => {
            return tracing::warn!(error.message = %e, snapshot_id, "cannot discard an unused snapshot")
        }
    };
    if let Err(e) = result {
        tracing::warn!(error.message = %e, snapshot_id, "cannot discard an unused snapshot");
    }
}

/// The progress counters workers committed for a run.
async fn progress(pg: &Pool, run_id: &str) -> Result<RunCounters, Rejection> {
    let client = pg.get().await.map_err(|e| unavailable(e.to_string()))?;
    let row = client
        .query_opt(
            "SELECT processed, eligible, ineligible, quarantined, pending, errors FROM run_progress WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .map_err(database)?;
    let n = |i: usize| row.as_ref().map_or(0, |r| r.get::<_, i64>(i) as u64);
    Ok(RunCounters {
        total_ready_snapshot: 0,
        processed: n(0),
        eligible: n(1),
        ineligible: n(2),
        quarantined: n(3),
        pending: n(4),
        errors: n(5),
    })
}

fn policy_id(run_id: &str) -> Result<&str, Rejection> {
    policy_of(run_id).ok_or_else(|| {
        Rejection::new(
            RejectionCode::BadRequest,
            format!("`{run_id}` is not a run id (<policy_id>:<number>)"),
        )
        .with_field("command.run_id")
    })
}
