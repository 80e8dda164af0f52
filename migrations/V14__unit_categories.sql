-- The `unit_categories` read model (issue 11 part 4): each unit's category and priority as the
-- active categorisation rules computed them, written by the categoriser from the catalog
-- stream (guarded by the change's stream sequence) and recomputed, from the attributes kept
-- here, when another rules version is activated (guarded by the rules version).
CREATE TABLE unit_categories (
    unit              text PRIMARY KEY,
    category          text NOT NULL
        CHECK (category IN ('test', 'small', 'medium', 'large', 'enterprise')),
    priority          smallint NOT NULL CHECK (priority BETWEEN 0 AND 100),
    rules_version     integer NOT NULL,
    rule              text,
    attributes        jsonb NOT NULL,
    attributes_digest text NOT NULL,
    stream_seq        bigint NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX unit_categories_by_category ON unit_categories (category, priority DESC, unit);
CREATE INDEX unit_categories_by_priority ON unit_categories (priority DESC, unit);
