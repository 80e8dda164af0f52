//! One fetched batch through the catalog projector: decode, keep the last change per item,
//! write rows, rejections and the checkpoint in one transaction, COMMIT, then ack.
//!
//! If the transaction fails because Postgres is unreachable, every message is NAK'd with a
//! capped, growing delay, without limit (an outage never dead-letters). If a statement was
//! refused, the messages go one by one, and one the catalog table refuses on its own becomes a
//! rejection carrying the database's reason: nothing is dropped silently.

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tracing::{field, Instrument};

use super::decode::{self, Plan};
use super::{write, CatalogSettings, NAME};
use crate::batch::Failure;
use crate::checkpoint::{self, ConsumerState, Progress};
use crate::consumer::{heartbeat_period, with_heartbeat};
use crate::error::error_chain;

/// A message delivered to the catalog projector, with its JetStream metadata.
pub(crate) struct Received {
    pub message: jetstream::Message,
    pub stream_seq: u64,
    pub consumer_seq: u64,
    pub delivered: i64,
    pub pending: u64,
    pub published: DateTime<Utc>,
}

impl Received {
    /// Fails only for a message without JetStream metadata, which cannot be acked either.
    pub(crate) fn new(message: jetstream::Message) -> Result<Self, async_nats::Error> {
        let info = message.info()?;
        let nanos = info.published.unix_timestamp_nanos();
        let published =
            i64::try_from(nanos).map_or(DateTime::<Utc>::MIN_UTC, DateTime::from_timestamp_nanos);
        let stream_seq = info.stream_sequence;
        let (consumer_seq, delivered, pending) =
            (info.consumer_sequence, info.delivered, info.pending);
        Ok(Self {
            message,
            stream_seq,
            consumer_seq,
            delivered,
            pending,
            published,
        })
    }

    pub(crate) fn decoded(&self) -> decode::Message<'_> {
        decode::Message {
            subject: self.message.subject.as_str(),
            payload: &self.message.payload,
            stream_seq: self.stream_seq,
            published: self.published,
        }
    }

    /// Answers the message; a lost answer only means a redelivery.
    async fn ack(&self, kind: AckKind) {
        if let Err(e) = self.message.ack_with(kind).await {
            tracing::warn!(error.message = %e, error.cause_chain = ?e, stream_seq = self.stream_seq,
                ?kind, "could not answer a catalog message; it will be redelivered");
        }
    }
}

/// The catalog projector between batches.
pub(crate) struct CatalogProjector {
    pub settings: CatalogSettings,
    pub pool: Pool,
    pub js: jetstream::Context,
    pub consumer: PullConsumer,
    pub consumer_name: String,
    pub progress: Progress,
}

/// Counts for the batch span.
#[derive(Debug, Default)]
struct Tally {
    changed: u64,
    rows: usize,
    superseded: usize,
    rejected: usize,
    retried: usize,
}

impl CatalogProjector {
    /// Projects one batch; every message ends acked, NAK'd or terminated (or, if even that
    /// fails, redelivered after `ack_wait`).
    /// `plan` is `batch` decoded ([`Plan::of`]), done ahead while the previous batch was written.
    pub(crate) async fn handle(&mut self, batch: Vec<Received>, plan: Plan) {
        let span = tracing::info_span!(
            "catalog_batch",
            messages = batch.len(),
            pending = batch.last().map(|r| r.pending),
            rows = field::Empty,
            changed = field::Empty,
            superseded = field::Empty,
            rejected = field::Empty,
            retried = field::Empty
        );
        let period = heartbeat_period(self.settings.projector.ack_wait);
        let messages: Vec<_> = batch.iter().map(|r| r.message.clone()).collect();
        let tally = with_heartbeat(&messages, period, async {
            self.keep_track(&batch).await;
            match self.commit(plan, &batch).await {
                Ok(tally) => {
                    self.settings
                        .projector
                        .hooks
                        .after_commit_before_ack()
                        .await;
                    for received in &batch {
                        received.ack(AckKind::Ack).await;
                    }
                    tally
                }
                Err(e) if e.is_outage() => self.retry_later(&batch, &error_chain(&e)).await,
                Err(e) => {
                    tracing::warn!(error.message = %e, error.cause_chain = ?e,
                        "catalog batch failed; writing its messages one by one");
                    self.one_by_one(&batch).await
                }
            }
        })
        .instrument(span.clone())
        .await;
        if tally.retried == 0 {
            self.settings.projector.health.recover(&self.consumer_name);
        }
        span.record("rows", tally.rows)
            .record("changed", tally.changed);
        span.record("superseded", tally.superseded)
            .record("rejected", tally.rejected);
        span.record("retried", tally.retried);
        span.in_scope(|| tracing::debug!("catalog batch projected"));
    }

