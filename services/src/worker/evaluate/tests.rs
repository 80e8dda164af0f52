use serde_json::json;

use super::*;

fn policy() -> CompiledPolicy {
    let schema =
        serde_json::from_value(json!({"quality": "double", "tags": "list<string>"})).unwrap();
    let rules = serde_json::from_value(json!({
        "rules": [
            {"id": "banned", "condition": "\"banned\" in tags", "decision": "quarantine", "reason": "banned tag"},
            {"id": "low", "condition": "quality < 0.5", "decision": "deny", "reason": "low quality"}
        ],
        "default_decision": "allow",
        "default_reason": "fine",
        "score": "quality * 10.0"
    }))
    .unwrap();
    gatehouse_rules::validate(&rules, &schema).unwrap()
}

fn ready(attributes: serde_json::Value) -> ItemState {
    ItemState::of("ready", false, Attributes::Json(attributes))
}

fn candidate(i: usize, state: ItemState) -> Candidate {
    Candidate {
        item_id: format!("m-{i}"),
        item_seq: i as i64,
        state,
    }
}

#[test]
fn the_first_matching_rule_decides_with_its_reason_and_the_score() {
    let verdict = evaluate(&policy(), &ready(json!({"quality": 0.25, "tags": []})));
    assert_eq!(verdict.outcome, Outcome::Deny);
    assert_eq!(verdict.rule_id.as_deref(), Some("low"));
    assert_eq!(&*verdict.reason, "low quality");
    assert_eq!(verdict.score, 2.5);
}

#[test]
fn attributes_read_as_json_text_decide_like_parsed_ones() {
    let text = br#"{"quality": 0.9, "tags": ["banned"]}"#.to_vec();
    let state = ItemState::of("ready", false, Attributes::Text(text));
    assert_eq!(evaluate(&policy(), &state).outcome, Outcome::Quarantine);
}

#[test]
fn attributes_text_that_is_not_json_is_an_error_saying_so() {
    let state = ItemState::of("ready", false, Attributes::Text(b"{\"quality\": ".to_vec()));
    let verdict = evaluate(&policy(), &state);
    assert_eq!(verdict.outcome, Outcome::Error);
    assert_eq!(
        &*verdict.reason,
        "attributes are not JSON: EOF while parsing a value at line 1 column 12"
    );
}

#[test]
fn attributes_read_as_json_text_get_the_verdicts_of_parsed_ones() {
    for text in [
        r#"{"quality": 0.25, "tags": ["news"]}"#,
        r#"{"quality": 0.9, "tags": ["banned"], "tags": []}"#,
        r#"{"quality": "high", "tags": []}"#,
        r#"{"quality": 1, "tags": [], "colour": "red"}"#,
        r#"{"quality": 1}"#,
        "[]",
    ] {
        let json = serde_json::from_str(text).unwrap();
        let text = ItemState::of("ready", false, Attributes::Text(text.into()));
        assert_eq!(
            evaluate(&policy(), &text),
            evaluate(&policy(), &ready(json))
        );
    }
}

#[test]
fn a_deleted_item_is_pending() {
    let state = ItemState::of("ready", true, Attributes::Json(json!({"quality": 1.0})));
    let verdict = evaluate(&policy(), &state);
    assert_eq!(verdict.outcome, Outcome::Pending);
    assert_eq!(&*verdict.reason, "deleted");
}

#[test]
fn an_item_no_longer_ready_is_pending() {
    let state = ItemState::of("draft", false, Attributes::Json(json!({"quality": 1.0})));
    assert_eq!(evaluate(&policy(), &state).outcome, Outcome::Pending);
}

#[test]
fn attributes_outside_the_schema_are_ignored() {
    let verdict = evaluate(
        &policy(),
        &ready(json!({"quality": 1.0, "tags": [], "color": "red", "scan": {"critical": 1}})),
    );
    assert_eq!((verdict.outcome, verdict.score), (Outcome::Allow, 10.0));
}

#[test]
fn a_declared_attribute_of_the_wrong_type_is_an_error_naming_it() {
    let verdict = evaluate(&policy(), &ready(json!({"quality": "high", "tags": []})));
    assert_eq!(verdict.outcome, Outcome::Error);
    assert_eq!(
        &*verdict.reason,
        "attribute `quality`: expected double, got a string"
    );
}

#[test]
fn a_failing_evaluation_is_an_error_not_a_dropped_item() {
    // `tags` is missing: the first rule cannot be evaluated.
    let verdict = evaluate(&policy(), &ready(json!({"quality": 1.0})));
    assert_eq!(verdict.outcome, Outcome::Error);
    assert!(verdict.reason.contains("tags"), "{}", verdict.reason);
}

