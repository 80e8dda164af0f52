use super::*;
use crate::test_support::{doc, reference_doc, schema};
use gatehouse_events::rules::Decision::{Allow, Deny, Quarantine};
use proptest::prelude::*;
use serde_json::json;

fn policy(rules: &[(&str, &str, Decision)], score: &str) -> CompiledPolicy {
    validate_ok(&doc(rules, score))
}

fn validate_ok(doc: &RulesDocument) -> CompiledPolicy {
    CompiledPolicy::compile(doc, &schema()).expect("the document is valid")
}

fn evaluate(policy: &CompiledPolicy, attributes: Json) -> Result<Evaluation, EvalError> {
    policy.evaluate(&policy.item(&attributes).expect("the item fits the schema"))
}

fn clean_item() -> Json {
    json!({"kind": "video", "quality": 0.9, "rating": 4.0, "trending": 10.0, "tags": ["news"],
           "scan": {"status": "clean", "critical": 0}, "age_days": 10})
}

#[test]
fn the_first_matching_rule_decides() {
    let policy = policy(
        &[
            ("first", "quality > 0.5", Quarantine),
            ("second", "true", Deny),
        ],
        "0",
    );
    let evaluation = evaluate(&policy, clean_item()).unwrap();
    assert_eq!(
        (evaluation.decision, evaluation.rule_id.as_deref()),
        (Quarantine, Some("first"))
    );
    assert_eq!(&*evaluation.reason, "because first");
}

#[test]
fn the_default_decision_applies_when_no_rule_matches() {
    let policy = validate_ok(&reference_doc());
    let evaluation = evaluate(&policy, clean_item()).unwrap();
    assert_eq!((evaluation.decision, evaluation.rule_id), (Allow, None));
    assert_eq!(&*evaluation.reason, "default");
}

#[test]
fn the_reference_rules_decide_like_the_reference() {
    let policy = validate_ok(&reference_doc());
    let mut item = clean_item();
    item["tags"] = json!(["news", "banned"]);
    let evaluation = evaluate(&policy, item).unwrap();
    assert_eq!(
        (evaluation.decision, evaluation.rule_id.as_deref()),
        (Deny, Some("banned-tag"))
    );
    assert!((evaluation.score - (10.0 * 0.7 + 4.0 * 10.0 * 0.3)).abs() < 1e-9);
}

#[test]
fn the_score_is_evaluated_when_a_rule_matches() {
    let policy = policy(&[("always", "true", Deny)], "rating * 2.0");
    assert_eq!(evaluate(&policy, clean_item()).unwrap().score, 8.0);
}

#[test]
fn an_int_score_becomes_a_double() {
    let policy = policy(&[], "age_days * 3");
    assert_eq!(evaluate(&policy, clean_item()).unwrap().score, 30.0);
}

#[test]
fn a_uint_score_becomes_a_double() {
    let policy = policy(&[], "uint(age_days)");
    assert_eq!(evaluate(&policy, clean_item()).unwrap().score, 10.0);
}

#[test]
fn a_non_finite_score_is_an_evaluation_error() {
    let policy = policy(&[], "rating / 0.0");
    let error = evaluate(&policy, clean_item()).unwrap_err();
    assert_eq!((error.location.as_str(), error.rule_id), ("score", None));
}

#[test]
fn a_rule_referencing_a_missing_attribute_is_an_evaluation_error_naming_the_rule() {
    let policy = policy(&[("low", "quality < 0.4", Deny)], "1");
    let error = evaluate(&policy, json!({"kind": "video"})).unwrap_err();
    assert_eq!(error.location, "rules[0].condition");
    assert_eq!(error.rule_id.as_deref(), Some("low"));
    assert_eq!(error.message, "the item has no attribute `quality`");
}

#[test]
fn a_rule_referencing_a_missing_field_names_the_field() {
    let policy = policy(&[("critical", "scan.critical > 0", Deny)], "1");
    let error = evaluate(&policy, json!({"scan": {"status": "clean"}})).unwrap_err();
    assert_eq!(error.message, "the item has no field `critical`");
}

#[test]
fn a_condition_yielding_a_non_bool_for_an_item_is_an_evaluation_error() {
    // The samples' kinds ("" and "sample") both take the bool branch, so this validates.
    let policy = policy(&[("odd", r#"kind == "video" ? 1 : true"#, Deny)], "1");
    let error = evaluate(&policy, clean_item()).unwrap_err();
    assert_eq!(error.message, "the condition yielded int, expected bool");
}

#[test]
fn timestamps_compare_across_offsets() {
    let condition = r#"published_at > timestamp("2024-03-01T00:00:00Z")"#;
    let policy = policy(&[("recent", condition, Deny)], "1");
    let after = json!({"published_at": "2024-03-01T01:30:00+01:00"}); // 00:30 UTC
    let before = json!({"published_at": "2024-03-01T00:30:00+01:00"}); // 23:30 UTC the day before
    assert_eq!(evaluate(&policy, after).unwrap().decision, Deny);
    assert_eq!(evaluate(&policy, before).unwrap().decision, Allow);
}

#[test]
fn a_policy_declaring_one_attribute_evaluates_items_carrying_more() {
    let schema: AttributeSchema = serde_json::from_value(json!({"quality": "double"})).unwrap();
    let policy =
        CompiledPolicy::compile(&doc(&[("low", "quality < 0.4", Deny)], "quality"), &schema);
    let policy = policy.unwrap();
    let attributes = br#"{"quality": 0.25, "age_days": 3, "scan": {"status": "clean"}}"#;
    let evaluation = policy.evaluate(&policy.item_from_text(attributes).unwrap());
    assert_eq!(evaluation.map(|e| (e.decision, e.score)), Ok((Deny, 0.25)));
}

#[test]
fn an_integer_given_for_a_double_attribute_compares_as_a_double() {
    let policy = policy(&[("low-rated", "rating < 2.0", Deny)], "rating");
    let evaluation = evaluate(&policy, json!({"rating": 1})).unwrap();
    assert_eq!((evaluation.decision, evaluation.score), (Deny, 1.0));
}

#[test]
fn an_item_is_checked_against_the_policy_schema() {
    let policy = validate_ok(&reference_doc());
    let attributes = json!({"quality": "high"});
    assert!(
        matches!(policy.item(&attributes), Err(ItemError::WrongType { path, .. }) if path == "quality")
    );
}

#[test]
fn a_compiled_policy_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledPolicy>();
}

#[test]
fn one_policy_evaluates_on_several_threads() {
    let policy = Arc::new(validate_ok(&reference_doc()));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let policy = Arc::clone(&policy);
            std::thread::spawn(move || evaluate(&policy, clean_item()).map(|e| e.decision))
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), Ok(Allow));
    }
}

