//! The error a piece of work ends with, and how it maps onto the consumer runtime's outcomes
//! (see [`gatehouse_projections::consumer`]): an outage is retried without limit, never
//! counted against the run.

use gatehouse_projections::consumer::{is_transient_pg, Outcome};
use gatehouse_projections::error::error_chain;

/// Why a job or event could not be handled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkError {
    /// The run cannot go on (its policy version does not compile, its snapshot is broken, or
    /// Postgres refused a statement: a bug): fail it.
    #[error("{0}")]
    Fatal(String),
    /// Postgres, NATS or the gateway is unavailable, or a read model lags: try again later.
    #[error("{0}")]
    Transient(String),
}

impl WorkError {
    pub fn transient(context: &str, error: impl std::fmt::Display) -> Self {
        WorkError::Transient(format!("{context}: {error}"))
    }

    /// The runtime's outcome, for work that has no run to fail.
    pub fn outcome(self) -> Outcome {
        match self {
            WorkError::Fatal(reason) => Outcome::Poison(reason),
            WorkError::Transient(reason) => Outcome::Transient(reason),
        }
    }
}

impl From<tokio_postgres::Error> for WorkError {
    fn from(e: tokio_postgres::Error) -> Self {
        if is_transient_pg(&e) {
            WorkError::transient("postgres", e)
        } else {
            WorkError::Fatal(format!("postgres refused a statement: {}", error_chain(&e)))
        }
    }
}

impl From<deadpool_postgres::PoolError> for WorkError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        WorkError::transient("postgres pool", e)
    }
}
