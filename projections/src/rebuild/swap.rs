//! The last step of a rebuild: inside the transaction that locked the live tables, put each
//! `<table>_rebuild` in place of `<table>` and drop the old one.
//!
//! `LIKE ... INCLUDING ALL` names the shadow's indexes after the shadow (`audit_log_rebuild_pkey`),
//! so once the old table is gone they get the old names back: the next rebuild, monitoring and
//! `EXPLAIN` output see the names `migrations/` gave them.

use deadpool_postgres::Transaction;

use crate::error::ProjectorError;
use crate::model::{ReadModel, Tables};

/// An index's name and what it indexes (unique or not, method, columns, predicate).
type Index = (String, String);

/// Replaces every live table of `model` by its shadow in `shadows`.
pub(super) async fn swap_tables(
    tx: &Transaction<'_>,
    model: &dyn ReadModel,
    shadows: &Tables,
) -> Result<(), ProjectorError> {
    for table in model.tables() {
        let shadow = shadows.name(table);
        let live_indexes = indexes(tx, table).await?;
        let shadow_indexes = indexes(tx, shadow).await?;
        tx.batch_execute(&format!(
            "ALTER TABLE {table} RENAME TO {table}_old;
             ALTER TABLE {shadow} RENAME TO {table};
             DROP TABLE {table}_old;"
        ))
        .await?;
        for (from, to) in renames(&live_indexes, &shadow_indexes) {
            tx.batch_execute(&format!(
                "ALTER INDEX {} RENAME TO {}",
                quote(&from),
                quote(&to)
            ))
            .await?;
        }
    }
    Ok(())
}

async fn indexes(tx: &Transaction<'_>, table: &str) -> Result<Vec<Index>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT c.relname::text,
                    i.indisunique::text || ' ' ||
                        regexp_replace(pg_get_indexdef(i.indexrelid), '^.* USING ', '')
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = $1::text::regclass
             ORDER BY 2, 1",
            &[&table],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// `(shadow index, live name)` for each shadow index that indexes what a live one did under
/// another name.
fn renames(live: &[Index], shadow: &[Index]) -> Vec<(String, String)> {
    let mut unclaimed: Vec<&Index> = shadow.iter().collect();
    let mut renames = Vec::new();
    for (live_name, definition) in live {
        if let Some(at) = unclaimed.iter().position(|(_, d)| d == definition) {
            let (shadow_name, _) = unclaimed.remove(at);
            if shadow_name != live_name {
                renames.push((shadow_name.clone(), live_name.clone()));
            }
        }
    }
    renames
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: &str, definition: &str) -> Index {
        (name.to_owned(), definition.to_owned())
    }

    #[test]
    fn each_shadow_index_takes_the_name_of_the_live_index_with_the_same_definition() {
        let live = [
            index("audit_log_pkey", "true btree (position)"),
            index("audit_log_actor", "false btree (actor, position)"),
        ];
        let shadow = [
            index(
                "audit_log_rebuild_actor_position_idx",
                "false btree (actor, position)",
            ),
            index("audit_log_rebuild_pkey", "true btree (position)"),
        ];
        assert_eq!(
            renames(&live, &shadow),
            vec![
                (
                    "audit_log_rebuild_pkey".to_owned(),
                    "audit_log_pkey".to_owned()
                ),
                (
                    "audit_log_rebuild_actor_position_idx".to_owned(),
                    "audit_log_actor".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn an_index_already_named_right_is_left_alone() {
        let live = [index("a", "true btree (position)")];
        assert!(renames(&live, &live).is_empty());
    }

    #[test]
    fn two_indexes_with_one_definition_are_paired_once_each() {
        let live = [
            index("a1", "false btree (x)"),
            index("a2", "false btree (x)"),
        ];
        let shadow = [
            index("b1", "false btree (x)"),
            index("b2", "false btree (x)"),
        ];
        assert_eq!(
            renames(&live, &shadow),
            vec![
                ("b1".to_owned(), "a1".to_owned()),
                ("b2".to_owned(), "a2".to_owned())
            ]
        );
    }

    #[test]
    fn quoting_doubles_embedded_quotes() {
        assert_eq!(quote("we\"ird"), "\"we\"\"ird\"");
    }
}
