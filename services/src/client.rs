//! A typed Gatehouse client over NATS: sends commands and queries, decodes replies.

use std::time::Duration;

use async_nats::{Request, RequestErrorKind};
use gatehouse_events::envelope::{
    CommandAccepted, CommandRequest, Rejection, Reply, WaitFor, WAIT_FOR_FIELD,
};
use gatehouse_events::subjects;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a request got no result.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Gatehouse answered with a rejection.
    #[error("{0}")]
    Rejected(Rejection),
    /// No gateway is listening on the subject.
    #[error("no Gatehouse gateway is serving `{0}` (is `gatehouse up` running with the same namespace?)")]
    NoResponders(String),
    /// No reply in time: the command may or may not have been executed; retry with the same id.
    #[error("no reply on `{0}` in time; retry with the same command id")]
    TimedOut(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error("undecodable reply: {0}")]
    Decode(String),
}

/// A Gatehouse client for one namespace.
#[derive(Clone)]
pub struct Client {
    nats: async_nats::Client,
    namespace: String,
    timeout: Duration,
}

/// Who sends a command and under which idempotency key.
#[derive(Debug, Clone)]
pub struct Sender {
    pub actor: String,
    pub command_id: String,
    pub correlation_id: Option<String>,
}

impl Client {
    pub fn new(nats: async_nats::Client, namespace: impl Into<String>, timeout: Duration) -> Self {
        Client {
            nats,
            namespace: namespace.into(),
            timeout,
        }
    }

    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Sends command `name` (e.g. `draft`) to `aggregate` (e.g. `policy`).
    pub async fn command<C: Serialize>(
        &self,
        aggregate: &str,
        name: &str,
        sender: &Sender,
        command: C,
    ) -> Result<CommandAccepted, ClientError> {
        self.command_reply(aggregate, name, sender, command).await
    }

    /// Like [`Client::command`], for a command whose reply is not a plain [`CommandAccepted`]
    /// (`decision.evaluate` answers a `DecisionReply`).
    pub async fn command_reply<C: Serialize, R: DeserializeOwned>(
        &self,
        aggregate: &str,
        name: &str,
        sender: &Sender,
        command: C,
    ) -> Result<R, ClientError> {
        let request = CommandRequest {
            command_id: sender.command_id.clone(),
            actor: sender.actor.clone(),
            correlation_id: sender.correlation_id.clone(),
            causation_id: None,
            command,
        };
        let body = serde_json::to_vec(&request).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.send_raw(&subjects::command(&self.namespace, aggregate, name), body)
            .await
    }

    /// Sends query `name` (e.g. `versions`) to `model` (e.g. `policy`).
    pub async fn query<Q: Serialize, R: DeserializeOwned>(
        &self,
        model: &str,
        name: &str,
        query: &Q,
    ) -> Result<R, ClientError> {
        let body = serde_json::to_vec(query).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.send_raw(&subjects::query(&self.namespace, model, name), body)
            .await
    }

    /// Like [`Client::query`], answered once the read model reflects `wait` (read-your-writes;
    /// `not_caught_up` when it does not in time).
    pub async fn query_after<Q: Serialize, R: DeserializeOwned>(
        &self,
        model: &str,
        name: &str,
        query: &Q,
        wait: &WaitFor,
    ) -> Result<R, ClientError> {
        let mut body =
            serde_json::to_value(query).map_err(|e| ClientError::Decode(e.to_string()))?;
        let wait = serde_json::to_value(wait).map_err(|e| ClientError::Decode(e.to_string()))?;
        match body.as_object_mut() {
            Some(fields) => fields.insert(WAIT_FOR_FIELD.to_owned(), wait),
            None => return Err(ClientError::Decode("a query is a JSON object".into())),
        };
        self.query(model, name, &body).await
    }

    /// Waits until the queries of the command's aggregate show the command `done` answers
    /// (`policy.get` for a policy, else the audit log).
    pub async fn wait_for(&self, done: &CommandAccepted) -> Result<(), ClientError> {
        let wait = WaitFor::after(done);
        let (model, name, query) = match done.aggregate.as_str() {
            "policy" => (
                "policy",
                "get",
                serde_json::json!({"policy_id": done.aggregate_id}),
            ),
            "repo" => (
                "repo",
                "get",
                serde_json::json!({"repo": done.aggregate_id}),
            ),
            "artifact" => {
                let (repo, item_id) = done
                    .aggregate_id
                    .split_once(':')
                    .unwrap_or((done.aggregate_id.as_str(), ""));
                (
                    "decision",
                    "list",
                    serde_json::json!({"repo": repo, "item_id": item_id, "limit": 1}),
                )
            }
            "flag" => (
                "flag",
                "get",
                serde_json::json!({"flag": done.aggregate_id}),
            ),
            "global" => ("global", "get", serde_json::json!({})),
            _ => ("audit", "log", serde_json::json!({"limit": 1})),
        };
        self.query_after::<_, serde_json::Value>(model, name, &query, &wait)
            .await
            .map(drop)
    }

    /// Sends raw bytes to `subject` and decodes the reply.
    pub async fn send_raw<R: DeserializeOwned>(
        &self,
        subject: &str,
        body: Vec<u8>,
    ) -> Result<R, ClientError> {
        let request = Request::new()
            .payload(body.into())
            .timeout(Some(self.timeout));
        let reply = self
            .nats
            .send_request(subject.to_owned(), request)
            .await
            .map_err(|e| match e.kind() {
                RequestErrorKind::NoResponders => ClientError::NoResponders(subject.to_owned()),
                RequestErrorKind::TimedOut => ClientError::TimedOut(subject.to_owned()),
                _ => ClientError::Transport(e.to_string()),
            })?;
        let reply: Reply<R> = serde_json::from_slice(&reply.payload)
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        reply.into_result().map_err(ClientError::Rejected)
    }
}
