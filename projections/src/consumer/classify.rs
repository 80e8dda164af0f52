//! Which failures are an outage (retry without limit) and which are the message's own fault
//! (dead-letter it at once): one rule for every consumer.

use tokio_postgres::error::SqlState;

/// Would the same statement succeed later, once Postgres is reachable and calm again?
///
/// Transient: no `DbError` at all (the connection was closed or refused), SQLSTATE class 08
/// (connection exception), 57P0x (admin or crash shutdown, cannot connect now), class 53
/// (insufficient resources), 40001 and 40P01 (serialization failure, deadlock). Anything else
/// the server refused is about the statement itself.
pub fn is_transient_pg(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => is_unreachable(e),
        Some(code) => is_transient_state(code),
    }
}

/// Is there a failure to reach the database anywhere in `err`'s chain (I/O, a closed
/// connection, no pooled connection)? An error without a SQLSTATE that is none of these (a
/// value that does not convert, a wrong row count) is a bug, not an outage.
pub fn is_unreachable(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<std::io::Error>() || e.is::<deadpool_postgres::PoolError>() {
            return true;
        }
        if e.downcast_ref::<tokio_postgres::Error>()
            .is_some_and(tokio_postgres::Error::is_closed)
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// [`is_transient_pg`] for a SQLSTATE.
pub fn is_transient_state(code: &SqlState) -> bool {
    let code = code.code();
    code.starts_with("08")
        || code.starts_with("57P0")
        // A statement or lock timeout, a read-only server during a failover.
        || code == SqlState::QUERY_CANCELED.code()
        || code == SqlState::LOCK_NOT_AVAILABLE.code()
        || code == SqlState::READ_ONLY_SQL_TRANSACTION.code()
        || code.starts_with("53")
        || code == SqlState::T_R_SERIALIZATION_FAILURE.code()
        || code == SqlState::T_R_DEADLOCK_DETECTED.code()
}

/// A deadpool error is always an outage: no connection could be had (or made).
pub fn is_transient_pool(_: &deadpool_postgres::PoolError) -> bool {
    true
}

/// The text of a panic's payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_shutdown_states_are_transient() {
        for code in [
            SqlState::CONNECTION_FAILURE,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
        ] {
            assert!(is_transient_state(&code), "{code:?}");
        }
    }

    #[test]
    fn a_statement_the_server_refuses_is_not_transient() {
        for code in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::CHECK_VIOLATION,
            SqlState::UNDEFINED_TABLE,
            SqlState::SYNTAX_ERROR,
        ] {
            assert!(!is_transient_state(&code), "{code:?}");
        }
    }

    #[test]
    fn a_panic_message_is_read_from_either_payload() {
        let text: Box<dyn std::any::Any + Send> = Box::new("boom");
        let owned: Box<dyn std::any::Any + Send> = Box::new(format!("boom {}", 2));
        assert_eq!(panic_message(text.as_ref()), "boom");
        assert_eq!(panic_message(owned.as_ref()), "boom 2");
    }
}
