//! The JetStream limit of `ingest`: the same lines published to the scratch stream
//! `<NS>_BENCH_INGEST_RAW` (file storage like the catalog stream, one subject per item,
//! `<ns>.bench.ingest.<id>`), as many PubAcks awaited at once as the import awaits, every one
//! awaited — without what the import adds: reading each line as a change, message ids (and the
//! stream's dedupe of them), saved progress.
//!
//! Neither stream can be deleted (the `gatehouse` user may not delete or purge streams), so
//! after each repetition [`trim`] lowers a stream's message limit to drop what it stored: a
//! million items weigh about half a gigabyte, and the account may store 8 GB in all.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishAckFuture, stream};
use bytes::Bytes;

use super::file::ItemsFile;
use crate::catalog;

/// How long a PubAck may take (as in the import).
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes every line of `file`, at most `in_flight` awaiting their PubAck; returns how long
/// it took from the first publish to the last PubAck, and the messages published.
pub async fn publish_lines(
    nats: &async_nats::Client,
    ns: &str,
    file: &ItemsFile,
    in_flight: usize,
) -> anyhow::Result<(Duration, u64)> {
    let in_flight = in_flight.max(1);
    let js = jetstream::ContextBuilder::new()
        .timeout(ACK_TIMEOUT)
        .max_ack_inflight(in_flight + 1)
        .build(nats.clone());
    js.create_or_update_stream(scratch_stream(ns)).await?;
    let mut lines = file.lines().await?;
    let mut acks: VecDeque<PublishAckFuture> = VecDeque::with_capacity(in_flight);
    let mut published = 0;
    let started = Instant::now();
    while let Some(line) = lines.next().await? {
        if acks.len() >= in_flight {
            settle_oldest(&mut acks).await?;
        }
        let subject = format!("{ns}.bench.ingest.{}", catalog::item_id(published));
        acks.push_back(js.publish(subject, Bytes::copy_from_slice(line)).await?);
        published += 1;
    }
    while !acks.is_empty() {
        settle_oldest(&mut acks).await?;
    }
    Ok((started.elapsed(), published))
}

async fn settle_oldest(acks: &mut VecDeque<PublishAckFuture>) -> anyhow::Result<()> {
    if let Some(ack) = acks.pop_front() {
        ack.await?;
    }
    Ok(())
}

/// The scratch stream's name.
pub fn scratch_stream_name(ns: &str) -> String {
    format!("{}_BENCH_INGEST_RAW", ns.to_ascii_uppercase())
}

/// The scratch stream, unbounded while it is published to (as the catalog stream is).
fn scratch_stream(ns: &str) -> stream::Config {
    stream::Config {
        name: scratch_stream_name(ns),
        subjects: vec![format!("{ns}.bench.ingest.>")],
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// Drops every message of stream `name` but the last, by lowering its message limit; its
/// sequence goes on. The next `create_or_update_stream` with its usual config lifts the limit.
pub async fn trim(js: &jetstream::Context, name: &str) -> anyhow::Result<()> {
    let mut stream = js.get_stream(name).await?;
    let mut config = stream.info().await?.config.clone();
    config.max_messages = 1;
    js.update_stream(config).await?;
    Ok(())
}
