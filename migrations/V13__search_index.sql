-- The search index of publish-ready items (issue 10, part 5): kept by the indexer, a consumer
-- of the events stream (`<ns>_indexer`) that may fail or stop without affecting decisions,
-- quarantine or reads. Nothing but the indexer writes these tables, and nothing but
-- `catalog.search` and `catalog.index_status` reads them.

-- One row per publish-ready (repo, item): its latest decision allows it, or its case was
-- released (and no later decision denied or quarantined it). Removed when it stops being so.
CREATE TABLE search_items (
    repo        text        NOT NULL,
    item_id     text        NOT NULL,
    -- `allow` (the latest decision allows it) or `released` (its case was released).
    ready_by    text        NOT NULL CHECK (ready_by IN ('allow', 'released')),
    attributes  jsonb       NOT NULL,
    document    tsvector    NOT NULL,
    changed_at  timestamptz NOT NULL,
    indexed_at  timestamptz NOT NULL,
    PRIMARY KEY (repo, item_id)
);
CREATE INDEX search_items_document ON search_items USING gin (document);

-- The guard: per artifact, the aggregate sequence the index reflects (a redelivered or older
-- event changes nothing), ready or not.
CREATE TABLE search_index_items (
    artifact_id   text        PRIMARY KEY,
    last_sequence bigint      NOT NULL,
    position      bigint      NOT NULL,
    indexed_at    timestamptz NOT NULL
);

-- The indexer's progress and failures (one row), for `catalog.index_status`.
CREATE TABLE search_index_state (
    id                      boolean     PRIMARY KEY DEFAULT true CHECK (id),
    last_position           bigint      NOT NULL DEFAULT 0,
    last_indexed_at         timestamptz,
    failed_attempts         bigint      NOT NULL DEFAULT 0,
    last_failure            text,
    last_failure_at         timestamptz,
    retrying_artifact       text,
    retrying_deliveries     integer,
    dead_letters            bigint      NOT NULL DEFAULT 0,
    last_dead_letter_reason text,
    last_dead_letter_at     timestamptz
);
INSERT INTO search_index_state DEFAULT VALUES;
