-- The event store (postgres-es 0.5.0, pure event-store mode: no snapshots table, see
-- shared/reference/cqrs-es.md §3.5) plus what postgres-es lacks: a global position, the writing
-- transaction's id and a recorded time. postgres-es names its columns explicitly, so the extra
-- defaulted columns are invisible to it.
CREATE TABLE events (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence >= 0),
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE UNIQUE INDEX events_global_position ON events (global_position);

-- Transactional outbox: filled by the trigger below in the writing transaction, drained in
-- commit order by the relay (one active instance, fenced by transaction id).
CREATE TABLE event_outbox (
    global_position bigint      PRIMARY KEY,
    tx_id           xid8        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL,
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL,
    published_at    timestamptz,
    stream_sequence bigint
);
CREATE INDEX event_outbox_pending ON event_outbox (global_position) WHERE published_at IS NULL;
CREATE INDEX event_outbox_published ON event_outbox (published_at) WHERE published_at IS NOT NULL;

-- Durable command deduplication: one row per command id that recorded events, written in the
-- same transaction as those events. A command id reused by another transaction raises GH001,
-- which the gateway turns into the original reply or `idempotency_conflict`. (A unique
-- violation would be reported by postgres-es as an optimistic-lock conflict: hence ON CONFLICT.)
CREATE TABLE command_log (
    command_id     text        PRIMARY KEY,
    request_hash   text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    first_sequence bigint      NOT NULL,
    last_sequence  bigint      NOT NULL,
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION events_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cid  text := NEW.metadata ->> 'command_id';
    rows int;
BEGIN
    INSERT INTO event_outbox (global_position, tx_id, aggregate_type, aggregate_id, sequence,
                              event_type, event_version, payload, metadata, recorded_at)
    VALUES (NEW.global_position, NEW.tx_id, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence,
            NEW.event_type, NEW.event_version, NEW.payload, NEW.metadata, NEW.recorded_at);

    IF cid IS NOT NULL THEN
        INSERT INTO command_log AS c (command_id, request_hash, aggregate_type, aggregate_id,
                                      first_sequence, last_sequence)
        VALUES (cid, coalesce(NEW.metadata ->> 'request_hash', ''), NEW.aggregate_type,
                NEW.aggregate_id, NEW.sequence, NEW.sequence)
        ON CONFLICT (command_id) DO UPDATE SET last_sequence = EXCLUDED.last_sequence
            WHERE c.tx_id = pg_current_xact_id()
              AND c.aggregate_type = EXCLUDED.aggregate_type
              AND c.aggregate_id = EXCLUDED.aggregate_id;
        GET DIAGNOSTICS rows = ROW_COUNT;
        IF rows = 0 THEN
            RAISE EXCEPTION 'command_id % was already recorded', cid USING ERRCODE = 'GH001';
        END IF;
    END IF;

    -- Delivered at COMMIT; notifications of one transaction collapse into one.
    PERFORM pg_notify('gatehouse_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER events_after_insert AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_after_insert();

-- How far the active relay got: rows up to `inflight_upto` may have been published before a
-- crash, so a relay taking over checks them against the stream before publishing again.
CREATE TABLE relay_state (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    inflight_upto bigint  NOT NULL DEFAULT 0
);
INSERT INTO relay_state DEFAULT VALUES;
