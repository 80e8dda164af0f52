use super::*;
use serde_json::json;

fn schema() -> AttributeSchema {
    serde_json::from_value(json!({
        "kind": "string", "quality": "double", "age_days": "int", "nsfw": "bool",
        "published_at": "timestamp", "tags": "list<string>",
        "scan": {"status": "string", "critical": "int"}
    }))
    .unwrap()
}

fn error(json: Json) -> ItemError {
    Item::from_json(&json, &schema()).expect_err("the item is rejected")
}

#[test]
fn an_item_matching_the_schema_converts_every_present_attribute() {
    let json = json!({"kind": "video", "quality": 0.5, "tags": ["a"], "scan": {"critical": 0}});
    assert_eq!(Item::from_json(&json, &schema()).unwrap().len(), 4);
}

#[test]
fn missing_and_null_attributes_are_simply_absent() {
    let json = json!({"kind": "video", "quality": null});
    let item = Item::from_json(&json, &schema()).unwrap();
    assert!(item.resolve("quality").is_none() && item.resolve("kind").is_some());
}

#[test]
fn an_attribute_the_schema_does_not_declare_is_ignored() {
    let json = json!({"quality": 0.5, "colour": "red", "extra": {"deep": [1e300, null]}});
    let item = Item::from_json(&json, &schema()).unwrap();
    assert_eq!(item.len(), 1);
    assert!(item.resolve("colour").is_none() && item.resolve("extra").is_none());
}

#[test]
fn a_field_an_object_attribute_does_not_declare_is_ignored() {
    let json = json!({"scan": {"status": "clean", "stauts": 1}});
    let item = Item::from_json(&json, &schema()).unwrap();
    let scan = item.resolve("scan").unwrap();
    assert_eq!(scan.downcast_ref::<CelMap>().unwrap().inner().len(), 1);
}

#[test]
fn a_declared_attribute_of_the_wrong_type_beside_undeclared_ones_is_rejected() {
    let err = error(json!({"colour": "red", "quality": "high"}));
    assert_eq!(
        err.to_string(),
        "attribute `quality`: expected double, got a string"
    );
}

#[test]
fn a_value_of_the_wrong_type_names_the_path_and_the_expected_type() {
    let err = error(json!({"tags": ["a", 3]}));
    assert_eq!(
        err.to_string(),
        "attribute `tags[1]`: expected string, got a number"
    );
}

#[test]
fn an_int_attribute_rejects_a_fractional_number() {
    let err = error(json!({"age_days": 1.5}));
    assert_eq!(
        err.to_string(),
        "attribute `age_days`: expected int, got a non-integer number"
    );
}

#[test]
fn a_double_attribute_accepts_an_integer() {
    let json = json!({"quality": 1});
    let item = Item::from_json(&json, &schema()).unwrap();
    let value = item.resolve("quality").unwrap();
    assert_eq!(
        value.downcast_ref::<CelDouble>().map(|d| *d.inner()),
        Some(1.0)
    );
}

#[test]
fn a_timestamp_attribute_must_be_rfc_3339() {
    let err = error(json!({"published_at": "yesterday"}));
    assert!(matches!(err, ItemError::InvalidTimestamp { path, .. } if path == "published_at"));
}

#[test]
fn a_timestamp_attribute_with_an_offset_converts() {
    let json = json!({"published_at": "2024-02-29T12:30:00+02:00"});
    assert!(Item::from_json(&json, &schema()).is_ok());
}

#[test]
fn attributes_that_are_not_an_object_are_rejected() {
    assert_eq!(
        error(json!([1])),
        ItemError::NotAnObject { found: "an array" }
    );
}

/// What converting attributes led to, comparable across the two paths: the item's
/// attributes rendered by name, or the error.
#[derive(Debug, PartialEq)]
enum Outcome {
    Item(Vec<(String, String)>),
    NotJson(String),
    Rejected(ItemError),
}

/// The reference: parse into a `Value`, then [`Item::from_json`].
fn via_value(text: &str, schema: &AttributeSchema) -> Outcome {
    match serde_json::from_str::<Json>(text) {
        Err(e) => Outcome::NotJson(e.to_string()),
        Ok(json) => match Item::from_json(&json, schema) {
            Ok(item) => Outcome::Item(rendered(&item)),
            Err(e) => Outcome::Rejected(e),
        },
    }
}

