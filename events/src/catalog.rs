//! The catalog: items owned by the host system, arriving as upserts and deletes on
//! `<ns>.catalog.items.<id>` (stream `<NS>_CATALOG`), and the queries over it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest item id: `[A-Za-z0-9][A-Za-z0-9_:-]*`, at most 128 characters (it is a subject token).
pub const MAX_ITEM_ID_LEN: usize = 128;
/// Longest status: a lowercase token such as `ready` or `pending`.
pub const MAX_STATUS_LEN: usize = 32;
/// The status that makes an item part of a Prepare snapshot.
pub const READY: &str = "ready";
/// Deepest nesting of an item's attributes, in objects and arrays, the attributes object
/// itself being level 1: `{"a": {"b": [1]}}` is 3 levels deep. Deeper changes are rejected
/// (readers of JSON such as serde_json stop at 128 levels, and evaluation has no use for more).
pub const MAX_ATTRIBUTE_DEPTH: usize = 64;

/// Is `id` usable as an item id (and so as a subject token)?
pub fn is_valid_item_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && id.len() <= MAX_ITEM_ID_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ':')
}

/// Is `status` a lowercase token (`[a-z][a-z_]*`, at most 32 characters)?
pub fn is_valid_status(status: &str) -> bool {
    let mut chars = status.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && status.len() <= MAX_STATUS_LEN
        && chars.all(|c| c.is_ascii_lowercase() || c == '_')
}

/// One change to the catalog: the body of a message on `<ns>.catalog.items.<id>`, and one line
/// of a `gatehouse catalog import` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum CatalogChange {
    /// Creates or replaces the item.
    Upsert {
        id: String,
        /// e.g. `ready`, `pending`; only `ready` items enter a Prepare snapshot.
        status: String,
        /// The item's attributes, checked against a policy's schema when it is evaluated.
        attributes: serde_json::Map<String, serde_json::Value>,
    },
    /// Marks the item deleted.
    Delete { id: String },
}

impl CatalogChange {
    pub fn id(&self) -> &str {
        match self {
            CatalogChange::Upsert { id, .. } | CatalogChange::Delete { id } => id,
        }
    }

    /// Checks the id, the status and the attributes' nesting; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !is_valid_item_id(self.id()) {
            return Err(format!(
                "id: `{}` is not a valid item id ([A-Za-z0-9][A-Za-z0-9_:-]*, at most {MAX_ITEM_ID_LEN} characters)",
                self.id()
            ));
        }
        if let CatalogChange::Upsert {
            status, attributes, ..
        } = self
        {
            if !is_valid_status(status) {
                return Err(format!(
                    "status: `{status}` is not a valid status (a lowercase token such as `ready`)"
                ));
            }
            if !nests_within(attributes.values(), MAX_ATTRIBUTE_DEPTH - 1) {
                return Err(too_deep());
            }
        }
        Ok(())
    }
}

/// The reason a change whose attributes nest deeper than [`MAX_ATTRIBUTE_DEPTH`] is rejected.
pub fn too_deep() -> String {
    format!("attributes: nested deeper than {MAX_ATTRIBUTE_DEPTH} levels of objects and arrays")
}

/// Do `values` nest at most `levels` levels of objects and arrays? Recurses no deeper than
/// `levels`, whatever the input.
fn nests_within<'a>(
    values: impl IntoIterator<Item = &'a serde_json::Value>,
    levels: usize,
) -> bool {
    values.into_iter().all(|value| match value {
        serde_json::Value::Array(items) => levels > 0 && nests_within(items, levels - 1),
        serde_json::Value::Object(map) => levels > 0 && nests_within(map.values(), levels - 1),
        _ => true,
    })
}

/// `catalog.get`: one item as the catalog table holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GetItem {
    pub item_id: String,
}

/// An item in the catalog table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CatalogItem {
    pub item_id: String,
    pub status: String,
    pub deleted: bool,
    pub attributes: serde_json::Value,
    /// When Gatehouse received the item's latest change (the stream's timestamp).
    pub updated_at: DateTime<Utc>,
}

/// `catalog.public`: the items a policy's active version allows, by id; page with `after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PublicCatalogQuery {
    pub policy_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One page of a policy's public catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PublicCatalogPage {
    pub policy_id: String,
    /// The active version the page was read at (`None`: nothing is promoted, nothing is public).
    pub active_version: Option<u32>,
    /// Only items whose active-version result is of their current catalog change, and that are
    /// ready and not deleted.
    pub items: Vec<PublicItem>,
    /// Ready items whose current change has no result of the active version yet, so are left
    /// out until evaluated: those in this page's id range (after `after`, up to the page's last
    /// item; to the end of the catalog on a page shorter than `limit`). The pages of one listing
    /// add up to the whole catalog's. Absent from older gateways' replies: read as 0.
    #[serde(default)]
    pub held_back: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PublicItem {
    pub item_id: String,
    pub score: f64,
    pub attributes: serde_json::Value,
    /// Set when the item was quarantined and its case released: served as a waiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiver: Option<Waiver>,
}

