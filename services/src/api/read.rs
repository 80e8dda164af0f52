//! What query handlers share: reading columns without panicking, pages, and the answer to a
//! failed read (`unavailable` only when a retry can help; detail logged, never sent).

use deadpool_postgres::Pool;
use gatehouse_events::envelope::{Rejection, RejectionCode};
use tokio_postgres::row::RowIndex;
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use super::request;

/// Default and largest page size of list queries.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1_000;

/// Column `idx` of `row`. A value that cannot be read (such as JSON nested deeper than
/// serde_json reads) is an `internal` rejection, never a panic.
pub fn column<'a, T: FromSql<'a>>(
    row: &'a Row,
    idx: impl RowIndex + std::fmt::Display + Copy,
) -> Result<T, Rejection> {
    row.try_get(idx)
        .map_err(|e| internal(format!("cannot read column {idx}: {e}")))
}

/// Validated `(limit, offset)` as SQL parameters.
pub fn page(limit: Option<u32>, offset: Option<u32>) -> Result<(i64, i64), Rejection> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(
            request::bad_request(format!("limit must be between 1 and {MAX_LIMIT}"))
                .with_field("limit"),
        );
    }
    Ok((limit as i64, offset.unwrap_or(0) as i64))
}

pub fn unavailable(detail: String) -> Rejection {
    tracing::error!(error.message = %detail, "read model unavailable");
    Rejection::new(
        RejectionCode::Unavailable,
        "the database is unavailable; retry",
    )
}

/// The answer to a failed read: `unavailable` (retry) only when retrying can help.
pub fn database(e: tokio_postgres::Error) -> Rejection {
    match crate::store::failure(&e) {
        crate::store::Failure::Unavailable => unavailable(e.to_string()),
        crate::store::Failure::InvalidData => {
            tracing::warn!(error.message = %e, "the database refused a value of a request");
            request::bad_request("the database refused a value of this request")
        }
        crate::store::Failure::Internal => {
            tracing::error!(error.message = %e, "read model query failed");
            internal("the read model query failed".into())
        }
    }
}

/// An unexpected failure: `detail` is logged, the caller gets a generic message.
pub fn internal(detail: String) -> Rejection {
    tracing::error!(error.message = %detail, "query failed");
    Rejection::new(
        RejectionCode::Internal,
        "unexpected server error (details in the server log)",
    )
}

pub async fn query(
    pg: &Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Row>, Rejection> {
    let client = pg.get().await.map_err(|e| unavailable(e.to_string()))?;
    client.query(sql, params).await.map_err(database)
}
