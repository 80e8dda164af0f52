//! `catalog.search` and `catalog.index_status`: the search index the [`indexer`](super::indexer)
//! keeps (`search_items`, `search_index_state`), and how far behind it is.
//!
//! Search is Postgres full-text search in the `simple` configuration (no stemming or stop
//! words: item ids and attribute values are names, not prose), `websearch_to_tsquery` syntax,
//! ranked by `ts_rank` (the item id and repo weigh more than attributes), keyset-paginated on
//! (rank, repo, item id).

use gatehouse_events::catalog::{
    IndexStatus, IndexStatusQuery, Retrying, SearchHit, SearchPage, SearchQuery,
    DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LEN, MAX_SEARCH_LIMIT,
};
use gatehouse_events::envelope::Rejection;
use gatehouse_events::repo::is_valid_repo;

use crate::api::read::{column, query};
use crate::api::request::bad_request;
use crate::api::App;

/// Where a page ends: the last hit's rank, repo and item id.
#[derive(Debug, Clone, PartialEq)]
struct Cursor {
    rank: f32,
    repo: String,
    item_id: String,
}

impl Cursor {
    fn encode(&self) -> String {
        // `f32`'s Display round-trips exactly; repos and item ids hold no `/`.
        format!("{}/{}/{}", self.rank, self.repo, self.item_id)
    }

    fn decode(s: &str) -> Option<Cursor> {
        let mut parts = s.splitn(3, '/');
        let rank: f32 = parts.next()?.parse().ok()?;
        let repo = parts.next()?.to_owned();
        let item_id = parts.next()?.to_owned();
        (rank.is_finite() && !repo.is_empty() && !item_id.is_empty()).then_some(Cursor {
            rank,
            repo,
            item_id,
        })
    }
}

/// The request's own checks; the page size.
fn check(q: &SearchQuery) -> Result<(i64, Option<Cursor>), Rejection> {
    if q.q.trim().is_empty() {
        return Err(bad_request("q must name at least one word to search for").with_field("q"));
    }
    if q.q.len() > MAX_SEARCH_LEN || q.q.contains('\0') {
        return Err(
            bad_request(format!("q must be at most {MAX_SEARCH_LEN} bytes of text"))
                .with_field("q"),
        );
    }
    if let Some(repo) = &q.repo {
        if !is_valid_repo(repo) {
            return Err(bad_request(format!(
                "`{repo}` is not a repo name ([a-z0-9][a-z0-9_-]*, at most 64 characters)"
            ))
            .with_field("repo"));
        }
    }
    let limit = q.limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
    if limit == 0 || limit > MAX_SEARCH_LIMIT {
        return Err(
            bad_request(format!("limit must be between 1 and {MAX_SEARCH_LIMIT}"))
                .with_field("limit"),
        );
    }
    let after = match &q.after {
        None => None,
        Some(a) => Some(Cursor::decode(a).ok_or_else(|| {
            bad_request(format!(
                "`{a}` is not a search cursor: pass the previous page's next_after"
            ))
            .with_field("after")
        })?),
    };
    Ok((i64::from(limit), after))
}

/// `catalog.search`.
pub async fn search(app: &App, q: SearchQuery) -> Result<SearchPage, Rejection> {
    let (limit, after) = check(&q)?;
    let words = query(
        &app.pg,
        "SELECT numnode(websearch_to_tsquery('simple', $1))",
        &[&q.q],
    )
    .await?;
    if words.first().map_or(0, |r| r.get::<_, i32>(0)) == 0 {
        return Err(bad_request(format!("q `{}` has no word to search for", q.q)).with_field("q"));
    }
    let (rank, repo, item) = match &after {
        Some(c) => (
            Some(c.rank),
            Some(c.repo.as_str()),
            Some(c.item_id.as_str()),
        ),
        None => (None, None, None),
    };
    let rows = query(
        &app.pg,
        "WITH hits AS (
             SELECT repo, item_id, ready_by, ts_rank(document, query) AS rank, attributes,
                    changed_at, indexed_at
               FROM search_items, websearch_to_tsquery('simple', $1) AS query
              WHERE document @@ query AND ($2::text IS NULL OR repo = $2))
         SELECT repo, item_id, ready_by, rank, attributes, changed_at, indexed_at FROM hits
          WHERE $3::real IS NULL OR rank < $3 OR (rank = $3 AND (repo, item_id) > ($4, $5))
          ORDER BY rank DESC, repo, item_id
          LIMIT $6",
        &[&q.q, &q.repo, &rank, &repo, &item, &(limit + 1)],
    )
    .await?;
    let mut hits = rows
        .iter()
        .map(|r| {
            Ok(SearchHit {
                repo: column(r, 0)?,
                item_id: column(r, 1)?,
                ready_by: column(r, 2)?,
                rank: column(r, 3)?,
                attributes: column(r, 4)?,
                changed_at: column(r, 5)?,
                indexed_at: column(r, 6)?,
            })
        })
        .collect::<Result<Vec<_>, Rejection>>()?;
    let more = hits.len() as i64 > limit;
    hits.truncate(limit as usize);
    let next_after = match hits.last() {
        Some(last) if more => Some(
            Cursor {
                rank: last.rank,
                repo: last.repo.clone(),
                item_id: last.item_id.clone(),
            }
            .encode(),
        ),
        _ => None,
    };
    Ok(SearchPage { hits, next_after })
}

