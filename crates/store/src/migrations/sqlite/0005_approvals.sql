-- Calls held for a human's approval, and the names of the people who decide.
--
-- approvals: one row per held call. task_chain, reasons and policies are JSON
-- arrays of strings. state only moves forward, by compare-and-set on its
-- current value (see approvals_sql.rs). Times are microseconds since the
-- epoch; decided_by is an entity reference (Admin::"alice",
-- Mandate::"timeout"); closed_us is when an approved hold was used or
-- withdrawn.
CREATE TABLE approvals (
    id              TEXT    PRIMARY KEY,
    task_id         TEXT    NOT NULL,
    root_task_id    TEXT    NOT NULL,
    task_chain      TEXT    NOT NULL,
    agent           TEXT    NOT NULL,
    agent_name      TEXT    NOT NULL,
    endpoint        TEXT    NOT NULL,
    upstream        TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    resource        TEXT    NOT NULL,
    argument_digest TEXT    NOT NULL,
    purpose         TEXT    NOT NULL,
    reasons         TEXT    NOT NULL,
    policies        TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN
                        ('pending', 'approved', 'denied', 'expired', 'cancelled', 'used')),
    created_us      INTEGER NOT NULL,
    expires_us      INTEGER NOT NULL,
    decided_us      INTEGER,
    decided_by      TEXT,
    note            TEXT,
    closed_us       INTEGER
);

CREATE INDEX approvals_by_state ON approvals (state, created_us);
CREATE INDEX approvals_by_call ON approvals (task_id, action, resource, argument_digest);

-- Each administrator's credential gets a name, so that an approval names the
-- person who gave it. The credential made at first start is "admin"; should
-- a store hold several already, the others are told apart by their IDs.
ALTER TABLE admin_credentials ADD COLUMN name TEXT NOT NULL DEFAULT 'admin';
UPDATE admin_credentials SET name = 'admin-' || id
    WHERE id <> (SELECT id FROM admin_credentials ORDER BY created_us, id LIMIT 1);
CREATE UNIQUE INDEX admin_credentials_by_name ON admin_credentials (name);
