-- Flag outcomes (issue 11 part 7), counted per flag and window by the flag monitor; never one
-- row per outcome. A window is [window_start, window_start + window_secs) of the outcomes'
-- publish times; window_secs is the flag's auto_rollback window (60 s without one).
CREATE TABLE flag_outcome_windows (
    flag_key        text NOT NULL,
    window_start    timestamptz NOT NULL,
    window_secs     integer NOT NULL,
    successes       bigint NOT NULL DEFAULT 0,
    errors          bigint NOT NULL DEFAULT 0,
    duration_ms_sum double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (flag_key, window_start, window_secs)
);

-- How far the monitor counted (the outcomes stream's sequence), moved with the counts.
CREATE TABLE flag_outcome_checkpoint (
    consumer        text PRIMARY KEY,
    last_stream_seq bigint NOT NULL
);