    /// Decodes and writes `batch` with the checkpoint, in one transaction.
    async fn write(&mut self, batch: &[Received]) -> Result<Tally, Failure> {
        let plan = Plan::of(batch.iter().map(Received::decoded));
        self.commit(plan, batch).await
    }

    async fn commit(&mut self, plan: Plan, batch: &[Received]) -> Result<Tally, Failure> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let plan = plan.after(checkpoint::lock(&tx, NAME).await?);
        let changed = write::write(&tx, &plan).await?;
        let settled: Vec<u64> = batch.iter().map(|r| r.stream_seq).collect();
        let stream_seq = self.progress.checkpoint_with(&settled);
        checkpoint::advance(&tx, NAME, stream_seq, 0).await?;
        self.settings.projector.hooks.before_commit().await;
        tx.commit().await?;
        self.progress.settle(&settled);
        Ok(Tally {
            changed,
            rows: plan.rows.len(),
            superseded: plan.superseded,
            rejected: plan.rejections.len(),
            retried: 0,
        })
    }

    /// Writes each message on its own: a message the catalog table refuses is rejected with
    /// the database's reason; once Postgres is unreachable, the rest is retried later.
    async fn one_by_one(&mut self, batch: &[Received]) -> Tally {
        let mut tally = Tally::default();
        for (i, received) in batch.iter().enumerate() {
            let one = std::slice::from_ref(received);
            let outcome = match self.write(one).await {
                Err(e) if !e.is_outage() => {
                    let error =
                        format!("the catalog table refused the change: {}", error_chain(&e));
                    let rejection = decode::rejection(received.decoded(), error);
                    let plan = Plan {
                        rejections: vec![rejection],
                        ..Plan::default()
                    };
                    self.commit(plan, one).await
                }
                outcome => outcome,
            };
            match outcome {
                Ok(done) => {
                    received.ack(AckKind::Ack).await;
                    tally.rows += done.rows;
                    tally.changed += done.changed;
                    tally.rejected += done.rejected;
                }
                Err(e) => {
                    let rest = self.retry_later(&batch[i..], &error_chain(&e)).await;
                    tally.retried += rest.retried;
                    break;
                }
            }
        }
        tally
    }

    /// NAKs `batch` with a capped delay growing with its deliveries, and reports the
    /// projector degraded: an outage is ridden out, never dead-lettered.
    async fn retry_later(&mut self, batch: &[Received], reason: &str) -> Tally {
        tracing::warn!(messages = batch.len(), %reason, "could not write catalog changes; retrying later");
        self.settings
            .projector
            .health
            .degrade(&self.consumer_name, reason);
        for received in batch {
            self.progress.await_redelivery(received.stream_seq);
            let delay = self.settings.projector.nak_delay(received.delivered);
            received.ack(AckKind::Nak(Some(delay))).await;
        }
        Tally {
            retried: batch.len(),
            ..Tally::default()
        }
    }

    /// Notes the deliveries, and asks the server how far it got while the projector is blind.
    async fn keep_track(&mut self, batch: &[Received]) {
        for received in batch {
            self.progress.observe(received.consumer_seq);
        }
        self.look_if_blind().await;
    }

    /// With nothing delivered for a while: once the projector sees again, stores the
    /// checkpoint it could not store while blind.
    pub(crate) async fn idle(&mut self) {
        if !self.progress.is_blind() {
            return;
        }
        self.look_if_blind().await;
        if !self.progress.is_blind() {
            if let Err(e) = self.commit(Plan::default(), &[]).await {
                tracing::warn!(error.message = %e, error.cause_chain = ?e, "could not store the checkpoint");
            }
        }
    }

    async fn look_if_blind(&mut self) {
        if self.progress.is_blind() {
            match self.consumer.get_info().await {
                Ok(info) => self.progress.look(ConsumerState::of(&info)),
                Err(e) => tracing::warn!(error.message = %e, error.cause_chain = ?e,
                    "could not read the catalog consumer's ack floor"),
            }
        }
    }
}
