use super::*;
use crate::test_support::{doc, reference_doc, schema};
use crate::MAX_EXPRESSION_CHARS;
use gatehouse_events::rules::Decision::{Allow, Deny};

fn errors(doc: &RulesDocument) -> Vec<RuleError> {
    validate(doc, &schema()).expect_err("the document is rejected")
}

/// The single error of a document with one rule whose condition is `condition`.
fn condition_error(condition: &str) -> RuleError {
    let found = errors(&doc(&[("r", condition, Deny)], "1"));
    assert_eq!(found.len(), 1, "{found:#?}");
    found.into_iter().next().unwrap()
}

#[test]
fn the_reference_policy_compiles() {
    let policy = validate(&reference_doc(), &schema()).unwrap();
    assert_eq!(policy.rule_ids().count(), 5);
}

#[test]
fn macros_timestamps_and_min_max_compile() {
    let conditions = [
        r#"tags.exists(t, t.startsWith("b")) && tags.all(t, size(t) > 0)"#,
        r#"published_at > timestamp("2024-01-01T00:00:00Z") && has(scan.status)"#,
        "max(quality, 0.5) > 0.4 && min([age_days, 3]) >= 0 && owner.tier in [\"pro\"]",
        r#"tags.filter(t, t != "x").map(t, t + "!").exists_one(t, t == "a!")"#,
        r#"kind.matches("^vid") && string(age_days) != "" && double(age_days) >= 0.0"#,
    ];
    for condition in conditions {
        let found = validate(&doc(&[("r", condition, Deny)], "1"), &schema());
        assert!(found.is_ok(), "{condition}: {:#?}", found.err());
    }
}

#[test]
fn a_syntax_error_carries_line_column_and_a_caret() {
    let error = condition_error("quality <");
    assert_eq!(error.code, RuleErrorCode::SyntaxError);
    assert_eq!((error.line, error.column), (Some(1), Some(10)));
    assert!(
        error.message.starts_with("Syntax error: mismatched input"),
        "{}",
        error.message
    );
    assert!(
        error.message.ends_with("| quality <\n| .........^"),
        "{}",
        error.message
    );
}

