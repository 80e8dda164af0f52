-- The `flags` read model (issue 11): one row per flag with its whole state (what `flag.get`
-- answers and `flag.evaluate` evaluates), the rollout history, and the global switches.
-- Rows are guarded by the aggregate's sequence (`last_sequence`), moved in the projector's
-- transaction with its checkpoint.
CREATE TABLE flags (
    flag_key      text PRIMARY KEY,
    state         jsonb NOT NULL,
    archived      boolean NOT NULL DEFAULT false,
    last_sequence bigint NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- One row per rollout change: set_rollout (manual or auto_rollback), emergency stop and
-- resume of a flag, and safe mode on/off (flag_key '*'). `change` is the RolloutChange JSON.
CREATE TABLE flag_rollout_history (
    flag_key     text NOT NULL,
    aggregate_id text NOT NULL,
    sequence     bigint NOT NULL,
    triggered_by text NOT NULL,
    at           timestamptz NOT NULL,
    change       jsonb NOT NULL,
    PRIMARY KEY (aggregate_id, sequence, flag_key)
);
CREATE INDEX flag_rollout_history_by_flag ON flag_rollout_history (flag_key, at DESC, sequence DESC);

-- The `global` aggregate's state (safe mode), one row `id = 'global'`.
CREATE TABLE flag_globals (
    id            text PRIMARY KEY,
    safe_mode     boolean NOT NULL,
    state         jsonb NOT NULL,
    last_sequence bigint NOT NULL
);
