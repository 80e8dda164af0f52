//! One fetched batch through a projector: apply every message in one transaction with the
//! checkpoint, COMMIT, then ack. If that fails, the batch is rolled back and its messages go
//! one by one (see the `fallback` module). Each delivery's consumer sequence is noted first, so
//! the checkpoint never passes a message this projector did not see (see `checkpoint`).

use std::sync::Arc;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind};
use deadpool_postgres::{Pool, Transaction};
use gatehouse_events::record::EventRecord;
use tracing::{debug_span, field, Instrument, Span};

use crate::checkpoint::{self, ConsumerState, Progress};
use crate::consumer::{heartbeat_period, is_transient_pg, with_heartbeat};
use crate::delivery::Delivery;
use crate::model::{ApplyError, ReadModel, Tables};
use crate::settings::ProjectorSettings;

/// A projector's state between batches.
pub(crate) struct Projector {
    pub model: Arc<dyn ReadModel>,
    pub settings: ProjectorSettings,
    pub pool: Pool,
    pub js: jetstream::Context,
    pub consumer: PullConsumer,
    /// The durable consumer's name (also the dead-letter subject's last token).
    pub consumer_name: String,
    pub tables: Tables,
    pub progress: Progress,
}

/// Why applying one message or a batch failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("no Postgres connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Apply(ApplyError::Store(e))
    }
}

impl Failure {
    /// Would the same message apply later? Poison and a statement Postgres refuses for this
    /// message never will; an outage, a lock conflict or a sequence gap will.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Failure::Pool(_) => true,
            Failure::Apply(ApplyError::Store(e)) => is_transient_pg(e),
            Failure::Apply(e) => e.is_transient(),
        }
    }

    /// Would every other message fail the same way (no database), rather than just this one?
    pub(crate) fn is_outage(&self) -> bool {
        match self {
            Failure::Pool(_) => true,
            Failure::Apply(ApplyError::Store(e)) => e.as_db_error().is_none(),
            Failure::Apply(_) => false,
        }
    }
}

/// Counts for the batch span.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub applied: usize,
    pub skipped: usize,
    pub retried: usize,
    pub dead_lettered: usize,
}

impl Tally {
    fn record_on(&self, span: &Span) {
        span.record("applied", self.applied);
        span.record("skipped", self.skipped);
        span.record("retried", self.retried);
        span.record("dead_lettered", self.dead_lettered);
    }
}

impl Projector {
    /// Projects one batch; every message ends acked, NAK'd or terminated (or, if even that
    /// fails, redelivered after `ack_wait`).
    pub(crate) async fn handle(&mut self, batch: Vec<Delivery>) {
        let span = tracing::info_span!(
            "projector_batch",
            projector = self.model.name(),
            messages = batch.len(),
            pending = batch.last().map(|d| d.pending),
            applied = field::Empty,
            skipped = field::Empty,
            retried = field::Empty,
            dead_lettered = field::Empty
        );
        let period = heartbeat_period(self.settings.ack_wait);
        let messages: Vec<_> = batch.iter().map(|d| d.message.clone()).collect();
        let tally = with_heartbeat(&messages, period, async {
            self.keep_track(&batch).await;
            self.project(&batch).await
        })
        .instrument(span.clone())
        .await;
        if tally.retried == 0 {
            self.settings.health.recover(&self.consumer_name);
        }
        tally.record_on(&span);
        span.in_scope(|| tracing::debug!("batch projected"));
    }

    /// Notes the deliveries, and asks the server how far it got while the projector is blind.
    async fn keep_track(&mut self, batch: &[Delivery]) {
        let was_blind = self.progress.is_blind();
        for delivery in batch {
            self.progress.observe(delivery.consumer_seq);
        }
        if self.progress.is_blind() && !was_blind {
            tracing::info!("a delivery never arrived; the checkpoint waits for the ack floor");
        }
        self.look_if_blind().await;
    }

    /// With nothing to fetch: once the projector sees again, stores the checkpoint it could
    /// not store while blind.
    pub(crate) async fn idle(&mut self) {
        if self.progress.is_blind() {
            self.look_if_blind().await;
            if !self.progress.is_blind() {
                if let Err(e) = self.store_checkpoint(&[]).await {
                    tracing::warn!(error.message = %e, error.cause_chain = ?e,
                        "could not store the checkpoint");
                }
            }
        }
    }

    async fn look_if_blind(&mut self) {
        if self.progress.is_blind() {
            match self.consumer.get_info().await {
                Ok(info) => self.progress.look(ConsumerState::of(&info)),
                Err(e) => tracing::warn!(error.message = %e, error.cause_chain = ?e,
                    "could not read the consumer's ack floor"),
            }
        }
    }

    async fn project(&mut self, batch: &[Delivery]) -> Tally {
        match self.apply_batch(batch).await {
            Ok(tally) => {
                self.settings.hooks.after_commit_before_ack().await;
                for delivery in batch {
                    delivery.ack(AckKind::Ack).await;
                }
                tally
            }
            Err(e) => {
                tracing::warn!(error.message = %e, error.cause_chain = ?e,
                    "batch failed; applying its messages one by one");
                self.one_by_one(batch).await
            }
        }
    }

    async fn apply_batch(&mut self, batch: &[Delivery]) -> Result<Tally, Failure> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let checkpoint = checkpoint::lock(&tx, self.model.name()).await?;
        let mut tally = Tally::default();
        let mut position = 0;
        for delivery in batch {
            if delivery.stream_seq <= checkpoint {
                tally.skipped += 1;
                continue;
            }
            let event = delivery.event()?;
            self.apply(&tx, event).await?;
            tally.applied += 1;
            position = position.max(event.position);
        }
        let settled: Vec<u64> = batch.iter().map(|d| d.stream_seq).collect();
        self.commit(tx, &settled, position).await?;
        Ok(tally)
    }

    pub(crate) async fn apply(
        &self,
        tx: &Transaction<'_>,
        event: &EventRecord,
    ) -> Result<(), ApplyError> {
        let span = debug_span!("project_event", position = event.position,
            aggregate_id = %event.aggregate_id, event_type = %event.event_type,
            correlation_id = event.meta(gatehouse_events::metadata::CORRELATION_ID));
        self.model
            .apply(tx, &self.tables, event)
            .instrument(span)
            .await
    }

    /// Writes the checkpoint for `settled` and commits.
    pub(crate) async fn commit(
        &mut self,
        tx: Transaction<'_>,
        settled: &[u64],
        position: i64,
    ) -> Result<(), Failure> {
        let stream_seq = self.progress.checkpoint_with(settled);
        checkpoint::advance(&tx, self.model.name(), stream_seq, position).await?;
        self.settings.hooks.before_commit().await;
        tx.commit().await?;
        self.progress.settle(settled);
        Ok(())
    }

    /// Stores the checkpoint after settling `settled` outside a batch.
    pub(crate) async fn store_checkpoint(&mut self, settled: &[u64]) -> Result<(), Failure> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        checkpoint::lock(&tx, self.model.name()).await?;
        let checkpoint = self.progress.checkpoint_with(settled);
        checkpoint::advance(&tx, self.model.name(), checkpoint, 0).await?;
        tx.commit().await?;
        Ok(())
    }
}
