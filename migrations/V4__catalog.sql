-- The catalog: items owned by the host system, kept by the catalog projector from the
-- `<NS>_CATALOG` stream. `stream_seq` (the change's stream sequence) guards every write, so a
-- redelivered or reordered change never overwrites a newer one; `updated_at` is the time the
-- change reached the stream, comparable with a run's `snapshot_cutoff`.
CREATE TABLE catalog_items (
    item_id    text        PRIMARY KEY,
    status     text        NOT NULL,
    deleted    boolean     NOT NULL DEFAULT false,
    attributes jsonb       NOT NULL,
    updated_at timestamptz NOT NULL,
    stream_seq bigint      NOT NULL
);
CREATE INDEX catalog_items_updated_at ON catalog_items (updated_at);

-- Catalog messages that could not be applied (malformed JSON, invalid id or status): kept,
-- never silently dropped.
CREATE TABLE catalog_rejections (
    stream_seq  bigint      PRIMARY KEY,
    subject     text        NOT NULL,
    error       text        NOT NULL,
    payload     text        NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now()
);
