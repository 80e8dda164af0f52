//! The consumer runtime against the real broker: a batch that is poison is handed over again
//! message by message, so only the bad message is dead-lettered and the good ones beside it
//! are handled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::Message;
use gatehouse_events::subjects;
use gatehouse_projections::consumer::{self, ConsumerSettings, Handler, Health, Outcome};
use gatehouse_projections::dead_letter;
use tokio_util::sync::CancellationToken;

use crate::helpers::{eventually, spawn_app};

/// Acks a batch only if none of its messages says `bad`; remembers what it acked.
struct Picky {
    handled: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl Handler for Picky {
    async fn handle(&self, messages: &[Message]) -> Outcome {
        if messages.iter().any(|m| m.payload.as_ref() == b"bad") {
            return Outcome::Poison("a bad message".into());
        }
        let mut handled = self.handled.lock().unwrap();
        handled.extend(messages.iter().map(|m| m.subject.to_string()));
        Outcome::Ack
    }
}

#[tokio::test]
async fn one_poison_message_in_a_batch_parks_only_itself() {
    let app = spawn_app().await;
    let ns = app.settings.namespace.clone();
    let js = gatehouse::broker::jetstream(app.client.nats());
    gatehouse::broker::ensure_catalog_stream(&js, &app.settings)
        .await
        .expect("catalog stream");
    dead_letter::ensure_stream(&js, &ns)
        .await
        .expect("dead-letter stream");
    for (id, body) in [
        ("a", "good"),
        ("b", "good"),
        ("c", "bad"),
        ("d", "good"),
        ("e", "good"),
    ] {
        js.publish(subjects::catalog_item(&ns, id), body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let name = format!("{ns}_probe");
    let pull = js
        .get_stream(subjects::catalog_stream(&ns))
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some(name.clone()),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut settings = ConsumerSettings::new(name.clone(), ns.clone());
    settings.batch = 10;
    settings.fetch_expiry = Duration::from_millis(200);
    let handled = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer::run(
        pull,
        js.clone(),
        settings,
        Health::default(),
        Picky {
            handled: handled.clone(),
        },
        stop.clone(),
    ));

    eventually(Duration::from_secs(20), || async {
        handled.lock().unwrap().len() == 4
    })
    .await
    .expect("the four good messages are handled");
    let mut got = handled.lock().unwrap().clone();
    got.sort();
    let want: Vec<String> = ["a", "b", "d", "e"]
        .iter()
        .map(|id| subjects::catalog_item(&ns, id))
        .collect();
    assert_eq!(got, want);
    let parked = || async {
        let mut dlq = js
            .get_stream(subjects::dead_letter_stream(&ns))
            .await
            .unwrap();
        dlq.info().await.unwrap().state.messages
    };
    eventually(Duration::from_secs(10), || async { parked().await == 1 })
        .await
        .expect("only the bad message is dead-lettered");
    stop.cancel();
    task.await.unwrap();
    assert_eq!(parked().await, 1);
    app.stop().await;
}
