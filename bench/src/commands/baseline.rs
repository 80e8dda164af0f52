//! The baselines of the `commands` scenario: the raw Postgres append loop (the limit) and a
//! NATS request/reply echo (the transport's floor), each driven like the real commands.

use futures::StreamExt;
use gatehouse_events::policy::AGGREGATE;
use tokio_postgres::Statement;

use crate::load::Worker;
use crate::{workload, Bench};
use gatehouse::client::Client;

/// The raw append loop of one client, on a connection of its own.
pub struct Raw {
    db: tokio_postgres::Client,
    aggregate_id: String,
    last_sequence: Statement,
    insert: Statement,
    payload: serde_json::Value,
    metadata: serde_json::Value,
}

impl Raw {
    pub async fn new(
        b: &Bench,
        aggregate_id: String,
        payload: &serde_json::Value,
        metadata: &serde_json::Value,
    ) -> anyhow::Result<Raw> {
        let db = b.system.connect_db().await?;
        let last_sequence = db
            .prepare(
                "SELECT max(sequence) FROM bench_raw_events \
                 WHERE aggregate_type = $1 AND aggregate_id = $2",
            )
            .await?;
        let insert = db
            .prepare(
                "INSERT INTO bench_raw_events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .await?;
        Ok(Raw {
            db,
            aggregate_id,
            last_sequence,
            insert,
            payload: payload.clone(),
            metadata: metadata.clone(),
        })
    }
}

impl Worker for Raw {
    async fn op(&mut self, _: u64) -> anyhow::Result<()> {
        let tx = self.db.transaction().await?;
        let last: Option<i64> = tx
            .query_one(&self.last_sequence, &[&AGGREGATE, &self.aggregate_id])
            .await?
            .get(0);
        tx.execute(
            &self.insert,
            &[
                &AGGREGATE,
                &self.aggregate_id,
                &(last.unwrap_or(0) + 1),
                &"PolicyVersionDrafted",
                &"1.0",
                &self.payload,
                &self.metadata,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A no-op responder on `<ns>.bench.echo` and the clients' connections to ask it.
pub struct Echo {
    responder: tokio::task::JoinHandle<()>,
    subject: String,
    clients: Vec<async_nats::Client>,
    request: bytes::Bytes,
}

impl Echo {
    pub async fn start(b: &Bench, clients: &[Client]) -> anyhow::Result<Echo> {
        let subject = format!("{}.bench.echo", b.system.settings.namespace);
        let nats = b.system.nats.clone();
        let mut requests = nats.subscribe(subject.clone()).await?;
        // About the size of a command reply.
        let reply = bytes::Bytes::from(vec![b'x'; 300]);
        let responder = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(inbox) = request.reply {
                    let _ = nats.publish(inbox, reply.clone()).await;
                }
            }
        });
        let command = workload::create("echo")?;
        Ok(Echo {
            responder,
            subject,
            clients: clients.iter().map(|c| c.nats().clone()).collect(),
            request: serde_json::to_vec(&command)?.into(),
        })
    }

    pub fn workers(&self, n: usize) -> Vec<EchoWorker> {
        (0..n)
            .map(|i| EchoWorker {
                nats: self.clients[i % self.clients.len()].clone(),
                subject: self.subject.clone(),
                request: self.request.clone(),
            })
            .collect()
    }

    pub fn stop(self) {
        self.responder.abort();
    }
}

pub struct EchoWorker {
    nats: async_nats::Client,
    subject: String,
    request: bytes::Bytes,
}

impl Worker for EchoWorker {
    async fn op(&mut self, _: u64) -> anyhow::Result<()> {
        self.nats
            .request(self.subject.clone(), self.request.clone())
            .await?;
        Ok(())
    }
}