fn via_text(text: &str, schema: &AttributeSchema) -> Outcome {
    match Item::from_json_text(text.as_bytes(), schema) {
        Ok(item) => Outcome::Item(rendered(&item)),
        Err(TextError::NotJson(e)) => Outcome::NotJson(e.to_string()),
        Err(TextError::Item(e)) => Outcome::Rejected(e),
    }
}

/// Converts `text` both ways, asserts they agree, and returns the outcome.
fn agreed(text: &str) -> Outcome {
    let outcome = via_text(text, &schema());
    assert_eq!(outcome, via_value(text, &schema()), "{text}");
    outcome
}

fn rendered(item: &Item<'_>) -> Vec<(String, String)> {
    let mut attributes: Vec<_> = (item.attributes.iter())
        .map(|(name, value)| (name.to_string(), render(value.as_ref())))
        .collect();
    attributes.sort();
    attributes
}

/// A CEL value as text that tells its type and exact value (map keys sorted).
fn render(value: &dyn Val) -> String {
    if let Some(s) = value.downcast_ref::<CelString>() {
        format!("string {:?}", s.inner())
    } else if let Some(b) = value.downcast_ref::<CelBool>() {
        format!("bool {}", b.inner())
    } else if let Some(i) = value.downcast_ref::<CelInt>() {
        format!("int {}", i.inner())
    } else if let Some(d) = value.downcast_ref::<CelDouble>() {
        format!("double {:?}", d.inner())
    } else if let Some(t) = value.downcast_ref::<CelTimestamp>() {
        format!("timestamp {:?}", t.inner())
    } else if let Some(d) = value.downcast_ref::<CelDuration>() {
        format!("duration {:?}", d.inner().num_nanoseconds())
    } else if let Some(list) = value.downcast_ref::<CelList>() {
        let values: Vec<_> = list.inner().iter().map(|v| render(v.as_ref())).collect();
        format!("[{}]", values.join(", "))
    } else if let Some(map) = value.downcast_ref::<CelMap>() {
        let mut fields: Vec<_> = (map.inner().iter())
            .map(|(k, v)| format!("{}: {}", render(k.inner()), render(v.as_ref())))
            .collect();
        fields.sort();
        format!("{{{}}}", fields.join(", "))
    } else {
        panic!("an item holds no {value:?}")
    }
}

