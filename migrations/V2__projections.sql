-- Projector checkpoints: each read-model change commits together with its projector's
-- checkpoint (the last JetStream stream sequence applied), in one transaction.
CREATE TABLE projector_checkpoints (
    projector       text        PRIMARY KEY,
    last_stream_seq bigint      NOT NULL DEFAULT 0,
    last_position   bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The audit read model: one row per stored event, keyed by its global position.
CREATE TABLE audit_log (
    position       bigint      PRIMARY KEY,
    recorded_at    timestamptz NOT NULL,
    actor          text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL,
    event_type     text        NOT NULL,
    event_version  text        NOT NULL,
    command_id     text        NOT NULL,
    correlation_id text        NOT NULL,
    causation_id   text        NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL
);
CREATE INDEX audit_log_aggregate ON audit_log (aggregate_type, aggregate_id, position);
CREATE INDEX audit_log_actor ON audit_log (actor, position);
CREATE INDEX audit_log_event_type ON audit_log (event_type, position);
CREATE INDEX audit_log_recorded_at ON audit_log (recorded_at, position);