/// Items that fit the reference schema; any attribute may be absent.
fn arb_item() -> impl Strategy<Value = Json> {
    let tags = proptest::sample::subsequence(vec!["news", "kids", "banned", "tech"], 0..4);
    (
        (
            prop::option::of(0.0..1.0f64),
            prop::option::of(0.0..5.0f64),
            0.0..1000.0f64,
        ),
        (
            tags,
            prop::sample::select(vec!["clean", "infected"]),
            0..3i64,
        ),
        (
            prop::sample::select(vec!["video", "image"]),
            prop::option::of(0..1000i64),
        ),
    )
        .prop_map(
            |((quality, rating, trending), (tags, status, critical), (kind, age))| {
                json!({"quality": quality, "rating": rating, "trending": trending, "tags": tags,
                   "scan": {"status": status, "critical": critical}, "kind": kind, "age_days": age})
            },
        )
}

/// Conditions that never hold, whatever the item.
fn arb_false_rules() -> impl Strategy<Value = Vec<(String, Decision)>> {
    let never = prop::sample::select(vec![
        "false",
        "1 > 2",
        "size(tags) < 0",
        r#"kind == "video" && false"#,
        "!true",
        r#"tags.exists(t, t == "never")"#,
    ]);
    let decision = prop::sample::select(vec![Allow, Deny, Quarantine]);
    prop::collection::vec((never.prop_map(str::to_owned), decision), 0..8)
}

/// Syntactically valid expressions over the reference attributes, of any (often wrong) type.
fn arb_expression() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(vec![
        "quality",
        "age_days",
        "tags",
        "scan.status",
        "scan.critical",
        "kind",
        "published_at",
        "scan",
        "t",
        "1",
        "0",
        "-1",
        "2.5",
        "0.0",
        "1u",
        "'x'",
        "''",
        "'banned'",
        "true",
        "null",
        "9223372036854775807",
        "[]",
        "{}",
        "duration('1h')",
        "timestamp('2024-01-01T00:00:00Z')",
    ])
    .prop_map(str::to_owned);
    leaf.prop_recursive(4, 24, 3, |inner| {
        let op = prop::sample::select(vec![
            "+", "-", "*", "/", "%", "==", "!=", "<", ">=", "&&", "||", "in",
        ]);
        let function = prop::sample::select(vec![
            "size",
            "int",
            "uint",
            "double",
            "string",
            "timestamp",
            "duration",
            "max",
            "type",
        ]);
        let method = prop::sample::select(vec!["contains", "startsWith", "matches", "getHours"]);
        let iterate = prop::sample::select(vec!["exists", "all", "map", "filter", "exists_one"]);
        prop_oneof![
            (inner.clone(), op, inner.clone()).prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("!{a}")),
            (function, inner.clone()).prop_map(|(f, a)| format!("{f}({a})")),
            (inner.clone(), method, inner.clone()).prop_map(|(a, m, b)| format!("{a}.{m}({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}[{b}]")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("({a} ? {b} : {c})")),
            (inner.clone(), iterate, inner.clone())
                .prop_map(|(a, m, b)| format!("{a}.{m}(t, {b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("[{a}, {b}]")),
        ]
    })
}

proptest! {
    #[test]
    fn validation_and_evaluation_never_panic(
        condition in arb_expression(), score in arb_expression(), item in arb_item(),
    ) {
        if let Ok(policy) = CompiledPolicy::compile(&doc(&[("r", &condition, Deny)], &score), &schema()) {
            let _ = evaluate(&policy, item);
        }
    }

    #[test]
    fn evaluation_is_deterministic(item in arb_item()) {
        let policy = validate_ok(&reference_doc());
        let again = validate_ok(&reference_doc());
        let first = evaluate(&policy, item.clone());
        prop_assert_eq!(&first, &evaluate(&policy, item.clone()));
        prop_assert_eq!(&first, &evaluate(&again, item));
    }

    #[test]
    fn a_document_whose_conditions_never_hold_yields_the_default(
        rules in arb_false_rules(), item in arb_item(), default in prop::sample::select(vec![Allow, Deny, Quarantine]),
    ) {
        let ids: Vec<String> = (0..rules.len()).map(|i| format!("never-{i}")).collect();
        let rules: Vec<_> = rules.iter().zip(&ids).map(|((c, d), id)| (id.as_str(), c.as_str(), *d)).collect();
        let mut doc = doc(&rules, "trending");
        doc.default_decision = default;
        let evaluation = evaluate(&validate_ok(&doc), item).unwrap();
        prop_assert_eq!((evaluation.decision, evaluation.rule_id), (default, None));
    }
}
