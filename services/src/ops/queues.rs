//! What JetStream says now about a namespace's streams, consumers and dead letters: read at
//! scrape time by [`super::metrics`] and checked by [`super::doctor`].

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::TryStreamExt;
use gatehouse_events::subjects;

use crate::store::Cause;

/// One durable consumer as JetStream reports it.
#[derive(Debug, Clone)]
pub struct ConsumerState {
    pub stream: String,
    pub name: String,
    pub config: consumer::Config,
    /// Messages not yet delivered (`num_pending`).
    pub pending: u64,
    /// Delivered, not yet acknowledged (`num_ack_pending`).
    pub ack_pending: u64,
    /// Unacknowledged messages delivered more than once (`num_redelivered`).
    pub redelivered: u64,
    /// How long the oldest message it has not acknowledged has been in the stream.
    pub oldest_pending_age: Option<Duration>,
}

/// Every consumer of the namespace's streams that exist (a stream not created yet has none).
pub async fn consumers(js: &jetstream::Context, ns: &str) -> Result<Vec<ConsumerState>, Cause> {
    let mut all = Vec::new();
    for name in subjects::namespace_streams(ns) {
        let Some(stream) = existing_stream(js, &name).await? else {
            continue;
        };
        let infos: Vec<consumer::Info> = stream.consumers().try_collect().await.map_err(cause)?;
        for info in infos {
            let oldest_pending_age = oldest_pending_age(&stream, &info).await;
            all.push(ConsumerState {
                stream: name.clone(),
                name: info.name.clone(),
                pending: info.num_pending,
                ack_pending: info.num_ack_pending as u64,
                redelivered: info.num_redelivered as u64,
                config: info.config,
                oldest_pending_age,
            });
        }
    }
    all.sort_by(|a, b| (&a.stream, &a.name).cmp(&(&b.stream, &b.name)));
    Ok(all)
}

/// The stream called `name`, `None` when it does not exist.
pub async fn existing_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Stream>, Cause> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream)),
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(cause(e)),
    }
}

/// The age of the first message after the consumer's ack floor that its filters select: the
/// oldest one it has not acknowledged. `None` when it is caught up (or the message is gone).
async fn oldest_pending_age(stream: &stream::Stream, info: &consumer::Info) -> Option<Duration> {
    if info.num_pending == 0 && info.num_ack_pending == 0 {
        return None;
    }
    let next = info.ack_floor.stream_sequence + 1;
    let mut filters = info.config.filter_subjects.clone();
    if !info.config.filter_subject.is_empty() {
        filters.push(info.config.filter_subject.clone());
    }
    if filters.is_empty() {
        filters.push(">".into());
    }
    let mut oldest: Option<i128> = None;
    for filter in filters {
        let found = stream
            .raw_message_builder()
            .sequence(next)
            .next_by_subject(filter)
            .send()
            .await;
        if let Ok(message) = found {
            let at = message.time.unix_timestamp_nanos();
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
        }
    }
    let now = i128::from(chrono::Utc::now().timestamp_nanos_opt()?);
    let age = u64::try_from((now - oldest?).max(0)).unwrap_or(u64::MAX);
    Some(Duration::from_nanos(age))
}

/// Dead letters per consumer (`<ns>.dlq.<consumer>` in `<NS>_DLQ`), consumers with none left
/// out; empty when the dead-letter stream does not exist yet.
pub async fn dead_letters(js: &jetstream::Context, ns: &str) -> Result<Vec<(String, u64)>, Cause> {
    let Some(stream) = existing_stream(js, &subjects::dead_letter_stream(ns)).await? else {
        return Ok(Vec::new());
    };
    let prefix = subjects::dead_letter(ns, "");
    let counts: Vec<(String, usize)> = stream
        .info_with_subjects(subjects::all_dead_letters(ns))
        .await
        .map_err(cause)?
        .try_collect()
        .await
        .map_err(cause)?;
    let mut letters: Vec<(String, u64)> = counts
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(subject, count)| {
            let consumer = subject.strip_prefix(&prefix).unwrap_or(&subject);
            (consumer.to_owned(), count as u64)
        })
        .collect();
    letters.sort();
    Ok(letters)
}

fn cause(e: impl std::error::Error + Send + Sync + 'static) -> Cause {
    Box::new(e)
}
