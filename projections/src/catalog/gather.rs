//! Gathering batches from the continuous pull, and decoding them, in a task of their own: the
//! next batch is gathered and decoded while the projector writes the previous one.
//!
//! Messages reach the client a socket read (about a hundred) at a time, so what is ready at
//! once makes small batches, and small batches make one transaction per hundred rows. A batch
//! takes what is ready, then waits a little for more: while the stream is backlogged it fills
//! up within milliseconds; when it is quiet the first message waits at most [`MAX_LINGER`].

use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::batch::Received;
use super::decode::Plan;

/// The longest wait for more messages after the first one of a batch.
const MAX_LINGER: Duration = Duration::from_millis(200);
/// A batch is closed when no message came for this long.
const GAP: Duration = Duration::from_millis(5);
/// Missed idle heartbeats in a row before the consumer is looked up again.
const MAX_MISSED_HEARTBEATS: u32 = 3;

/// What one gathering yielded: messages to project and what they decode to, then possibly why
/// the pull must restart. Nothing at all: nothing arrived for a while.
#[derive(Default)]
pub(crate) struct Gathered {
    pub batch: Vec<Received>,
    pub plan: Plan,
    pub failure: Option<async_nats::Error>,
}

/// Gathers and decodes batches into `batches` until the pull fails or the receiver is gone.
pub(crate) async fn run(mut batcher: Batcher, idle: Duration, batches: mpsc::Sender<Gathered>) {
    loop {
        let gathered = match batcher.gather(idle).await {
            None => Gathered::default(),
            Some(gathered) => decode(gathered).await,
        };
        let failed = gathered.failure.is_some();
        if batches.send(gathered).await.is_err() || failed {
            return;
        }
    }
}

/// Decodes on a blocking thread: thousands of messages take milliseconds of CPU.
async fn decode(mut gathered: Gathered) -> Gathered {
    let batch = std::mem::take(&mut gathered.batch);
    let decoded = tokio::task::spawn_blocking(move || {
        let plan = Plan::of(batch.iter().map(Received::decoded));
        (batch, plan)
    })
    .await;
    match decoded {
        Ok((batch, plan)) => Gathered {
            batch,
            plan,
            ..gathered
        },
        // Only a panic: the messages are dropped unacked and come back after `ack_wait`.
        Err(e) => Gathered {
            failure: Some(e.into()),
            ..Gathered::default()
        },
    }
}

/// A pull stream cut into batches of at most `batch_size`.
pub(crate) struct Batcher {
    messages: pull::Stream,
    batch_size: usize,
    missed_heartbeats: u32,
}

type Item = Option<Result<async_nats::jetstream::Message, pull::MessagesError>>;

impl Batcher {
    pub(crate) fn new(messages: pull::Stream, batch_size: usize) -> Self {
        Self {
            messages,
            batch_size: batch_size.max(1),
            missed_heartbeats: 0,
        }
    }

    /// The next batch; `None` if nothing arrived within `idle`. Cancel-safe only before the
    /// first message: a gathering dropped later leaves its messages to be redelivered.
    pub(crate) async fn gather(&mut self, idle: Duration) -> Option<Gathered> {
        let first = tokio::time::timeout(idle, self.messages.next())
            .await
            .ok()?;
        let mut gathered = Gathered::default();
        self.take(first, &mut gathered);
        let started = Instant::now();
        while self.wants_more(&gathered) {
            while self.wants_more(&gathered) {
                match self.messages.next().now_or_never() {
                    Some(item) => self.take(item, &mut gathered),
                    None => break,
                }
            }
            if !self.wants_more(&gathered) || started.elapsed() >= MAX_LINGER {
                break;
            }
            match tokio::time::timeout(GAP, self.messages.next()).await {
                Ok(item) => self.take(item, &mut gathered),
                Err(_) => break,
            }
        }
        Some(gathered)
    }

    fn wants_more(&self, gathered: &Gathered) -> bool {
        gathered.failure.is_none() && gathered.batch.len() < self.batch_size
    }

    fn take(&mut self, item: Item, gathered: &mut Gathered) {
        let Some(item) = item else {
            gathered.failure = Some("the pull ended".into());
            return;
        };
        match item
            .map_err(async_nats::Error::from)
            .and_then(Received::new)
        {
            Ok(received) => {
                self.missed_heartbeats = 0;
                gathered.batch.push(received);
            }
            // The pull stream re-pulls by itself; repeated misses mean the consumer is gone.
            Err(e)
                if is_missing_heartbeat(&e) && self.missed_heartbeats < MAX_MISSED_HEARTBEATS =>
            {
                self.missed_heartbeats += 1;
            }
            Err(e) => gathered.failure = Some(e),
        }
    }
}

fn is_missing_heartbeat(e: &async_nats::Error) -> bool {
    e.downcast_ref::<pull::MessagesError>()
        .is_some_and(|e| e.kind() == pull::MessagesErrorKind::MissingHeartbeat)
}
