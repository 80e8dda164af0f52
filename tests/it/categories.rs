//! Categories (issue 11 part 4): rules drafted and activated over NATS, the categoriser
//! keeping `unit_categories` current from the catalog stream, and a `category` rollout that
//! follows a unit's category, on the server and in the client crate.

use std::time::Duration;

use async_nats::jetstream;
use gatehouse::client::ClientError;
use gatehouse_events::category::{seed_rules, Categorised, Category, UnitCategory};
use gatehouse_events::envelope::{CommandAccepted, RejectionCode};
use gatehouse_events::flag::{EvaluateFlag, Evaluation, Reason};
use gatehouse_events::subjects;
use gatehouse_flags::client::{ClientOptions, FlagClient};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::{eventually, spawn_app, TestApp};

async fn send(
    app: &TestApp,
    aggregate: &str,
    name: &str,
    actor: &str,
    body: Value,
) -> Result<CommandAccepted, ClientError> {
    app.client
        .command(aggregate, name, &app.sender(actor), body)
        .await
}

async fn publish(app: &TestApp, id: &str, attributes: Value) {
    let js = jetstream::new(app.client.nats().clone());
    gatehouse_projections::catalog::ensure_stream(&js, &app.settings.namespace)
        .await
        .expect("catalog stream");
    let body = json!({"op": "upsert", "id": id, "status": "ready", "attributes": attributes});
    let subject = subjects::catalog_item(&app.settings.namespace, id);
    js.publish(subject, body.to_string().into())
        .await
        .expect("publish")
        .await
        .expect("PubAck");
}

async fn unit(app: &TestApp, unit: &str) -> Option<UnitCategory> {
    app.client
        .query("category", "get", &json!({"unit": unit}))
        .await
        .ok()
}

async fn evaluate(app: &TestApp, unit: &str) -> Evaluation {
    app.client
        .query(
            "flag",
            "evaluate",
            &EvaluateFlag {
                flag: "checkout.v2".into(),
                unit: Some(unit.into()),
                context: Default::default(),
            },
        )
        .await
        .expect("evaluate")
}

#[tokio::test]
async fn a_catalog_change_recomputes_a_units_category_and_a_category_rollout_follows_it() {
    let app = spawn_app().await;
    let stop = CancellationToken::new();
    let categoriser = tokio::spawn(gatehouse::category::categoriser::run(
        app.settings.clone(),
        stop.clone(),
    ));
    // Changed before any rules are in force: categorised when the rules are activated.
    publish(
        &app,
        "repo-a",
        json!({"stars": 3, "contributors": 1, "prs_per_week": 0.5}),
    )
    .await;

    // The activation categorises what `catalog_items` holds: wait for the catalog projector.
    eventually(Duration::from_secs(10), || async {
        app.count("SELECT count(*) FROM catalog_items WHERE item_id = 'repo-a'")
            .await
            == 1
    })
    .await
    .expect("the catalog holds repo-a");

    // A bad rule is refused at draft, naming the field.
    let mut bad = seed_rules();
    bad.rules[2].condition = "stars >=".into();
    match send(
        &app,
        "category",
        "draft_rules",
        "alice",
        json!({"document": bad}),
    )
    .await
    {
        Err(ClientError::Rejected(r)) => {
            assert_eq!(r.code, RejectionCode::BadRequest);
            assert_eq!(
                r.field.as_deref(),
                Some("command.document.rules[2].condition")
            );
        }
        other => panic!("expected bad_request, got {other:?}"),
    }
    send(
        &app,
        "category",
        "draft_rules",
        "alice",
        json!({"document": seed_rules(), "reason": "seed"}),
    )
    .await
    .expect("draft");
    send(
        &app,
        "category",
        "activate_rules",
        "olga",
        json!({"version": 1, "reason": "in force"}),
    )
    .await
    .expect("activate");
    eventually(Duration::from_secs(10), || async {
        unit(&app, "repo-a").await.is_some_and(|u| {
            u.category == Category::Small && u.priority == 90 && u.rules_version == 1
        })
    })
    .await
    .expect("the activation categorised the catalog");

    // A rollout to small units only.
    send(&app, "flag", "create", "alice", json!({"flag": "checkout.v2", "type": "boolean", "description": "new checkout", "reason": "new"}))
        .await
        .expect("create");
    let done = send(
        &app,
        "flag",
        "set_rollout",
        "olga",
        json!({
            "flag": "checkout.v2", "percentage": 100, "strategy": "category",
            "categories": ["test", "small"], "reason": "small units first"
        }),
    )
    .await
    .expect("set_rollout");
    app.client.wait_for(&done).await.expect("caught up");
    let on = evaluate(&app, "repo-a").await;
    assert_eq!((on.enabled, on.reason), (true, Reason::Category));

    // The client crate evaluates with the category the caller supplies, with the same answer.
    let client = FlagClient::start(
        app.client.nats().clone(),
        &app.settings.namespace,
        ClientOptions::default(),
    )
    .await;
    let small = json!({"category": "small", "priority": 90});
    eventually(Duration::from_secs(5), || async {
        let local = client.evaluate("checkout.v2", Some("repo-a"), small.as_object().unwrap());
        local == on
    })
    .await
    .expect("the client crate agrees");

    // The repository grows: large, so the rollout no longer reaches it.
    publish(
        &app,
        "repo-a",
        json!({"stars": 2500, "contributors": 12, "prs_per_week": 40.0}),
    )
    .await;
    eventually(Duration::from_secs(10), || async {
        unit(&app, "repo-a")
            .await
            .is_some_and(|u| u.category == Category::Large && u.priority == 36)
    })
    .await
    .expect("the change recomputed the category");
    let off = evaluate(&app, "repo-a").await;
    assert_eq!((off.enabled, off.reason), (false, Reason::Category));

    // Listing by category, and computing for a unit Gatehouse does not hold.
    let large: Vec<UnitCategory> = app
        .client
        .query("category", "list", &json!({"category": "large"}))
        .await
        .expect("list");
    assert_eq!(
        large.iter().map(|u| u.unit.as_str()).collect::<Vec<_>>(),
        ["repo-a"]
    );
    let computed: Categorised = app
        .client
        .query(
            "category",
            "compute",
            &json!({"attributes": {"stars": 20000, "contributors": 900, "prs_per_week": 500.0}}),
        )
        .await
        .expect("compute");
    assert_eq!(
        (
            computed.category,
            computed.priority,
            computed.rule.as_deref()
        ),
        (Category::Enterprise, 5, Some("enterprise"))
    );

    stop.cancel();
    let _ = categoriser.await;
}