#[test]
fn an_error_message_is_capped() {
    // The message names the attribute, whose name is long.
    let long = "x".repeat(2 * MAX_ERROR_MESSAGE);
    let schema = serde_json::from_value(json!({ &long: "int" })).unwrap();
    let rules = serde_json::from_value(json!({
        "rules": [], "default_decision": "allow", "score": format!("{long} * 2")
    }))
    .unwrap();
    let policy = gatehouse_rules::validate(&rules, &schema).unwrap();
    let text = format!(r#"{{"{long}": "one"}}"#).into_bytes();
    let verdict = evaluate(
        &policy,
        &ItemState::of("ready", false, Attributes::Text(text)),
    );
    assert_eq!(verdict.outcome, Outcome::Error);
    assert!(verdict.reason.chars().count() <= MAX_ERROR_MESSAGE);
}

#[test]
fn a_batch_split_across_threads_keeps_item_order() {
    let items: Vec<_> = (0..1_000)
        .map(|i| {
            candidate(
                i,
                ready(json!({"quality": (i % 10) as f64 / 10.0, "tags": []})),
            )
        })
        .collect();
    let policy = policy();
    let split = evaluate_all(&policy, &items, 3);
    let single = evaluate_all(&policy, &items, 1);
    assert_eq!(split, single);
    assert_eq!(split[7].score, 7.0);
}

#[test]
fn the_outcomes_of_a_batch_add_up_to_its_items() {
    let states = [
        ready(json!({"quality": 0.9, "tags": []})),
        ready(json!({"quality": 0.1, "tags": []})),
        ready(json!({"quality": 0.9, "tags": ["banned"]})),
        ItemState::Pending("deleted"),
        ready(json!({"quality": "high"})),
    ];
    let items: Vec<_> = states
        .into_iter()
        .enumerate()
        .map(|(i, s)| candidate(i, s))
        .collect();
    let verdicts = evaluate_all(&policy(), &items, 1);
    let tally = tally(&items, &verdicts);
    let c = tally.counters;
    assert_eq!(
        (c.eligible, c.ineligible, c.quarantined, c.pending, c.errors),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(c.processed, 5);
    assert!(c.is_consistent());
    assert_eq!(tally.samples.len(), 1);
    assert_eq!(tally.samples[0].item_id, "m-4");
}

#[test]
fn at_most_ten_error_samples_are_kept_per_batch() {
    let items: Vec<_> = (0..25)
        .map(|i| candidate(i, ready(json!({"quality": "bad"}))))
        .collect();
    let verdicts = evaluate_all(&policy(), &items, 1);
    let tally = tally(&items, &verdicts);
    assert_eq!(tally.counters.errors, 25);
    assert_eq!(tally.samples.len(), MAX_ERROR_SAMPLES);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// An item of any kind: ready or not, deleted or not, attributes fitting the schema or not.
    fn item() -> impl Strategy<Value = ItemState> {
        let attributes = prop_oneof![
            (0.0f64..1.0, any::<bool>()).prop_map(|(q, banned)| {
                json!({"quality": q, "tags": if banned { json!(["banned"]) } else { json!([]) }})
            }),
            Just(json!({"quality": "not a number"})),
            Just(json!({"colour": "red"})),
            Just(json!({})),
        ];
        (
            prop_oneof![Just("ready"), Just("pending")],
            any::<bool>(),
            attributes,
        )
            .prop_map(|(status, deleted, a)| ItemState::of(status, deleted, Attributes::Json(a)))
    }

    proptest! {
        /// P3: eligible + ineligible + quarantined + pending + errors = processed after every
        /// batch, whatever the items and however they are split into batches and threads.
        #[test]
        fn the_outcomes_add_up_to_processed_after_every_batch(
            items in proptest::collection::vec(item(), 0..120),
            batch in 1usize..40,
            threads in 1usize..4,
        ) {
            let policy = policy();
            let candidates: Vec<Candidate> = items.into_iter().enumerate().map(|(i, s)| candidate(i, s)).collect();
            let mut run = RunCounters::default();
            for chunk in candidates.chunks(batch) {
                let verdicts = evaluate_all(&policy, chunk, threads);
                prop_assert_eq!(verdicts.len(), chunk.len());
                let t = tally(chunk, &verdicts);
                prop_assert!(t.counters.is_consistent());
                prop_assert_eq!(t.counters.processed, chunk.len() as u64);
                run.processed += t.counters.processed;
                run.eligible += t.counters.eligible;
                run.ineligible += t.counters.ineligible;
                run.quarantined += t.counters.quarantined;
                run.pending += t.counters.pending;
                run.errors += t.counters.errors;
                prop_assert!(run.is_consistent());
            }
            prop_assert_eq!(run.processed, candidates.len() as u64);
        }
    }
}
