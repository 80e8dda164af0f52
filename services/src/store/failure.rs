//! How a database failure is answered: retry (`unavailable`), the request's fault
//! (`bad_request`), or a server fault (`internal`), by the SQLSTATE anywhere in the error's chain
//! (sqlx or tokio-postgres).

/// The cause of an infrastructure failure, kept whole for the logs (never sent to a caller).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a database failure is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No SQLSTATE (connection, pool, I/O) or one of the transient classes: retry.
    Unavailable,
    /// SQLSTATE class 22, a data exception: the request carried a value the database refuses.
    InvalidData,
    /// Any other SQLSTATE: a server fault.
    Internal,
}

/// Classifies a database error by the SQLSTATE anywhere in its chain.
pub fn failure(err: &(dyn std::error::Error + 'static)) -> Failure {
    match sqlstate(err) {
        None => Failure::Unavailable,
        Some(code) if code.starts_with("22") => Failure::InvalidData,
        // Connection exceptions, transaction rollbacks (serialization, deadlock), insufficient
        // resources, operator intervention (shutdown).
        Some(code) if ["08", "40", "53", "57"].iter().any(|c| code.starts_with(c)) => {
            Failure::Unavailable
        }
        Some(_) => Failure::Internal,
    }
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
}