fn attribute(outcome: &Outcome, name: &str) -> Option<String> {
    let Outcome::Item(attributes) = outcome else {
        panic!("not an item: {outcome:?}")
    };
    attributes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

#[test]
fn an_item_from_text_holds_the_same_values_as_from_parsed_json() {
    let outcome = agreed(
        r#"{"kind": "video", "quality": 0.5, "age_days": 3, "nsfw": false,
            "published_at": "2024-02-29T12:30:00+02:00", "tags": ["a", "b"],
            "scan": {"status": "clean", "critical": 0}}"#,
    );
    assert_eq!(
        attribute(&outcome, "scan").as_deref(),
        Some(r#"{string "critical": int 0, string "status": string "clean"}"#)
    );
}

#[test]
fn strings_without_escapes_borrow_from_the_text() {
    let text = br#"{"kind": "video", "tags": ["a"]}"#;
    let item = Item::from_json_text(text, &schema()).unwrap();
    let kind = item.resolve("kind").unwrap();
    assert_eq!(
        kind.downcast_ref::<CelString>().unwrap().as_borrowed(),
        Some("video")
    );
}

#[test]
fn strings_with_escapes_are_unescaped_copies() {
    let text = r#"{"kind": "vi\"d\u00e9o\n"}"#;
    let item = Item::from_json_text(text.as_bytes(), &schema()).unwrap();
    let kind = item.resolve("kind").unwrap();
    let kind = kind.downcast_ref::<CelString>().unwrap();
    assert_eq!((kind.inner(), kind.as_borrowed()), ("vi\"déo\n", None));
    agreed(text);
}

#[test]
fn an_escaped_key_names_its_attribute() {
    let outcome = agreed(r#"{"k\u0069nd": "video", "scan": {"st\u0061tus": "clean"}}"#);
    assert_eq!(
        attribute(&outcome, "kind").as_deref(),
        Some(r#"string "video""#)
    );
    assert!(attribute(&outcome, "scan").unwrap().contains("status"));
}

#[test]
fn of_duplicate_keys_the_last_one_counts() {
    let outcome = agreed(r#"{"kind": "a", "kind": "b", "scan": {"critical": 1, "critical": 2}}"#);
    assert_eq!(
        attribute(&outcome, "kind").as_deref(),
        Some(r#"string "b""#)
    );
    assert_eq!(
        attribute(&outcome, "scan").as_deref(),
        Some(r#"{string "critical": int 2}"#)
    );
}

#[test]
fn a_duplicate_key_set_to_null_removes_the_attribute() {
    let outcome =
        agreed(r#"{"kind": "a", "kind": null, "scan": {"critical": 1, "critical": null}}"#);
    assert_eq!(attribute(&outcome, "kind"), None);
    assert_eq!(attribute(&outcome, "scan").as_deref(), Some("{}"));
}

#[test]
fn a_null_key_given_again_with_a_value_has_that_value() {
    let outcome = agreed(r#"{"kind": null, "kind": "a"}"#);
    assert_eq!(
        attribute(&outcome, "kind").as_deref(),
        Some(r#"string "a""#)
    );
}

#[test]
fn a_wrong_value_replaced_by_a_later_duplicate_key_is_accepted() {
    let outcome =
        agreed(r#"{"age_days": "old", "age_days": 3, "scan": {"critical": [], "critical": 1}}"#);
    assert_eq!(attribute(&outcome, "age_days").as_deref(), Some("int 3"));
}

#[test]
fn a_wrong_value_after_a_right_one_for_the_same_key_is_rejected() {
    let outcome = agreed(r#"{"age_days": 3, "age_days": "old"}"#);
    assert!(matches!(
        outcome,
        Outcome::Rejected(ItemError::WrongType { .. })
    ));
}

#[test]
fn null_attributes_from_text_are_absent() {
    let outcome = agreed(r#"{"kind": null, "quality": 0.5, "scan": {"status": null}}"#);
    assert_eq!(attribute(&outcome, "kind"), None);
    assert_eq!(attribute(&outcome, "scan").as_deref(), Some("{}"));
}

#[test]
fn an_int_beyond_i64_is_an_integer_out_of_range() {
    let outcome = agreed(r#"{"age_days": 9223372036854775808}"#);
    let Outcome::Rejected(err) = outcome else {
        panic!("accepted: {outcome:?}")
    };
    assert_eq!(
        err.to_string(),
        "attribute `age_days`: expected int, got an integer out of range"
    );
}

#[test]
fn ints_at_the_ends_of_i64_are_accepted() {
    let outcome =
        agreed(r#"{"age_days": -9223372036854775808, "scan": {"critical": 9223372036854775807}}"#);
    assert_eq!(
        attribute(&outcome, "age_days").as_deref(),
        Some("int -9223372036854775808")
    );
}

#[test]
fn an_int_written_with_a_fraction_or_exponent_is_not_an_int() {
    for number in ["1.0", "1e2", "-0", "18446744073709551616"] {
        let text = format!(r#"{{"age_days": {number}}}"#);
        let Outcome::Rejected(err) = agreed(&text) else {
            panic!("{text} accepted")
        };
        assert!(
            err.to_string().ends_with("got a non-integer number"),
            "{err}"
        );
    }
}

#[test]
fn a_double_accepts_any_json_number() {
    for (number, value) in [
        ("1", "double 1.0"),
        ("-7", "double -7.0"),
        ("-0", "double -0.0"),
        ("18446744073709551615", "double 1.8446744073709552e19"),
        ("1e400000000000000000000", ""),
        (
            "123456789012345678901234567890",
            "double 1.2345678901234568e29",
        ),
        ("2.5E-3", "double 0.0025"),
    ] {
        let outcome = agreed(&format!(r#"{{"quality": {number}}}"#));
        if !value.is_empty() {
            assert_eq!(attribute(&outcome, "quality").as_deref(), Some(value));
        }
    }
}

#[test]
fn a_double_attribute_is_the_nearest_double_to_its_json_text() {
    // serde_json's default parser may be off by one unit in the last place on such numbers;
    // the workspace enables its `float_roundtrip` feature. Rust's own parser is exact.
    for text in [
        "0.1",
        "0.30000000000000004",
        "2.2250738585072011e-308",
        "1.38e-23",
        "-5.43e-21",
        "9007199254740993",
    ] {
        let exact: f64 = text.parse().unwrap();
        let outcome = agreed(&format!(r#"{{"quality": {text}}}"#));
        let expected = format!("double {exact:?}");
        assert_eq!(attribute(&outcome, "quality"), Some(expected), "{text}");
    }
}

#[test]
fn a_timestamp_from_text_converts_like_one_from_parsed_json() {
    let outcome = agreed(r#"{"published_at": "2024-02-29T12:30:00\u002B02:00"}"#);
    assert!(attribute(&outcome, "published_at").is_some());
    for bad in [
        "yesterday",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:30:00+01:00",
        "9999-12-31T23:30:00-01:00",
        "2024-02-30T00:00:00Z",
    ] {
        let outcome = agreed(&format!(r#"{{"published_at": "{bad}"}}"#));
        assert!(matches!(
            outcome,
            Outcome::Rejected(ItemError::InvalidTimestamp { .. })
        ));
    }
}

#[test]
fn a_duration_attribute_converts_from_duration_text() {
    let schema = serde_json::from_value(json!({"wait": "duration"})).unwrap();
    let item = |text: &str| via_text(text, &schema);
    assert_eq!(
        item(r#"{"wait": "1h30m"}"#),
        Outcome::Item(vec![("wait".into(), "duration Some(5400000000000)".into())])
    );
    assert_eq!(
        item(r#"{"wait": "1h30m"}"#),
        via_value(r#"{"wait": "1h30m"}"#, &schema)
    );
    assert_eq!(
        item(r#"{"wait": "soon"}"#),
        Outcome::Rejected(ItemError::InvalidDuration {
            path: "wait".into(),
            value: "soon".into()
        })
    );
    assert!(matches!(
        item(r#"{"wait": 90}"#),
        Outcome::Rejected(ItemError::WrongType { .. })
    ));
}

#[test]
fn a_null_in_a_list_is_a_wrong_type_not_an_absent_value() {
    let outcome = agreed(r#"{"tags": ["a", null]}"#);
    assert_eq!(
        outcome,
        Outcome::Rejected(ItemError::WrongType {
            path: "tags[1]".into(),
            expected: "string".into(),
            found: "null".into()
        })
    );
}

#[test]
fn of_several_problems_the_text_path_reports_the_one_from_json_reports() {
    // Both in the parsed object's key order, not the text's.
    let outcome = agreed(r#"{"tags": 1, "scan": {"zzz": 1, "aaa": 2}, "kind": 2}"#);
    assert!(
        matches!(outcome, Outcome::Rejected(ItemError::WrongType { path, .. }) if path == "kind")
    );
}

#[test]
fn undeclared_attributes_and_fields_in_text_are_ignored() {
    let outcome = agreed(
        r#"{"colour": {"a": [1, "x", null, 2.5e-3, true]}, "kind": "video",
            "scan": {"stauts": "clean", "status": "ok"}, "z": null}"#,
    );
    assert_eq!(
        outcome,
        Outcome::Item(vec![
            ("kind".into(), r#"string "video""#.into()),
            ("scan".into(), r#"{string "status": string "ok"}"#.into()),
        ])
    );
}

#[test]
fn an_undeclared_attribute_in_text_must_still_be_json() {
    for text in [
        r#"{"colour": 1e400, "kind": "video"}"#,
        r#"{"colour": [01], "kind": "video"}"#,
        "{\"colour\": {\"a\": \"\u{1}\"}}",
        r#"{"colour": [1,]}"#,
    ] {
        assert!(matches!(agreed(text), Outcome::NotJson(_)), "{text:?}");
    }
}

#[test]
fn whitespace_around_the_object_is_allowed() {
    let outcome = agreed(" \n\t{ \"kind\" : \"video\" }\r\n ");
    assert!(attribute(&outcome, "kind").is_some());
}

#[test]
fn text_that_is_not_json_is_reported_with_serde_json_s_message() {
    for text in [
        "",
        "{",
        r#"{"kind": "video"} x"#,
        r#"{"kind": 01}"#,
        "{\"kind\": \"\u{1}\"}",
    ] {
        assert!(matches!(agreed(text), Outcome::NotJson(_)), "{text:?}");
    }
    let err = Item::from_json_text(b"{", &schema()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "attributes are not JSON: EOF while parsing an object at line 1 column 1"
    );
}

#[test]
fn text_that_is_not_an_object_is_rejected_with_what_it_is() {
    for text in ["[1]", "null", "\"kind\"", "3", "true"] {
        assert!(matches!(
            agreed(text),
            Outcome::Rejected(ItemError::NotAnObject { .. })
        ));
    }
}

#[test]
fn an_empty_object_is_an_item_without_attributes() {
    assert_eq!(agreed("{}"), Outcome::Item(vec![]));
}

#[test]
fn a_serde_json_private_key_is_left_to_the_value_path() {
    let schema = serde_json::from_value(json!({
        "$serde_json::private::RawValue": "string", "$serde_json::private::Number": "string"
    }))
    .unwrap();
    for text in [
        r#"{"$serde_json::private::RawValue": "\"x\""}"#,
        r#"{"$serde_json::private::Number": "1"}"#,
    ] {
        assert_eq!(via_text(text, &schema), via_value(text, &schema), "{text}");
    }
}

mod properties {
    use proptest::prelude::*;
    use proptest::strategy::Union;

    use super::*;

    /// JSON text with what a `Value` cannot keep: duplicate keys, escapes, number spellings.
    #[derive(Debug, Clone)]
    enum Gen {
        Null,
        Bool(bool),
        Number(String),
        /// The text, and whether to write every character as a `\u` escape.
        Str(String, bool),
        Array(Vec<Gen>),
        Object(Vec<(Gen, Gen)>),
    }

    impl Gen {
        fn write(&self, out: &mut String) {
            match self {
                Gen::Null => out.push_str("null"),
                Gen::Bool(b) => out.push_str(&b.to_string()),
                Gen::Number(n) => out.push_str(n),
                Gen::Str(s, false) => out.push_str(&serde_json::to_string(s).unwrap()),
                Gen::Str(s, true) => {
                    out.push('"');
                    for unit in s.encode_utf16() {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                    out.push('"');
                }
                Gen::Array(values) => {
                    out.push('[');
                    for (i, value) in values.iter().enumerate() {
                        out.push_str(if i == 0 { "" } else { ", " });
                        value.write(out);
                    }
                    out.push(']');
                }
                Gen::Object(fields) => {
                    out.push('{');
                    for (i, (name, value)) in fields.iter().enumerate() {
                        out.push_str(if i == 0 { "" } else { "," });
                        name.write(out);
                        out.push(':');
                        value.write(out);
                    }
                    out.push('}');
                }
            }
        }
    }

    fn prop_schema() -> AttributeSchema {
        serde_json::from_value(json!({
            "kind": "string", "quality": "double", "age_days": "int", "nsfw": "bool",
            "published_at": "timestamp", "tags": "list<string>", "sizes": "list<int>",
            "seen": "list<timestamp>", "wait": "duration", "waits": "list<duration>",
            "scan": {"status": "string", "critical": "int", "scores": "list<double>",
                     "meta": {"ok": "bool", "at": "timestamp"}}
        }))
        .unwrap()
    }

    fn number() -> impl Strategy<Value = Gen> + Clone {
        let spelled = prop::sample::select(vec![
            "0",
            "-0",
            "1",
            "1.0",
            "1e2",
            "-1",
            "0.5",
            "2.5E-3",
            "1e400",
            "01",
            "-",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
        ]);
        prop_oneof![
            spelled.prop_map(|n| Gen::Number(n.to_owned())),
            any::<i64>().prop_map(|n| Gen::Number(n.to_string())),
            any::<u64>().prop_map(|n| Gen::Number(n.to_string())),
            prop::num::f64::NORMAL.prop_map(|x| Gen::Number(format!("{x:?}"))),
        ]
    }

    fn string() -> impl Strategy<Value = Gen> + Clone {
        let text = prop_oneof![
            "[a-z]{0,6}",
            prop::sample::select(vec![
                "2024-02-29T12:30:00+02:00",
                "2024-01-01T00:00:00Z",
                "0000-01-01T00:00:00Z",
                "2024-02-30T00:00:00Z",
                "yesterday",
                "é",
                "a\"b\\c\n",
                "😀",
                "\u{1}",
            ])
            .prop_map(str::to_owned),
        ];
        (text, prop::bool::weighted(0.2)).prop_map(|(s, escaped)| Gen::Str(s, escaped))
    }

    /// RFC 3339 text of years 1 to 9999 (give or take the offset), in various offsets.
    fn timestamp() -> impl Strategy<Value = Gen> + Clone {
        let seconds = -62_135_596_800i64..253_402_300_800;
        (seconds, -56i32..56, prop::bool::weighted(0.1)).prop_map(
            |(seconds, quarter_hours, escaped)| {
                let offset = chrono::FixedOffset::east_opt(quarter_hours * 900).unwrap();
                let t = chrono::DateTime::from_timestamp(seconds, 0).unwrap();
                Gen::Str(t.with_timezone(&offset).to_rfc3339(), escaped)
            },
        )
    }

    /// Duration text, mostly valid, in various spellings and sizes.
    fn duration() -> impl Strategy<Value = Gen> + Clone {
        let spelled = prop::sample::select(vec![
            "0", "-0", "1h30m", "1.5h", "90s", "-2m", "1ms", "1us", "1ns", "2562048h", "1.s", "",
        ]);
        let text = prop_oneof![
            spelled.prop_map(str::to_owned),
            (
                any::<i32>(),
                prop::sample::select(vec!["h", "m", "s", "ms", "us", "ns"])
            )
                .prop_map(|(n, unit)| format!("{n}{unit}")),
        ];
        (text, prop::bool::weighted(0.1)).prop_map(|(s, escaped)| Gen::Str(s, escaped))
    }

    /// Any JSON that is not an object or array, or an empty one.
    fn leaf() -> impl Strategy<Value = Gen> + Clone {
        prop_oneof![
            Just(Gen::Null),
            any::<bool>().prop_map(Gen::Bool),
            number(),
            string(),
            Just(Gen::Array(vec![])),
            Just(Gen::Object(vec![])),
        ]
    }

    /// Mostly a value of `ty`, else `null` or something else.
    fn value(ty: &AttributeType) -> BoxedStrategy<Gen> {
        let fitting = match ty {
            AttributeType::String => string().boxed(),
            AttributeType::Timestamp => prop_oneof![3 => timestamp(), 1 => string()].boxed(),
            AttributeType::Duration => prop_oneof![3 => duration(), 1 => string()].boxed(),
            AttributeType::Int => {
                let int = any::<i64>().prop_map(|n| Gen::Number(n.to_string()));
                prop_oneof![3 => int, 1 => number()].boxed()
            }
            AttributeType::Double => number().boxed(),
            AttributeType::Bool => any::<bool>().prop_map(Gen::Bool).boxed(),
            AttributeType::List(element) => prop::collection::vec(value(element), 0..4)
                .prop_map(Gen::Array)
                .boxed(),
            AttributeType::Object(schema) => object(schema),
        };
        prop_oneof![16 => fitting, 1 => Just(Gen::Null), 1 => leaf()].boxed()
    }

    /// Any JSON, a few levels deep, with keys from a few (one of them serde_json's private).
    fn any_json() -> BoxedStrategy<Gen> {
        leaf()
            .prop_recursive(3, 16, 4, |inner| {
                let key = prop::sample::select(vec!["a", "kind", "$serde_json::private::RawValue"])
                    .prop_map(|k| Gen::Str(k.to_owned(), false));
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Gen::Array),
                    prop::collection::vec((key, inner), 0..4).prop_map(Gen::Object),
                ]
            })
            .boxed()
    }

    /// An object of fields of `schema` (any number of times each) and an undeclared one.
    fn object(schema: &AttributeSchema) -> BoxedStrategy<Gen> {
        let known = schema.iter().map(|(name, ty)| (10, field(name, value(ty))));
        let unknown = (2, field("colour", any_json()));
        let fields = Union::new_weighted(known.chain([unknown]).collect());
        prop::collection::vec(fields, 0..8)
            .prop_map(Gen::Object)
            .boxed()
    }

    fn field(name: &str, value: BoxedStrategy<Gen>) -> BoxedStrategy<(Gen, Gen)> {
        let name = name.to_owned();
        (prop::bool::weighted(0.1), value)
            .prop_map(move |(escaped, value)| (Gen::Str(name.clone(), escaped), value))
            .boxed()
    }

    /// Attributes as text: mostly an object, with whitespace around, sometimes cut short.
    fn text() -> impl Strategy<Value = String> {
        let whitespace = prop::sample::select(vec!["", " ", "\n\t ", "\r\n"]);
        let json = prop_oneof![9 => object(&prop_schema()), 1 => leaf()];
        (
            whitespace.clone(),
            json,
            whitespace,
            prop::bool::weighted(0.05),
            any::<usize>(),
        )
            .prop_map(|(before, json, after, cut, at)| {
                let mut text = before.to_owned();
                json.write(&mut text);
                text.push_str(after);
                if cut {
                    let at = at % (text.len() + 1);
                    let at = (0..=at).rev().find(|&i| text.is_char_boundary(i));
                    text.truncate(at.unwrap_or(0));
                }
                text
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn attributes_from_text_convert_exactly_as_from_parsed_json(text in text()) {
            let schema = prop_schema();
            prop_assert_eq!(via_text(&text, &schema), via_value(&text, &schema), "{}", text);
        }
    }
}
