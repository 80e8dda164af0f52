//! Sample items generated from the schema for the dry run: every attribute present, with values
//! chosen so that common expressions succeed on at least one sample (an index of 1 into a list
//! of 2, `int(s)` and `timestamp(s)` on numeric and timestamp text) and fail on another only
//! for value reasons (zero, empty).

use gatehouse_events::rules::{AttributeSchema, AttributeType};
use serde_json::{json, Map, Value as Json};

/// How many sample items there are.
pub(crate) const SAMPLES: usize = 4;

const STRINGS: [&str; SAMPLES] = ["", "sample", "1", "2024-01-01T00:00:00Z"];
const INTS: [i64; SAMPLES] = [0, 42, 1, -1];
const DOUBLES: [f64; SAMPLES] = [0.0, 2.5, 1.0, -0.5];
const BOOLS: [bool; SAMPLES] = [false, true, true, false];
const DURATIONS: [&str; SAMPLES] = ["0", "1h30m", "1s", "-90s"];
const TIMESTAMPS: [&str; SAMPLES] = [
    "1970-01-01T00:00:00Z",
    "2024-02-29T12:30:00+02:00",
    "2000-01-01T00:00:00Z",
    "2100-06-15T08:00:00-05:00",
];

/// The attributes of the sample items for `schema`, each attribute with a different value in
/// each sample; lists are empty, of 2 and of 1 element.
pub(crate) fn sample_json(schema: &AttributeSchema) -> [Json; SAMPLES] {
    std::array::from_fn(|variant| object(schema, variant))
}

fn object(fields: &AttributeSchema, variant: usize) -> Json {
    let fields = fields
        .iter()
        .map(|(name, ty)| (name.clone(), sample(ty, variant)));
    Json::Object(fields.collect::<Map<_, _>>())
}

fn sample(ty: &AttributeType, variant: usize) -> Json {
    match ty {
        AttributeType::String => json!(STRINGS[variant]),
        AttributeType::Int => json!(INTS[variant]),
        AttributeType::Double => json!(DOUBLES[variant]),
        AttributeType::Bool => json!(BOOLS[variant]),
        AttributeType::Timestamp => json!(TIMESTAMPS[variant]),
        AttributeType::Duration => json!(DURATIONS[variant]),
        AttributeType::List(element) => match variant {
            0 => json!([]),
            1 => json!([sample(element, 1), sample(element, 0)]),
            2 => json!([sample(element, 2), sample(element, 2)]),
            _ => json!([sample(element, variant)]),
        },
        AttributeType::Object(fields) => object(fields, variant),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_gives_each_attribute_a_different_value() {
        let schema: AttributeSchema = serde_json::from_value(
            json!({"a": "list<int>", "b": {"c": "timestamp", "d": "duration"}}),
        )
        .unwrap();
        let samples = sample_json(&schema);
        for (i, first) in samples.iter().enumerate() {
            for second in &samples[i + 1..] {
                assert_ne!(first["a"], second["a"]);
                assert_ne!(first["b"]["c"], second["b"]["c"]);
                assert_ne!(first["b"]["d"], second["b"]["d"]);
            }
        }
    }

    #[test]
    fn every_sample_fits_its_schema() {
        let schema = crate::test_support::schema();
        for json in sample_json(&schema) {
            assert!(crate::Item::from_json(&json, &schema).is_ok(), "{json}");
        }
    }
}
