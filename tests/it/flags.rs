//! Flags (issue 11): commands and refusals over NATS, the rollout history, remote evaluation,
//! propagation to the client crate, the environment override with Gatehouse stopped, safe mode.

use std::time::{Duration, Instant};

use gatehouse::client::ClientError;
use gatehouse_events::envelope::{CommandAccepted, RejectionCode};
use gatehouse_events::flag::{
    EvaluateBatch, EvaluateFlag, Evaluation, FlagState, Reason, RolloutChange, TriggeredBy,
};
use gatehouse_flags::client::{ClientOptions, FlagClient};
use gatehouse_flags::EmergencyOverride;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app, TestApp};

/// A history row as (change, previous %, %, triggered by, actor).
type Change<'a> = (&'a str, Option<f64>, Option<f64>, TriggeredBy, &'a str);

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

fn rejected_field(result: Result<CommandAccepted, ClientError>) -> (RejectionCode, Option<String>) {
    match result {
        Err(ClientError::Rejected(r)) => (r.code, r.field),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

async fn create_ranker(app: &TestApp) {
    let done = send(app, "flag", "create", "alice", json!({
        "flag": "ranker.policy", "type": "json", "description": "the ranker",
        "schema": {"type": "object", "required": ["version", "epsilon"],
                   "properties": {"version": {"type": "string"}, "epsilon": {"type": "number", "maximum": 1}}},
        "on_value": {"version": "epsilon_greedy_v1", "epsilon": 0.08},
        "off_value": {"version": "baseline", "epsilon": 0},
        "reason": "new ranker"
    }))
    .await
    .expect("create");
    app.client
        .wait_for(&done)
        .await
        .expect("the read model shows the flag");
}

async fn rollout(app: &TestApp, percentage: f64) -> CommandAccepted {
    send(app, "flag", "set_rollout", "olga", json!({"flag": "ranker.policy", "percentage": percentage, "reason": format!("to {percentage}%")}))
        .await
        .expect("set_rollout")
}

async fn evaluate(app: &TestApp, unit: &str) -> Evaluation {
    app.client
        .query(
            "flag",
            "evaluate",
            &EvaluateFlag {
                flag: "ranker.policy".into(),
                unit: Some(unit.into()),
                context: Default::default(),
            },
        )
        .await
        .expect("evaluate")
}

async fn flag_client(app: &TestApp, environment: EmergencyOverride) -> FlagClient {
    let options = ClientOptions {
        environment,
        ..ClientOptions::default()
    };
    FlagClient::start(app.client.nats().clone(), &app.settings.namespace, options).await
}

#[tokio::test]
async fn flag_commands_refusals_history_and_remote_evaluation() {
    let app = spawn_app().await;
    create_ranker(&app).await;
    // Refusals name the field.
    let bad = |body: Value| send(&app, "flag", "set_rollout", "olga", body);
    assert_eq!(
        rejected_field(
            bad(json!({"flag": "ranker.policy", "percentage": 101, "reason": "x"})).await
        ),
        (RejectionCode::BadRequest, Some("command.percentage".into()))
    );
    assert_eq!(
        rejected_field(
            bad(json!({"flag": "ranker.policy", "percentage": 1.005, "reason": "x"})).await
        ),
        (RejectionCode::BadRequest, Some("command.percentage".into()))
    );
    assert_eq!(rejected_field(bad(json!({"flag": "ranker.policy", "percentage": 5, "strategy": "canary", "reason": "x"})).await),
        (RejectionCode::BadRequest, Some("command.strategy".into())));
    let off_schema = send(&app, "flag", "update_values", "alice",
        json!({"flag": "ranker.policy", "on_value": {"version": "v2", "epsilon": 5}, "reason": "v2"})).await;
    assert_eq!(
        rejected_field(off_schema),
        (
            RejectionCode::BadRequest,
            Some("command.on_value.epsilon".into())
        )
    );
    assert_eq!(
        rejected_field(bad(json!({"flag": "nope", "percentage": 5, "reason": "x"})).await).0,
        RejectionCode::NotFound
    );

    // A new flag is at 0%: everyone gets the safe value.
    let first = evaluate(&app, "repo-1").await;
    assert!(!first.enabled);
    assert_eq!(*first.value, json!({"version": "baseline", "epsilon": 0}));
    assert_eq!(first.reason, Reason::Bucket);

    rollout(&app, 25.5).await;
    let done = rollout(&app, 100.0).await;
    app.client.wait_for(&done).await.unwrap();
    let on = evaluate(&app, "repo-1").await;
    assert!(on.enabled);
    assert_eq!(
        *on.value,
        json!({"version": "epsilon_greedy_v1", "epsilon": 0.08})
    );
    assert!(on.bucket.is_some_and(|b| (1..=10_000).contains(&b)));

    let stop = send(
        &app,
        "flag",
        "emergency_stop",
        "olga",
        json!({"flag": "ranker.policy", "reason": "errors up"}),
    )
    .await
    .unwrap();
    app.client.wait_for(&stop).await.unwrap();
    let batch: Vec<Evaluation> = app
        .client
        .query(
            "flag",
            "evaluate_batch",
            &EvaluateBatch {
                evaluations: vec![
                    EvaluateFlag {
                        flag: "ranker.policy".into(),
                        unit: Some("repo-1".into()),
                        context: Default::default(),
                    },
                    EvaluateFlag {
                        flag: "unknown".into(),
                        unit: Some("repo-1".into()),
                        context: Default::default(),
                    },
                ],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (batch[0].enabled, batch[0].reason),
        (false, Reason::EmergencyStop)
    );
    assert_eq!(
        (batch[1].enabled, batch[1].reason),
        (false, Reason::UnknownFlag)
    );

    let history: Vec<RolloutChange> = app
        .client
        .query("flag", "history", &json!({"flag": "ranker.policy"}))
        .await
        .unwrap();
    let changes: Vec<Change<'_>> = history
        .iter()
        .map(|h| {
            (
                h.change.as_str(),
                h.previous_percentage,
                h.percentage,
                h.triggered_by,
                h.actor.as_str(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            (
                "emergency_stop",
                Some(100.0),
                Some(100.0),
                TriggeredBy::EmergencyStop,
                "olga"
            ),
            (
                "set_rollout",
                Some(25.5),
                Some(100.0),
                TriggeredBy::Manual,
                "olga"
            ),
            (
                "set_rollout",
                Some(0.0),
                Some(25.5),
                TriggeredBy::Manual,
                "olga"
            ),
            ("create", Some(0.0), Some(0.0), TriggeredBy::Manual, "alice"),
        ]
    );
    assert_eq!(history[1].reason, "to 100%");
    let listed: Vec<FlagState> = app.client.query("flag", "list", &json!({})).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].emergency_stop.is_some());
    app.stop().await;
}

#[tokio::test]
async fn a_set_rollout_reaches_the_client_crate_without_polling() {
    let app = spawn_app().await;
    create_ranker(&app).await;
    let client = flag_client(&app, EmergencyOverride::None).await;
    assert!(
        client.wait_loaded(Duration::from_secs(10)).await,
        "the client never loaded"
    );
    eventually(Duration::from_secs(10), || async {
        client.flag("ranker.policy").is_some()
    })
    .await
    .unwrap();
    assert!(
        !client
            .evaluate("ranker.policy", Some("repo-1"), &Default::default())
            .enabled
    );

    let started = Instant::now();
    let done = rollout(&app, 100.0).await;
    let committed = started.elapsed();
    eventually(Duration::from_secs(5), || async {
        client
            .evaluate("ranker.policy", Some("repo-1"), &Default::default())
            .enabled
    })
    .await
    .expect("the client did not see the rollout within 5 s");
    eprintln!(
        "set_rollout committed in {committed:?}, visible in the client after {:?}",
        started.elapsed()
    );
    // Same code, same answer as the server (once its read model shows the rollout).
    app.client.wait_for(&done).await.unwrap();
    let local = client.evaluate("ranker.policy", Some("repo-7"), &Default::default());
    let remote = evaluate(&app, "repo-7").await;
    assert_eq!(local, remote);

    // An emergency stop reaches it too.
    send(
        &app,
        "flag",
        "emergency_stop",
        "olga",
        json!({"flag": "ranker.policy", "reason": "errors"}),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(5), || async {
        client
            .evaluate("ranker.policy", Some("repo-1"), &Default::default())
            .reason
            == Reason::EmergencyStop
    })
    .await
    .expect("the client did not see the emergency stop");
    app.stop().await;
}

#[tokio::test]
async fn the_environment_override_holds_with_gatehouse_stopped() {
    let mut app = spawn_app().await;
    create_ranker(&app).await;
    let done = rollout(&app, 100.0).await;
    app.client.wait_for(&done).await.unwrap();
    let loaded = flag_client(&app, EmergencyOverride::None).await;
    eventually(Duration::from_secs(10), || async {
        loaded
            .evaluate("ranker.policy", Some("u"), &Default::default())
            .enabled
    })
    .await
    .unwrap();

    // Gatehouse stops answering.
    app.gateway.take().expect("gateway").stop().await;
    assert!(matches!(
        app.client
            .query::<_, Value>("flag", "get", &json!({"flag": "ranker.policy"}))
            .await,
        Err(ClientError::NoResponders(_) | ClientError::TimedOut(_))
    ));
    // The copy it holds still answers, in-process.
    assert!(
        loaded
            .evaluate("ranker.policy", Some("u"), &Default::default())
            .enabled
    );

    // A service started now, with the override, cannot load anything and still stops the flag.
    let stopped = flag_client(&app, EmergencyOverride::parse("ranker.policy")).await;
    assert!(!stopped.wait_loaded(Duration::from_millis(300)).await);
    let e = stopped.evaluate("ranker.policy", Some("u"), &Default::default());
    assert_eq!((e.enabled, e.reason), (false, Reason::EnvironmentOverride));
    let offline = FlagClient::offline(EmergencyOverride::parse("all"));
    assert_eq!(
        offline
            .evaluate("anything", None, &Default::default())
            .reason,
        Reason::EnvironmentOverride
    );

    // The override wins over a loaded flag at 100% too.
    app.start_gateway();
    let overridden = flag_client(&app, EmergencyOverride::parse("all")).await;
    assert!(overridden.wait_loaded(Duration::from_secs(20)).await);
    assert!(overridden.flag("ranker.policy").is_some());
    let e = overridden.evaluate("ranker.policy", Some("u"), &Default::default());
    assert_eq!(
        (e.enabled, e.reason, &*e.value),
        (
            false,
            Reason::EnvironmentOverride,
            &json!({"version": "baseline", "epsilon": 0})
        )
    );
    app.stop().await;
}

#[tokio::test]
async fn safe_mode_turns_every_flag_off_everywhere() {
    let app = spawn_app().await;
    create_ranker(&app).await;
    send(
        &app,
        "flag",
        "create",
        "alice",
        json!({"flag": "checkout-v2"}),
    )
    .await
    .unwrap();
    send(
        &app,
        "flag",
        "set_rollout",
        "olga",
        json!({"flag": "checkout-v2", "percentage": 100, "reason": "go"}),
    )
    .await
    .unwrap();
    let done = rollout(&app, 100.0).await;
    app.client.wait_for(&done).await.unwrap();
    let client = flag_client(&app, EmergencyOverride::None).await;
    assert!(client.wait_loaded(Duration::from_secs(10)).await);

    let on = send(
        &app,
        "global",
        "safe_mode",
        "olga",
        json!({"on": true, "reason": "incident 42"}),
    )
    .await
    .unwrap();
    app.client.wait_for(&on).await.unwrap();
    let again = send(
        &app,
        "global",
        "safe_mode",
        "olga",
        json!({"on": true, "reason": "twice"}),
    )
    .await;
    assert_eq!(
        rejected_field(again),
        (RejectionCode::Unchanged, Some("command.on".into()))
    );
    let remote = evaluate(&app, "u").await;
    assert_eq!((remote.enabled, remote.reason), (false, Reason::SafeMode));
    assert_eq!(*remote.value, json!({"version": "baseline", "epsilon": 0}));
    eventually(Duration::from_secs(5), || async { client.safe_mode() })
        .await
        .expect("the client saw safe mode");
    for key in ["ranker.policy", "checkout-v2"] {
        let e = client.evaluate(key, Some("u"), &Default::default());
        assert_eq!((e.enabled, e.reason), (false, Reason::SafeMode), "{key}");
    }
    assert_eq!(
        *client
            .evaluate("checkout-v2", Some("u"), &Default::default())
            .value,
        json!(false)
    );

    let off = send(
        &app,
        "global",
        "safe_mode",
        "olga",
        json!({"on": false, "reason": "resolved"}),
    )
    .await
    .unwrap();
    app.client.wait_for(&off).await.unwrap();
    assert!(evaluate(&app, "u").await.enabled);
    eventually(Duration::from_secs(5), || async {
        client
            .evaluate("checkout-v2", Some("u"), &Default::default())
            .enabled
    })
    .await
    .expect("the client saw safe mode off");
    let history: Vec<RolloutChange> = app
        .client
        .query("flag", "history", &json!({"flag": "*"}))
        .await
        .unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| h.change.as_str())
            .collect::<Vec<_>>(),
        ["safe_mode_off", "safe_mode_on"]
    );
    assert!(history
        .iter()
        .all(|h| h.triggered_by == TriggeredBy::SafeMode));
    app.stop().await;
}

/// Publishes `n` outcomes of `flag` (`success` each) on the outcomes stream.
async fn report(app: &TestApp, flag: &str, n: usize, success: bool) {
    let js = gatehouse::broker::jetstream(app.client.nats());
    for i in 0..n {
        let outcome = gatehouse_events::flag::FlagOutcome {
            flag: flag.into(),
            unit: Some(format!("repo-{i}")),
            variant: Some("epsilon_greedy_v1".into()),
            success,
            duration_ms: 12.5,
            error: (!success).then(|| "timeout".into()),
        };
        let subject = gatehouse_events::subjects::flag_outcomes(&app.settings.namespace, flag);
        js.publish(subject, serde_json::to_vec(&outcome).unwrap().into())
            .await
            .expect("publish")
            .await
            .expect("pub ack");
    }
}

#[tokio::test]
async fn auto_rollback_fires_above_the_error_rate_and_holds_below_the_minimum_volume() {
    let app = spawn_app().await;
    let monitor_stop = tokio_util::sync::CancellationToken::new();
    let monitor = tokio::spawn(gatehouse::flag::monitor::run(
        app.settings.clone(),
        monitor_stop.clone(),
    ));
    create_ranker(&app).await;
    let done = send(
        &app,
        "flag",
        "set_rollout",
        "olga",
        json!({
            "flag": "ranker.policy", "percentage": 50, "reason": "half",
            "auto_rollback": {"max_error_rate": 0.2, "min_volume": 20, "window_secs": 3600}
        }),
    )
    .await
    .unwrap();
    app.client.wait_for(&done).await.unwrap();

    // 10 errors: above the rate, below the minimum volume: counted, and the rollout holds.
    report(&app, "ranker.policy", 10, false).await;
    let stats = || async {
        app.client
            .query::<_, Vec<gatehouse_events::flag::OutcomeWindow>>(
                "flag",
                "stats",
                &json!({"flag": "ranker.policy"}),
            )
            .await
            .unwrap()
    };
    eventually(Duration::from_secs(20), || async {
        stats().await.first().is_some_and(|w| w.total == 10)
    })
    .await
    .expect("the monitor counted the outcomes");
    let window = stats().await.remove(0);
    assert_eq!(
        (
            window.errors,
            window.successes,
            window.error_rate,
            window.window_secs
        ),
        (10, 0, 1.0, 3600)
    );
    assert!((window.avg_duration_ms - 12.5).abs() < 1e-9);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held: FlagState = app
        .client
        .query("flag", "get", &json!({"flag": "ranker.policy"}))
        .await
        .unwrap();
    assert_eq!(held.rollout.percentage, 50.0, "held below min_volume");

    // 40 successes and 15 more errors (25 of 65 at the end, 38%) push the rate past 20% with at
    // least 20 outcomes: rolled back to 0%.
    report(&app, "ranker.policy", 40, true).await;
    report(&app, "ranker.policy", 15, false).await;
    eventually(Duration::from_secs(20), || async {
        app.client
            .query::<_, FlagState>("flag", "get", &json!({"flag": "ranker.policy"}))
            .await
            .is_ok_and(|f| f.rollout.percentage == 0.0)
    })
    .await
    .expect("the rollout went to 0%");
    let history: Vec<RolloutChange> = app
        .client
        .query("flag", "history", &json!({"flag": "ranker.policy"}))
        .await
        .unwrap();
    let last = &history[0];
    assert_eq!(last.triggered_by, TriggeredBy::AutoRollback);
    assert_eq!(
        (last.previous_percentage, last.percentage),
        (Some(50.0), Some(0.0))
    );
    // The monitor looks after every fetched batch: it fires at the first count past both
    // limits, which may come before the last of the 55 outcomes.
    assert!(
        last.reason.contains("exceeds 20.00% (min volume 20)"),
        "{}",
        last.reason
    );
    assert_eq!(last.actor, "gatehouse");
    let rolled: FlagState = app
        .client
        .query("flag", "get", &json!({"flag": "ranker.policy"}))
        .await
        .unwrap();
    assert!(
        rolled.rollout.auto_rollback.is_some(),
        "the rest of the rollout is kept"
    );

    monitor_stop.cancel();
    let _ = monitor.await;
    app.stop().await;
}

/// A service of the `CLIENTS` account (`svc`, role `service`) runs the client crate: it follows
/// flag changes through the account's import of the flag events and reports outcomes into the
/// outcomes stream through its import — and sees no other event.
#[tokio::test]
async fn a_service_of_the_client_account_follows_flags_and_reports_outcomes() {
    let app = crate::helpers::spawn_app_with_users().await;
    create_ranker(&app).await;
    let svc = crate::helpers::connect_as("svc", "GATEHOUSE_SVC_PASSWORD", None).await;
    let client = FlagClient::start(
        svc.clone(),
        &app.settings.namespace,
        ClientOptions::default(),
    )
    .await;
    assert!(
        client.wait_loaded(Duration::from_secs(10)).await,
        "svc could not load the flags"
    );
    rollout(&app, 100.0).await;
    eventually(Duration::from_secs(10), || async {
        client
            .evaluate("ranker.policy", Some("repo-1"), &Default::default())
            .enabled
    })
    .await
    .expect("svc's client did not see the rollout");

    // The flag monitor (not running here) creates the outcomes stream.
    gatehouse::broker::ensure_outcomes_stream(
        &gatehouse::broker::jetstream(app.client.nats()),
        &app.settings,
    )
    .await
    .unwrap();
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(30))
        .build(svc.clone());
    let outcome = gatehouse_events::flag::FlagOutcome {
        flag: "ranker.policy".into(),
        unit: Some("repo-1".into()),
        variant: None,
        success: true,
        duration_ms: 3.0,
        error: None,
    };
    let ack = js
        .publish(
            gatehouse_events::subjects::flag_outcomes(&app.settings.namespace, "ranker.policy"),
            serde_json::to_vec(&outcome).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .expect("a PubAck from the outcomes stream");
    assert_eq!(
        ack.stream,
        gatehouse_events::subjects::outcomes_stream(&app.settings.namespace)
    );
    // Other events are not exported: a subscription to them is refused by the server.
    let mut others = svc
        .subscribe(gatehouse_events::subjects::aggregate_events(
            &app.settings.namespace,
            "policy",
        ))
        .await
        .unwrap();
    app.policy_with_versions("media", &[0.5]).await;
    let got = tokio::time::timeout(
        Duration::from_secs(2),
        futures::StreamExt::next(&mut others),
    )
    .await;
    assert!(
        !matches!(got, Ok(Some(_))),
        "svc received a policy event: {got:?}"
    );
    app.stop().await;
}