#[test]
fn an_unknown_attribute_is_named_with_its_position() {
    let error = condition_error(r#"quality > 0.5 && colour == "red""#);
    assert_eq!(error.code, RuleErrorCode::UnknownAttribute);
    assert_eq!(error.message, "unknown attribute `colour`");
    assert_eq!((error.line, error.column), (Some(1), Some(18)));
}

#[test]
fn a_typo_in_a_nested_field_is_an_unknown_attribute_naming_the_path() {
    let error = condition_error(r#"scan.stauts == "clean""#);
    assert_eq!(error.code, RuleErrorCode::UnknownAttribute);
    assert!(
        error.message.starts_with("unknown attribute `scan.stauts`"),
        "{}",
        error.message
    );
}

#[test]
fn a_function_outside_the_allow_list_is_an_unknown_function() {
    let error = condition_error("unknownfn(quality) > 1.0");
    assert_eq!(error.code, RuleErrorCode::UnknownFunction);
    assert!(
        error.message.starts_with("unknown function `unknownfn`"),
        "{}",
        error.message
    );
}

#[test]
fn adding_a_string_to_a_number_is_a_type_error() {
    assert_eq!(
        condition_error(r#"quality + "x" > 1.0"#).code,
        RuleErrorCode::TypeError
    );
}

#[test]
fn a_condition_that_is_not_a_bool_is_a_type_error() {
    let error = condition_error("age_days * 2");
    assert_eq!(error.code, RuleErrorCode::TypeError);
    assert_eq!(error.message, "the condition yields int, expected bool");
}

#[test]
fn a_score_that_is_not_a_number_is_a_type_error_at_the_score() {
    let found = errors(&doc(&[], "kind"));
    assert_eq!(found[0].code, RuleErrorCode::TypeError);
    assert_eq!(
        (found[0].location.as_str(), found[0].rule_id.as_deref()),
        ("score", None)
    );
}

#[test]
fn an_empty_condition_is_an_empty_expression() {
    assert_eq!(condition_error("  ").code, RuleErrorCode::EmptyExpression);
}

#[test]
fn an_expression_over_the_length_limit_is_too_large() {
    let long = format!("quality > 0.5{}", " ".repeat(MAX_EXPRESSION_CHARS));
    assert_eq!(condition_error(&long).code, RuleErrorCode::TooLarge);
}

#[test]
fn nesting_deeper_than_the_limit_is_too_large() {
    let deep = format!("{}true{}", "(".repeat(40), ")".repeat(40));
    let error = condition_error(&deep);
    assert_eq!(error.code, RuleErrorCode::TooLarge);
    assert!(error.message.contains("nests deeper"), "{}", error.message);
}

#[test]
fn nesting_within_the_limit_compiles() {
    let nested = format!("{}true{}", "(".repeat(20), ")".repeat(20));
    assert!(validate(&doc(&[("r", &nested, Deny)], "1"), &schema()).is_ok());
}

#[test]
fn more_rules_than_the_limit_are_too_large() {
    let ids: Vec<String> = (0..=MAX_RULES).map(|i| format!("r{i}")).collect();
    let rules: Vec<_> = ids.iter().map(|id| (id.as_str(), "false", Deny)).collect();
    let found = errors(&doc(&rules, "1"));
    assert_eq!(
        (found[0].code, found[0].location.as_str()),
        (RuleErrorCode::TooLarge, "rules")
    );
}

#[test]
fn a_rule_id_over_the_length_limit_is_too_large() {
    let id = "a".repeat(MAX_RULE_ID_CHARS + 1);
    let found = errors(&doc(&[(&id, "false", Deny)], "1"));
    assert_eq!(
        (found[0].code, found[0].location.as_str()),
        (RuleErrorCode::TooLarge, "rules[0].id")
    );
}

#[test]
fn a_rule_id_outside_the_pattern_is_invalid() {
    for id in ["Bad", "-lead", "", "sp ace", "ünï"] {
        let found = errors(&doc(&[(id, "false", Deny)], "1"));
        assert_eq!(found[0].code, RuleErrorCode::InvalidRuleId, "{id:?}");
    }
}

#[test]
fn a_repeated_rule_id_is_a_duplicate_at_the_second_rule() {
    let found = errors(&doc(
        &[("same", "false", Deny), ("same", "true", Allow)],
        "1",
    ));
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].code, found[0].location.as_str()),
        (RuleErrorCode::DuplicateRuleId, "rules[1].id")
    );
}

#[test]
fn a_reason_over_the_length_limit_is_too_large() {
    let mut doc = doc(&[("r", "false", Deny)], "1");
    doc.rules[0].reason = "x".repeat(MAX_REASON_CHARS + 1);
    let found = errors(&doc);
    assert_eq!(
        (found[0].code, found[0].location.as_str()),
        (RuleErrorCode::TooLarge, "rules[0].reason")
    );
}

#[test]
fn every_problem_is_reported_in_document_order() {
    let found = errors(&doc(
        &[
            ("ok", "true", Deny),
            ("Bad", "nope > 1", Deny),
            ("r2", "quality <", Deny),
        ],
        "kind",
    ));
    let locations: Vec<_> = found.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(
        locations,
        [
            "rules[1].id",
            "rules[1].condition",
            "rules[2].condition",
            "score"
        ]
    );
}

#[test]
fn an_error_in_a_rule_names_the_rule() {
    assert_eq!(condition_error("nope").rule_id.as_deref(), Some("r"));
}

#[test]
fn errors_serialize_with_snake_case_codes() {
    let wire = serde_json::to_value(condition_error("quality <")).unwrap();
    assert_eq!(wire["code"], "syntax_error");
    assert_eq!(wire["location"], "rules[0].condition");
    assert_eq!(
        (wire["line"].as_u64(), wire["column"].as_u64()),
        (Some(1), Some(10))
    );
}
