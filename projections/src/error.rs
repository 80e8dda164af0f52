//! The errors a projector or a rebuild returns to its caller.

use crate::model::ApplyError;

/// Why a projector (or a rebuild) stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// A JetStream request failed: stream or consumer setup, or the dead-letter stream.
    #[error("JetStream: could not {action}")]
    JetStream {
        action: String,
        #[source]
        source: async_nats::Error,
    },
    /// No Postgres connection could be had from the pool.
    #[error("no Postgres connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A Postgres statement failed.
    #[error("a Postgres statement failed")]
    Store(#[from] tokio_postgres::Error),
    /// A rebuild could not apply an event (only store failures stop a rebuild).
    #[error("could not apply the event at position {position}")]
    Apply {
        position: i64,
        #[source]
        source: ApplyError,
    },
    /// Another rebuild of the same read model is running.
    #[error("a rebuild of {0} is already running")]
    RebuildRunning(String),
    /// Transactions that may still write events below the rebuild's high-water mark did not
    /// finish in time.
    #[error("writers still in flight after {0:?}; try again")]
    WritersInFlight(std::time::Duration),
    /// A projector task panicked or was aborted.
    #[error("the {model} projector task failed")]
    Task {
        model: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl ProjectorError {
    pub(crate) fn jetstream(
        action: impl Into<String>,
        source: impl Into<async_nats::Error>,
    ) -> Self {
        ProjectorError::JetStream {
            action: action.into(),
            source: source.into(),
        }
    }
}

/// `e` and its sources, joined by `": "`: for a dead letter's reason, which has no place for
/// a structured chain.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_chain_names_every_cause() {
        let e = ProjectorError::Apply {
            position: 7,
            source: ApplyError::Poison("missing field `name`".into()),
        };
        assert_eq!(
            error_chain(&e),
            "could not apply the event at position 7: unusable event: missing field `name`"
        );
    }
}
