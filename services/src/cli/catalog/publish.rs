//! Pipelined publishes of an import, in file order, at most `capacity` awaiting their PubAck.
//!
//! One connection delivers publishes in order, so the stream stores the lines in file order.
//! When a PubAck fails (a timeout, a reconnect that lost a publish, a stream leader election),
//! later lines may already be stored. Every unacked line is then sent again, one at a time and
//! with its own message id: a line already stored dedupes; a line stored only now comes after
//! later lines of its item, so those are sent once more under a fresh id, keeping the file's
//! last change of each item the stream's last.

use std::collections::{HashSet, VecDeque};
use std::future::IntoFuture;
use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, publish::PublishAck};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use gatehouse_events::subjects;

use super::import::{ImportError, ImportReport};

/// Tries of one publish while resending, and the pause after the first failed one (it grows).
const TRIES: u32 = 10;
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// How long a PubAck may take.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Room left for the headers under the server's `max_payload`.
const HEADER_ROOM: usize = 256;

/// A line sent and not acked yet.
struct Sent {
    line: u64,
    item_id: String,
    payload: Bytes,
}

type Ack = BoxFuture<'static, Result<PublishAck, PublishError>>;

pub(super) struct Publisher {
    js: jetstream::Context,
    ns: String,
    import_id: String,
    capacity: usize,
    sent: VecDeque<Sent>,
    acks: FuturesOrdered<Ack>,
    /// Lines read so far (the last one is sent or reported).
    pub lines_read: u64,
    /// The longest line that fits in a message.
    pub max_payload: usize,
}

impl Publisher {
    pub fn new(client: &async_nats::Client, ns: &str, import_id: &str, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // Room for every pending PubAck: a publish waiting for room could never be acked.
        let js = jetstream::ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .max_ack_inflight(capacity + 1)
            .build(client.clone());
        Self {
            js,
            ns: ns.to_owned(),
            import_id: import_id.to_owned(),
            capacity,
            sent: VecDeque::new(),
            acks: FuturesOrdered::new(),
            lines_read: 0,
            max_payload: client.server_info().max_payload.saturating_sub(HEADER_ROOM),
        }
    }

    /// Every line up to this one is acked or reported.
    pub fn settled_line(&self) -> u64 {
        self.sent.front().map_or(self.lines_read, |s| s.line - 1)
    }

    /// Sends `line`, first awaiting the oldest PubAck if `capacity` are pending.
    pub async fn send(
        &mut self,
        line: u64,
        item_id: String,
        payload: Bytes,
        report: &mut ImportReport,
    ) -> Result<(), ImportError> {
        while self.sent.len() >= self.capacity {
            self.settle_oldest(report).await?;
        }
        let (subject, message) = self.message(line, &item_id, payload.clone(), None);
        let ack: Ack = match self.js.send_publish(subject, message).await {
            Ok(ack) => Box::pin(ack.into_future()),
            // Settled in order with the others: when its turn comes, it is sent again.
            Err(e) => Box::pin(async move { Err(e) }),
        };
        self.sent.push_back(Sent {
            line,
            item_id,
            payload,
        });
        self.acks.push_back(ack);
        Ok(())
    }

    /// Awaits every pending PubAck.
    pub async fn drain(&mut self, report: &mut ImportReport) -> Result<(), ImportError> {
        while !self.sent.is_empty() {
            self.settle_oldest(report).await?;
        }
        Ok(())
    }

    async fn settle_oldest(&mut self, report: &mut ImportReport) -> Result<(), ImportError> {
        let Some(outcome) = self.acks.next().await else {
            return Ok(());
        };
        match outcome {
            Ok(ack) => {
                self.sent.pop_front();
                count(report, ack.duplicate);
                Ok(())
            }
            Err(e) => {
                let line = self.sent.front().map_or(0, |s| s.line);
                tracing::warn!(line, error.message = %e, error.cause_chain = ?e,
                    "a publish failed; sending every unacked line again, in order");
                self.acks = FuturesOrdered::new();
                let unacked: Vec<Sent> = self.sent.drain(..).collect();
                self.resend(unacked, report).await
            }
        }
    }

    /// Sends `unacked` again one at a time, re-asserting lines a resent earlier line overtook.
    async fn resend(
        &mut self,
        unacked: Vec<Sent>,
        report: &mut ImportReport,
    ) -> Result<(), ImportError> {
        let mut stored_late: HashSet<String> = HashSet::new();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        for sent in unacked {
            let ack = self.publish_until_acked(&sent, None).await?;
            count(report, ack.duplicate);
            if !ack.duplicate {
                stored_late.insert(sent.item_id.clone());
            } else if stored_late.contains(&sent.item_id) {
                // Stored before an earlier line of its item that was only stored now.
                self.publish_until_acked(&sent, Some(&nonce)).await?;
                report.republished += 1;
            }
        }
        Ok(())
    }

    async fn publish_until_acked(
        &self,
        sent: &Sent,
        nonce: Option<&str>,
    ) -> Result<PublishAck, ImportError> {
        let mut pause = FIRST_PAUSE;
        let mut tries = 0;
        loop {
            tries += 1;
            let (subject, message) =
                self.message(sent.line, &sent.item_id, sent.payload.clone(), nonce);
            let outcome = match self.js.send_publish(subject, message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(ack) => return Ok(ack),
                Err(e) if tries < TRIES && is_transient(&e) => {
                    tracing::warn!(line = sent.line, tries, error.message = %e, "publish failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(source) => {
                    return Err(ImportError::Publish {
                        line: sent.line,
                        tries,
                        source,
                    })
                }
            }
        }
    }

    /// The message of `line`: its subject, and its dedupe id `<import-id>:<line>` (with a
    /// nonce for a re-assertion, which must not dedupe).
    fn message(
        &self,
        line: u64,
        item_id: &str,
        payload: Bytes,
        nonce: Option<&str>,
    ) -> (String, PublishMessage) {
        let id = match nonce {
            None => format!("{}:{line}", self.import_id),
            Some(nonce) => format!("{}:{line}:{nonce}", self.import_id),
        };
        let message = PublishMessage::build().payload(payload).message_id(id);
        (subjects::catalog_item(&self.ns, item_id), message)
    }
}

fn count(report: &mut ImportReport, duplicate: bool) {
    if duplicate {
        report.duplicates += 1;
    } else {
        report.published += 1;
    }
}

/// Is this failure worth another try with the same message id?
fn is_transient(e: &PublishError) -> bool {
    !matches!(
        e.kind(),
        PublishErrorKind::MaxPayloadExceeded
            | PublishErrorKind::WrongLastMessageId
            | PublishErrorKind::WrongLastSequence
    )
}
