//! The one HTTP client of the tests: the app's HTTP API on a free port, raw HTTP/1.1 requests
//! over a fresh connection each, and bearer tokens issued by Gatehouse itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse::api::App;
use gatehouse::settings::Settings;
use gatehouse_events::access::{IssueToken, IssuedToken};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::helpers::TestApp;

/// How long a response (a run's event stream included) may take to end.
const RESPONSE_DEADLINE: Duration = Duration::from_secs(60);

/// The HTTP API (and console) of `app` on a free port, stopped with the token.
pub(crate) async fn serve(app: &TestApp) -> (SocketAddr, CancellationToken) {
    let timeout = Duration::from_millis(gatehouse::settings::DEFAULT_HTTP_TIMEOUT_MS);
    serve_within(app, &app.settings, timeout).await
}

/// Like [`serve`], expecting the streams `broker` configures (for `/readyz`) and answering
/// 503 to a request not answered within `timeout`.
pub(crate) async fn serve_within(
    app: &TestApp,
    broker: &Settings,
    timeout: Duration,
) -> (SocketAddr, CancellationToken) {
    let s = &app.settings;
    let pg = gatehouse::db::pool(&s.database_url, 4).unwrap();
    let sqlx = gatehouse::db::sqlx_pool(&s.database_url, 4).await.unwrap();
    let api =
        App::new(sqlx, pg, s.namespace.clone()).with_broker(app.client.nats().clone(), broker);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(gatehouse::http::serve_within(
        Arc::new(api),
        listener,
        timeout,
        stop.clone(),
    ));
    (addr, stop)
}

/// An HTTP answer: status, head (status line and headers) as text, headers by lower-case
/// name, the body as JSON (`Null` when it is not JSON) and as text.
pub(crate) struct Answer {
    pub status: u16,
    pub head: String,
    pub headers: HashMap<String, String>,
    pub json: Value,
    pub text: String,
}

impl Answer {
    /// The value of the header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One HTTP/1.1 request over a fresh connection, read to its end. The body is sent as
/// `application/json`.
pub(crate) async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: gatehouse\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(RESPONSE_DEADLINE, stream.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: the response ended"))
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        head: head.to_owned(),
        headers,
        json: serde_json::from_str(payload).unwrap_or(Value::Null),
        text: payload.to_owned(),
    }
}

/// One HTTP/1.1 request; the status and the body as JSON (`Value::Null` when it is not JSON).
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let answer = send(addr, method, path, headers, body).await;
    (answer.status, answer.json)
}

/// Like [`request`], with the response's head (status line and headers) as text.
pub(crate) async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Value) {
    let answer = send(addr, method, path, headers, body).await;
    (answer.status, answer.head, answer.json)
}

/// A bearer token for `user`, issued as Gatehouse itself: (token id, token).
pub(crate) async fn issue(app: &TestApp, user: &str) -> (String, String) {
    let body = serde_json::to_vec(&json!({
        "command_id": uuid::Uuid::new_v4().to_string(),
        "actor": "alice",
        "command": IssueToken { user: user.into(), name: "test".into() },
    }))
    .unwrap();
    let subject =
        gatehouse_events::subjects::command(&app.settings.namespace, "access", "issue_token");
    let reply = app
        .client
        .nats()
        .request(subject, body.into())
        .await
        .unwrap();
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    let issued: IssuedToken = serde_json::from_value(reply["result"].clone()).unwrap();
    (issued.token_id.unwrap(), issued.token.unwrap())
}

/// A bearer token for `user` (see [`issue`]), as the `Authorization` header's value.
pub(crate) async fn authorization(app: &TestApp, user: &str) -> String {
    bearer(&issue(app, user).await.1)
}

/// The streams the worker and the flag monitor create at start, which `spawn_app` does not
/// run: `/readyz` answers ready once they exist too.
pub(crate) async fn create_role_streams(app: &TestApp) {
    let js = gatehouse::broker::jetstream(app.client.nats());
    gatehouse::broker::ensure_jobs_stream(&js, &app.settings)
        .await
        .unwrap();
    gatehouse::broker::ensure_outcomes_stream(&js, &app.settings)
        .await
        .unwrap();
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
