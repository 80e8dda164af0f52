//! How a database failure is answered: retry (`unavailable`), the request's fault
//! (`bad_request`), or a server fault (`internal`), by the SQLSTATE anywhere in the error's chain
//! (sqlx or tokio-postgres).

/// The cause of an infrastructure failure, kept whole for the logs (never sent to a caller).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

use gatehouse_projections::consumer::{is_transient_state, is_unreachable};
use tokio_postgres::error::SqlState;

/// How a database failure is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The database cannot be reached (connection, pool, I/O) or answered with one of the
    /// transient SQLSTATEs the consumers retry too: retry.
    Unavailable,
    /// SQLSTATE class 22, a data exception: the request carried a value the database refuses.
    InvalidData,
    /// Any other error (another SQLSTATE, a value that does not decode): a server fault.
    Internal,
}

/// Classifies a database error by the SQLSTATE anywhere in its chain, with the same transient
/// states as the consumer runtime ([`is_transient_state`]); without one, only a failure to
/// reach the database is worth a retry.
pub fn failure(err: &(dyn std::error::Error + 'static)) -> Failure {
    match sqlstate(err) {
        Some(code) if code.starts_with("22") => Failure::InvalidData,
        Some(code) if is_transient_state(&SqlState::from_code(&code)) => Failure::Unavailable,
        Some(_) => Failure::Internal,
        None if unreachable(err) => Failure::Unavailable,
        None => Failure::Internal,
    }
}

/// [`is_unreachable`], or sqlx's own ways of saying so.
fn unreachable(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(e) = e.downcast_ref::<sqlx::Error>() {
            if matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            ) {
                return true;
            }
        }
        current = e.source();
    }
    is_unreachable(err)
}

/// Does a database error with SQLSTATE `code` appear anywhere in `err`'s chain?
pub(super) fn has_sqlstate(err: &(dyn std::error::Error + 'static), code: &str) -> bool {
    sqlstate(err).as_deref() == Some(code)
}

/// The SQLSTATE of the first database error in `err`'s chain (sqlx or tokio-postgres).
fn sqlstate(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>() {
            return db.code().map(|c| c.into_owned());
        }
        if let Some(code) = e
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.code())
        {
            return Some(code.code().to_owned());
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapped(#[source] sqlx::Error);

    #[test]
    fn an_error_without_a_sqlstate_is_worth_a_retry() {
        let e = Wrapped(sqlx::Error::PoolTimedOut);
        assert_eq!(failure(&e), Failure::Unavailable);
    }

    #[test]
    fn a_value_that_does_not_decode_is_a_server_fault_not_an_outage() {
        let e = Wrapped(sqlx::Error::RowNotFound);
        assert_eq!(failure(&e), Failure::Internal);
    }
}
