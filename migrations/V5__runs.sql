-- Evaluation runs. The run lifecycle is in the policy aggregate's events; these tables hold what
-- is derived from them and the work done for them.

-- The frozen snapshot of a Prepare: ready, non-deleted items updated at or before the cutoff,
-- numbered 0..n-1 in item id order. Batch jobs are ordinal ranges.
CREATE TABLE run_snapshot (
    snapshot_id text   NOT NULL,
    ordinal     bigint NOT NULL,
    item_id     text   NOT NULL,
    PRIMARY KEY (snapshot_id, ordinal)
);

-- The run read model (projected from the policy events, part of the `policies` read model).
CREATE TABLE runs (
    run_id               text             PRIMARY KEY,
    policy_id            text             NOT NULL,
    run_number           integer          NOT NULL,
    version              integer          NOT NULL,
    status               text             NOT NULL,
    epoch                integer          NOT NULL,
    snapshot_id          text             NOT NULL,
    snapshot_cutoff      timestamptz      NOT NULL,
    total_ready_snapshot bigint           NOT NULL,
    batch_size           integer          NOT NULL,
    batches              integer          NOT NULL,
    coverage_threshold   double precision NOT NULL,
    max_errors           bigint           NOT NULL,
    final_counters       jsonb,
    failure              text,
    promoted             boolean          NOT NULL DEFAULT false,
    promoted_at          timestamptz,
    prepared_by          text             NOT NULL,
    prepared_at          timestamptz      NOT NULL,
    ended_at             timestamptz,
    last_sequence        bigint           NOT NULL
);
CREATE INDEX runs_policy ON runs (policy_id, run_number DESC);
CREATE INDEX runs_status ON runs (status);

-- Progress, written by workers in the same transaction as each batch's results. A batch is
-- counted once: its `run_batches` row is inserted first, and counters move only if it was new.
CREATE TABLE run_progress (
    run_id        text        PRIMARY KEY,
    processed     bigint      NOT NULL DEFAULT 0,
    eligible      bigint      NOT NULL DEFAULT 0,
    ineligible    bigint      NOT NULL DEFAULT 0,
    quarantined   bigint      NOT NULL DEFAULT 0,
    pending       bigint      NOT NULL DEFAULT 0,
    errors        bigint      NOT NULL DEFAULT 0,
    batches_done  integer     NOT NULL DEFAULT 0,
    error_samples jsonb       NOT NULL DEFAULT '[]',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (eligible + ineligible + quarantined + pending + errors = processed)
);

CREATE TABLE run_batches (
    run_id    text        NOT NULL,
    batch     integer     NOT NULL,
    epoch     integer     NOT NULL,
    processed bigint      NOT NULL,
    done_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, batch)
);

-- One result per (policy, version, item): written by batch jobs and by the live evaluation of
-- changed items. `item_seq` (the catalog change evaluated) guards updates: an older evaluation
-- never overwrites a newer one. Results of one version never touch another's.
CREATE TABLE eval_results (
    policy_id    text             NOT NULL,
    version      integer          NOT NULL,
    item_id      text             NOT NULL,
    outcome      text             NOT NULL CHECK (outcome IN ('allow', 'deny', 'quarantine', 'pending', 'error')),
    rule_id      text,
    reason       text             NOT NULL,
    score        double precision NOT NULL,
    item_seq     bigint           NOT NULL,
    run_id       text,
    evaluated_at timestamptz      NOT NULL,
    PRIMARY KEY (policy_id, version, item_id)
);
CREATE INDEX eval_results_allowed ON eval_results (policy_id, version, item_id) WHERE outcome = 'allow';
