-- Decisions and quarantine (issue 10): the `quarantine` read model, fed from the `repo` and
-- `artifact` aggregates' events. `repos.last_sequence` and `artifacts.last_sequence` guard every
-- update (per aggregate), so a redelivered event changes nothing and a gap is noticed.
CREATE TABLE repos (
    repo          text        PRIMARY KEY,
    policy_id     text        NOT NULL,
    budget_ms     integer     NOT NULL,
    auto_release  boolean     NOT NULL,
    bound_by      text        NOT NULL,
    bound_at      timestamptz NOT NULL,
    timeouts      bigint      NOT NULL DEFAULT 0,
    last_sequence bigint      NOT NULL
);
CREATE INDEX repos_policy ON repos (policy_id, repo);

-- One row per artifact (item in a repo): the guard of its decisions and case.
CREATE TABLE artifacts (
    artifact_id   text   PRIMARY KEY,
    repo          text   NOT NULL,
    item_id       text   NOT NULL,
    last_sequence bigint NOT NULL
);

-- One row per decision, keyed by its event's global position (newest first in lists).
CREATE TABLE decisions (
    position     bigint      PRIMARY KEY,
    repo         text        NOT NULL,
    item_id      text        NOT NULL,
    action       text        NOT NULL,
    decision     text        NOT NULL,
    rule_id      text,
    reason       text        NOT NULL,
    policy_id    text        NOT NULL,
    version      integer     NOT NULL,
    input_digest text        NOT NULL,
    digests      text[]      NOT NULL,
    decided_by   text        NOT NULL,
    decided_at   timestamptz NOT NULL
);
CREATE INDEX decisions_item ON decisions (repo, item_id, position DESC);
CREATE INDEX decisions_repo ON decisions (repo, position DESC);
CREATE INDEX decisions_digests ON decisions USING gin (digests);

-- One case per (repo, item): quarantined → released | rejected.
CREATE TABLE quarantine_cases (
    repo              text        NOT NULL,
    item_id           text        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('quarantined', 'released', 'rejected')),
    policy_id         text        NOT NULL,
    version           integer     NOT NULL,
    rule_id           text,
    reason            text        NOT NULL,
    attributes        jsonb       NOT NULL,
    opened_by         text        NOT NULL,
    opened_at         timestamptz NOT NULL,
    decisions         integer     NOT NULL,
    resolved_by       text,
    resolved_at       timestamptz,
    resolution_reason text,
    PRIMARY KEY (repo, item_id)
);
CREATE INDEX quarantine_cases_status ON quarantine_cases (status, repo, opened_at);
CREATE INDEX quarantine_cases_item ON quarantine_cases (item_id, status);