/// `catalog.index_status`.
pub async fn index_status(app: &App, _: IndexStatusQuery) -> Result<IndexStatus, Rejection> {
    let rows = query(
        &app.pg,
        "SELECT s.last_position, s.last_indexed_at, s.failed_attempts, s.last_failure,
                s.last_failure_at, s.retrying_artifact, s.retrying_deliveries, s.dead_letters,
                s.last_dead_letter_reason, s.last_dead_letter_at,
                (SELECT count(*) FROM search_items),
                p.pending, coalesce(extract(epoch FROM now() - p.oldest)::float8, 0)
           FROM search_index_state s,
                LATERAL (SELECT count(*) AS pending, min(recorded_at) AS oldest FROM events
                          WHERE global_position > s.last_position
                            AND aggregate_type = 'artifact') p",
        &[],
    )
    .await?;
    let Some(r) = rows.first() else {
        return Err(crate::api::read::internal(
            "search_index_state has no row".into(),
        ));
    };
    let count = |i: usize| -> Result<u64, Rejection> { Ok(column::<i64>(r, i)?.max(0) as u64) };
    let retrying_artifact: Option<String> = column(r, 5)?;
    let retrying_deliveries: Option<i32> = column(r, 6)?;
    Ok(IndexStatus {
        indexed_items: count(10)?,
        last_position: column(r, 0)?,
        last_indexed_at: column(r, 1)?,
        pending: count(11)?,
        lag_seconds: column::<f64>(r, 12)?.max(0.0),
        failed_attempts: count(2)?,
        last_failure: column(r, 3)?,
        last_failure_at: column(r, 4)?,
        retrying: retrying_artifact.map(|artifact_id| Retrying {
            artifact_id,
            deliveries: retrying_deliveries.unwrap_or(0).max(0) as u32,
        }),
        dead_letters: count(7)?,
        last_dead_letter_reason: column(r, 8)?,
        last_dead_letter_at: column(r, 9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> SearchQuery {
        SearchQuery {
            q: text.into(),
            repo: None,
            limit: None,
            after: None,
        }
    }

    #[test]
    fn a_cursor_round_trips() {
        let c = Cursor {
            rank: 0.060_792_71,
            repo: "npm".into(),
            item_id: "left-pad:1.0.0".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("nope"), None);
        assert_eq!(Cursor::decode("NaN/npm/x"), None);
    }

    #[test]
    fn bad_input_names_its_field() {
        let field = |s: SearchQuery| check(&s).unwrap_err().field;
        assert_eq!(field(q("  ")), Some("q".into()));
        assert_eq!(field(q(&"a".repeat(MAX_SEARCH_LEN + 1))), Some("q".into()));
        let mut bad = q("pad");
        bad.repo = Some("No Repo".into());
        assert_eq!(field(bad), Some("repo".into()));
        let mut bad = q("pad");
        bad.limit = Some(0);
        assert_eq!(field(bad), Some("limit".into()));
        let mut bad = q("pad");
        bad.after = Some("x".into());
        assert_eq!(field(bad), Some("after".into()));
        assert!(check(&q("left pad")).is_ok());
    }
}
