-- Requests refused `forbidden` (the caller lacked the operation's role), written by the
-- gateway's api layer in its own statement before it answers; read by `audit.denials`. Nothing
-- of a denied request reaches `events`, so this is the only trace of it.
CREATE TABLE denials (
    position     bigserial   PRIMARY KEY,
    denied_at    timestamptz NOT NULL DEFAULT now(),
    "user"       text        NOT NULL,
    account      text        NOT NULL,
    operation    text        NOT NULL,
    missing_role text        NOT NULL
);

CREATE INDEX denials_by_user ON denials ("user", position);
