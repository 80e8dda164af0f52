//! The `catalog` context: the host system's items, as the catalog projector keeps them from the
//! stream `<NS>_CATALOG`, and each policy's public catalog. Queries `catalog.get`,
//! `catalog.stats`, `catalog.public` (declared in [`OPERATIONS`]); no command writes the catalog
//! (hosts publish changes to its stream).
//!
//! Layout: [`queries`].
pub mod queries;

use gatehouse_events::catalog::{
    CatalogItem, CatalogStats, GetItem, PublicCatalogPage, PublicCatalogQuery, StatsQuery,
};

use crate::api::{Operation, ReadModel};
use crate::query;

/// The catalog context's queries.
pub const OPERATIONS: &[Operation] = &[
    query!(
        "catalog.get",
        Viewer,
        "one item as the catalog holds it",
        GetItem => CatalogItem,
        queries::item,
        None
    ),
    query!(
        "catalog.stats",
        Viewer,
        "counts of the catalog",
        StatsQuery => CatalogStats,
        queries::stats,
        None
    ),
    query!(
        "catalog.public",
        Viewer,
        "the items a policy's active version allows, current results only",
        PublicCatalogQuery => PublicCatalogPage,
        queries::public,
        Some(ReadModel::Policies)
    ),
];