/// The provenance of an item served because its quarantine case was released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Waiver {
    pub repo: String,
    pub released_by: String,
    pub released_at: DateTime<Utc>,
    pub reason: String,
}

/// `catalog.stats` takes no parameters (any JSON object, usually `{}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StatsQuery {}

/// `catalog.stats`: counts of the catalog table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CatalogStats {
    pub items: i64,
    pub ready: i64,
    pub deleted: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_are_tagged_by_op() {
        let c: CatalogChange = serde_json::from_value(
            json!({"op": "upsert", "id": "m-1", "status": "ready", "attributes": {"q": 1}}),
        )
        .unwrap();
        assert_eq!(c.id(), "m-1");
        let d: CatalogChange =
            serde_json::from_value(json!({"op": "delete", "id": "m-1"})).unwrap();
        assert_eq!(
            serde_json::to_value(d).unwrap(),
            json!({"op": "delete", "id": "m-1"})
        );
    }

    #[test]
    fn item_ids_are_subject_tokens() {
        assert!(is_valid_item_id("m-1:v2_x"));
        assert!(!is_valid_item_id("a.b"));
        assert!(!is_valid_item_id("a b"));
        assert!(!is_valid_item_id("*"));
        assert!(!is_valid_item_id(""));
    }

    #[test]
    fn an_invalid_status_is_named() {
        let c = CatalogChange::Upsert {
            id: "x".into(),
            status: "Ready".into(),
            attributes: Default::default(),
        };
        assert!(c.validate().unwrap_err().starts_with("status:"));
    }

    /// `{"a": [[...[1]...]]}`: the attributes object and `levels - 1` arrays.
    fn nested(levels: usize) -> CatalogChange {
        let mut value = json!(1);
        for _ in 1..levels {
            value = json!([value]);
        }
        CatalogChange::Upsert {
            id: "x".into(),
            status: "ready".into(),
            attributes: serde_json::Map::from_iter([("a".to_owned(), value)]),
        }
    }

    #[test]
    fn attributes_may_nest_as_deep_as_the_limit_and_no_deeper() {
        assert_eq!(nested(1).validate(), Ok(()));
        assert_eq!(nested(MAX_ATTRIBUTE_DEPTH).validate(), Ok(()));
        let error = nested(MAX_ATTRIBUTE_DEPTH + 1).validate().unwrap_err();
        assert_eq!(
            error,
            "attributes: nested deeper than 64 levels of objects and arrays"
        );
    }
}

/// Longest `catalog.search` query text.
pub const MAX_SEARCH_LEN: usize = 256;
/// Most hits per `catalog.search` page (default 20).
pub const MAX_SEARCH_LIMIT: u32 = 100;
/// Hits per `catalog.search` page when the query names no limit.
pub const DEFAULT_SEARCH_LIMIT: u32 = 20;

/// `catalog.search`: publish-ready items (their latest decision allows them, or their case was
/// released) matching `q` (web-search syntax: words, `"phrases"`, `or`, `-word`), best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    pub q: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The previous page's `next_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// One publish-ready item that matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SearchHit {
    pub repo: String,
    pub item_id: String,
    /// `allow` (its latest decision allows it) or `released` (its case was released).
    pub ready_by: String,
    pub rank: f32,
    pub attributes: serde_json::Value,
    /// When the decision or release that made it ready was made.
    pub changed_at: DateTime<Utc>,
    pub indexed_at: DateTime<Utc>,
}

/// One page of search hits, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// `catalog.index_status`: how far the search indexer got and how it fails.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct IndexStatusQuery {}

/// The search indexer's progress, lag and failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IndexStatus {
    /// Publish-ready items in the index.
    pub indexed_items: u64,
    /// The global position of the last event the indexer finished (indexed or dead-lettered).
    pub last_position: i64,
    pub last_indexed_at: Option<DateTime<Utc>>,
    /// `artifact` events in the event store (the events stream's source) past `last_position`.
    pub pending: u64,
    /// Age of the oldest of them, in seconds (0 when nothing is pending).
    pub lag_seconds: f64,
    /// Failed index writes so far (each one is retried later, or dead-lettered on the last
    /// attempt).
    pub failed_attempts: u64,
    pub last_failure: Option<String>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// The item being retried now and the delivery that last failed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrying: Option<Retrying>,
    /// Events parked on the dead-letter stream after their last attempt.
    pub dead_letters: u64,
    pub last_dead_letter_reason: Option<String>,
    pub last_dead_letter_at: Option<DateTime<Utc>>,
}

/// An item whose index write is being retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Retrying {
    pub artifact_id: String,
    pub deliveries: u32,
}
