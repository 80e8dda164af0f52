//! [`Item::from_json_text`](super::Item::from_json_text)'s one pass from JSON text to CEL
//! values, guided by the schema. Each visitor accepts only what `convert` would accept for
//! the same JSON and fails on anything else; its error is never shown (the caller falls back
//! to the `Value` path), so the visitors track no path. Values the schema declares nothing
//! for are read and dropped.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelString};
use cel::common::value::Val;
use gatehouse_events::rules::{AttributeSchema, AttributeType};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};

use super::{parse_duration, parse_timestamp, type_name, Attribute};

/// A value converted from the text; `None` for `null`.
type Converted<'de> = Option<Box<dyn Val + 'de>>;

/// `text`'s attributes, if it is an object that [`Item::from_json`] would accept.
pub(super) fn one_pass<'a>(
    text: &'a [u8],
    schema: &AttributeSchema,
) -> serde_json::Result<Vec<Attribute<'a>>> {
    let mut json = serde_json::Deserializer::from_slice(text);
    let attributes = json.deserialize_map(Attributes { schema })?;
    json.end()?;
    Ok(attributes)
}

/// The top-level object of an item, against the item's schema.
struct Attributes<'s> {
    schema: &'s AttributeSchema,
}

impl<'de> Visitor<'de> for Attributes<'_> {
    type Value = Vec<Attribute<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Self::Value, A::Error> {
        let mut attributes: Self::Value = Vec::with_capacity(self.schema.len());
        while let Some(name) = fields.next_key_seed(Text)? {
            let Some(ty) = field_type(self.schema, &name)? else {
                fields.next_value_seed(Skip)?;
                continue;
            };
            let value = fields.next_value_seed(Typed(ty))?;
            // The last of duplicate keys counts, `null` included, as in a parsed `Value`.
            let earlier = attributes.iter().position(|(n, _)| *n == name);
            match (earlier, value) {
                (Some(i), Some(value)) => attributes[i].1 = value,
                (Some(i), None) => {
                    attributes.swap_remove(i);
                }
                (None, Some(value)) => attributes.push((name, value)),
                (None, None) => {}
            }
        }
        Ok(attributes)
    }
}

/// The value of an attribute or field of type `.0`.
struct Typed<'s>(&'s AttributeType);

impl<'de> DeserializeSeed<'de> for Typed<'_> {
    type Value = Converted<'de>;

    fn deserialize<D: Deserializer<'de>>(self, value: D) -> Result<Self::Value, D::Error> {
        value.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Typed<'_> {
    type Value = Converted<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&type_name(self.0))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        match self.0 {
            AttributeType::Bool => converted(CelBool::from(b)),
            _ => Err(E::invalid_type(Unexpected::Bool(b), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        match self.0 {
            AttributeType::Int => converted(CelInt::from(n)),
            AttributeType::Double => converted(CelDouble::from(n as f64)),
            _ => Err(E::invalid_type(Unexpected::Signed(n), &self)),
        }
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        match (self.0, i64::try_from(n)) {
            (AttributeType::Int, Ok(n)) => converted(CelInt::from(n)),
            (AttributeType::Double, _) => converted(CelDouble::from(n as f64)),
            _ => Err(E::invalid_type(Unexpected::Unsigned(n), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Self::Value, E> {
        match self.0 {
            // A `Value` would hold a non-finite number as `null`; serde_json never reads one.
            AttributeType::Double if x.is_finite() => converted(CelDouble::from(x)),
            _ => Err(E::invalid_type(Unexpected::Float(x), &self)),
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        match self.0 {
            AttributeType::String => converted(CelString::from(s)),
            _ => self.visit_str(s),
        }
    }

    /// Text serde_json only lends (it had escapes, unescaped into a scratch buffer), or a
    /// timestamp's or duration's text.
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        match self.0 {
            AttributeType::String => converted(CelString::from(s.to_owned())),
            AttributeType::Timestamp => match parse_timestamp(s) {
                Some(t) => converted(t),
                None => Err(E::invalid_value(Unexpected::Str(s), &self)),
            },
            AttributeType::Duration => match parse_duration(s) {
                Some(d) => converted(d),
                None => Err(E::invalid_value(Unexpected::Str(s), &self)),
            },
            _ => Err(E::invalid_type(Unexpected::Str(s), &self)),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut values: A) -> Result<Self::Value, A::Error> {
        let AttributeType::List(element) = self.0 else {
            return Err(de::Error::invalid_type(Unexpected::Seq, &self));
        };
        let mut list: Vec<Box<dyn Val + 'de>> = Vec::new();
        while let Some(value) = values.next_element_seed(Typed(element))? {
            // In a list, `null` is a value of the wrong type, not an absent one.
            let value = value.ok_or_else(|| de::Error::invalid_type(Unexpected::Unit, &self))?;
            list.push(value);
        }
        converted(CelList::from(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Self::Value, A::Error> {
        let AttributeType::Object(schema) = self.0 else {
            return Err(de::Error::invalid_type(Unexpected::Map, &self));
        };
        let mut map = HashMap::with_capacity(schema.len());
        while let Some(name) = fields.next_key_seed(Text)? {
            let Some(ty) = field_type(schema, &name)? else {
                fields.next_value_seed(Skip)?;
                continue;
            };
            let key = CelMapKey::String(CelString::from(name));
            // The last of duplicate keys counts, `null` included, as in a parsed `Value`.
            match fields.next_value_seed(Typed(ty))? {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        converted(CelMap::from(map))
    }
}

fn converted<'de, E>(value: impl Val + 'de) -> Result<Converted<'de>, E> {
    Ok(Some(Box::new(value)))
}

/// The type `schema` declares for field `name`, or `None` if it declares none.
///
/// Never for one of serde_json's private keys: with its `raw_value` or `arbitrary_precision`
/// feature, a `Value` reads an object with such a key as another value.
fn field_type<'s, E: de::Error>(
    schema: &'s AttributeSchema,
    name: &str,
) -> Result<Option<&'s AttributeType>, E> {
    if is_private(name) {
        return Err(E::unknown_field(name, &[]));
    }
    Ok(schema.get(name))
}

fn is_private(key: &str) -> bool {
    key.starts_with("$serde_json::private::")
}

/// The value of an attribute or field the schema does not declare: read in full, so that
/// the text is only accepted if a `Value` would hold it (numbers in range, private keys
/// left to the `Value` path), and dropped.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, value: D) -> Result<(), D::Error> {
        value.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut values: A) -> Result<(), A::Error> {
        while values.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<(), A::Error> {
        while let Some(name) = fields.next_key_seed(Text)? {
            if is_private(&name) {
                return Err(de::Error::unknown_field(&name, &[]));
            }
            fields.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

/// A key or string, borrowed from the text unless it has escapes.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, text: D) -> Result<Self::Value, D::Error> {
        text.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}
