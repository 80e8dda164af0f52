-- The policy read model: one row per policy and one per version. `last_sequence` guards every
-- update, so a redelivered event changes nothing and a gap is noticed.
CREATE TABLE policies (
    policy_id      text        PRIMARY KEY,
    name           text        NOT NULL,
    description    text        NOT NULL,
    attributes     jsonb       NOT NULL,
    latest_version integer     NOT NULL DEFAULT 0,
    active_version integer,
    created_by     text        NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    last_sequence  bigint      NOT NULL
);

CREATE TABLE policy_versions (
    policy_id     text        NOT NULL,
    version       integer     NOT NULL,
    rules         jsonb       NOT NULL,
    notes         text        NOT NULL,
    author        text        NOT NULL,
    restored_from integer,
    rules_hash    text        NOT NULL,
    rule_count    integer     NOT NULL,
    drafted_at    timestamptz NOT NULL,
    PRIMARY KEY (policy_id, version)
);
