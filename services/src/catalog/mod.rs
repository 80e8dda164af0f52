//! The `catalog` context: the host system's items, as the catalog projector keeps them from the
//! stream `<NS>_CATALOG`, and each policy's public catalog. Queries `catalog.get`,
//! `catalog.stats`, `catalog.public` (declared in [`OPERATIONS`]); no command writes the catalog
//! (hosts publish changes to its stream).
//!
//! `catalog.search` and `catalog.index_status` read the search index of publish-ready items
//! the [`indexer`] keeps from the events stream.
//!
//! Layout: [`queries`], [`search`] (the search queries), [`indexer`] (the consumer keeping the
//! search index).
pub mod indexer;
pub mod queries;
pub mod search;

use gatehouse_events::catalog::{
    CatalogItem, CatalogStats, GetItem, IndexStatus, IndexStatusQuery, PublicCatalogPage,
    PublicCatalogQuery, SearchPage, SearchQuery, StatsQuery,
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
    query!(
        "catalog.search",
        Viewer,
        "publish-ready items (allowed, or released) matching words, best first",
        SearchQuery => SearchPage,
        search::search,
        None
    ),
    query!(
        "catalog.index_status",
        Viewer,
        "the search indexer's progress, lag, failed attempts and dead letters",
        IndexStatusQuery => IndexStatus,
        search::index_status,
        None
    ),
];
