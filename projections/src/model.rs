//! What a read model is to the runtime: the [`ReadModel`] trait, the [`Tables`] it writes to,
//! and the [`ApplyError`] that tells the runtime whether to retry an event or park it.
//!
//! The same `apply` serves live projection (tables under their own names) and rebuilds (the
//! `<table>_rebuild` shadows), so a rebuilt model is exactly what the live one holds.

use async_trait::async_trait;
use gatehouse_events::record::EventRecord;
use gatehouse_events::subjects;
use tokio_postgres::Transaction;

/// Which events a read model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Every event of every aggregate.
    All,
    /// Only the events of these aggregate types.
    Aggregates(&'static [&'static str]),
}

impl Interest {
    /// The aggregate types to read, or `None` for all of them.
    pub fn aggregate_types(self) -> Option<&'static [&'static str]> {
        match self {
            Interest::All => None,
            Interest::Aggregates(types) => Some(types),
        }
    }
}

/// A projection of the event stream into tables it owns.
///
/// `apply` must be idempotent: every row update is guarded by the event's position or
/// aggregate sequence, so applying an event twice changes nothing. It must decide before it
/// writes: when it returns [`ApplyError::Gap`] or [`ApplyError::Poison`] it has written nothing
/// and the transaction is still usable (a rebuild skips the event and goes on).
#[async_trait]
pub trait ReadModel: Send + Sync {
    /// The stable name: the checkpoint row, the consumer (`<ns>_<name>`) and the CLI use it.
    fn name(&self) -> &'static str;

    /// The tables this model owns (created by `migrations/`, swapped by a rebuild).
    fn tables(&self) -> &'static [&'static str];

    /// The events this model reads.
    fn interest(&self) -> Interest;

    /// The subjects its consumer filters the events stream by.
    fn filter_subjects(&self, ns: &str) -> Vec<String> {
        match self.interest() {
            Interest::All => vec![subjects::all_events(ns)],
            Interest::Aggregates(types) => types
                .iter()
                .map(|aggregate| subjects::aggregate_events(ns, aggregate))
                .collect(),
        }
    }

    /// Applies one event inside `tx`, writing to the physical tables named by `tables`.
    async fn apply(
        &self,
        tx: &Transaction<'_>,
        tables: &Tables,
        event: &EventRecord,
    ) -> Result<(), ApplyError>;

    /// Copies the model's next page of events straight from the event store into its tables,
    /// in SQL, when the model can: the events after position `after` (and at most `up_to`), in
    /// position order, at most `limit` of them. Returns how many it copied and the last
    /// position, or `None`: the model cannot, and the caller reads the events and applies
    /// them with [`ReadModel::apply`]. A model that implements it reads every event (its
    /// interest is [`Interest::All`]), never refuses one, and ends in the same rows as
    /// `apply`. A rebuild uses it: no event leaves Postgres.
    async fn copy_page(
        &self,
        _tx: &Transaction<'_>,
        _tables: &Tables,
        _after: i64,
        _up_to: Option<i64>,
        _limit: i64,
    ) -> Option<Result<(usize, i64), ApplyError>> {
        None
    }
}

/// Maps each table a model owns to the physical table to write: itself when projecting live,
/// `<table>_rebuild` during a rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    names: Vec<(&'static str, String)>,
}

impl Tables {
    /// The model's own tables.
    pub fn live(model: &dyn ReadModel) -> Self {
        Self::with_suffix(model, "")
    }

    /// The shadow tables a rebuild fills.
    pub fn rebuild(model: &dyn ReadModel) -> Self {
        Self::with_suffix(model, REBUILD_SUFFIX)
    }

    fn with_suffix(model: &dyn ReadModel, suffix: &str) -> Self {
        let names = model
            .tables()
            .iter()
            .map(|t| (*t, format!("{t}{suffix}")))
            .collect();
        Self { names }
    }

    /// The physical name of `table`; a table the model does not own keeps its name.
    pub fn name<'a>(&'a self, table: &'a str) -> &'a str {
        self.names
            .iter()
            .find(|(logical, _)| *logical == table)
            .map_or(table, |(_, physical)| physical.as_str())
    }
}

/// Appended to a table's name for the shadow a rebuild fills.
pub const REBUILD_SUFFIX: &str = "_rebuild";

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Postgres failed: transient (retry later) unless the statement itself was rejected.
    #[error("the read-model store failed")]
    Store(#[from] tokio_postgres::Error),
    /// The event is ahead of the model: an earlier event of its aggregate is not applied yet.
    /// Transient: the missing event is on its way (a redelivery, or a reorder after a leader
    /// change).
    #[error("{aggregate} {aggregate_id}: expected sequence {expected}, got {got}")]
    Gap {
        aggregate: String,
        aggregate_id: String,
        expected: i64,
        got: i64,
    },
    /// The event can never be applied (undecodable payload, a type the model must understand
    /// but does not): park it in the dead-letter stream.
    #[error("unusable event: {0}")]
    Poison(String),
}

impl ApplyError {
    /// Will the same event apply if tried again later?
    pub fn is_transient(&self) -> bool {
        !matches!(self, ApplyError::Poison(_))
    }

    /// A gap error for `event`, which expected `expected` as its sequence.
    pub fn gap(event: &EventRecord, expected: i64) -> Self {
        ApplyError::Gap {
            aggregate: event.aggregate.clone(),
            aggregate_id: event.aggregate_id.clone(),
            expected,
            got: event.sequence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Shelf;

    #[async_trait]
    impl ReadModel for Shelf {
        fn name(&self) -> &'static str {
            "shelf"
        }
        fn tables(&self) -> &'static [&'static str] {
            &["books", "shelves"]
        }
        fn interest(&self) -> Interest {
            Interest::Aggregates(&["book", "shelf"])
        }
        async fn apply(
            &self,
            _: &Transaction<'_>,
            _: &Tables,
            _: &EventRecord,
        ) -> Result<(), ApplyError> {
            Ok(())
        }
    }

    #[test]
    fn live_tables_keep_their_names_and_rebuild_tables_get_the_suffix() {
        assert_eq!(Tables::live(&Shelf).name("books"), "books");
        assert_eq!(Tables::rebuild(&Shelf).name("shelves"), "shelves_rebuild");
    }

    #[test]
    fn a_table_the_model_does_not_own_is_never_renamed() {
        assert_eq!(Tables::rebuild(&Shelf).name("events"), "events");
    }

    #[test]
    fn the_filter_has_one_subject_per_aggregate_of_interest() {
        assert_eq!(
            Shelf.filter_subjects("t_1"),
            vec![
                "t_1.events.book.>".to_owned(),
                "t_1.events.shelf.>".to_owned()
            ]
        );
    }

    #[test]
    fn only_poison_is_permanent() {
        assert!(!ApplyError::Poison("bad".into()).is_transient());
        let gap = ApplyError::Gap {
            aggregate: "policy".into(),
            aggregate_id: "p1".into(),
            expected: 2,
            got: 3,
        };
        assert!(gap.is_transient());
    }
}
