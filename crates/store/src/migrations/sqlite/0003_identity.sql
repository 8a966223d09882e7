-- Who may act and under what: registered agents, the administrators'
-- credentials, each node's token-signing keys, and every task token issued.
-- Times are microseconds since the epoch.
CREATE TABLE agents (
    name       TEXT    PRIMARY KEY,
    spiffe_id  TEXT    NOT NULL UNIQUE,
    owner      TEXT    NOT NULL,
    env        TEXT    NOT NULL,
    function   TEXT    NOT NULL,
    status     TEXT    NOT NULL CHECK (status IN ('active', 'suspended')),
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    -- SHA-256 (hex) of the SubjectPublicKeyInfo of the agent's current key,
    -- when the built-in CA issued its SVID; a new key replaces it.
    key_sha256 TEXT,
    -- Tokens issued before this time (the agent's registration or its last
    -- key change) are refused: a re-created or re-keyed agent starts clean.
    credentials_since_us INTEGER NOT NULL
);

CREATE TABLE admin_credentials (
    id          TEXT    PRIMARY KEY,
    secret_hash TEXT    NOT NULL,
    created_us  INTEGER NOT NULL
);

-- public_jwk is the key as JSON text; a retired key still verifies the tokens
-- it signed until they expire.
CREATE TABLE signing_keys (
    kid        TEXT    PRIMARY KEY,
    node_id    TEXT    NOT NULL,
    public_jwk TEXT    NOT NULL,
    created_us INTEGER NOT NULL,
    retired_us INTEGER
);

-- One row per task token. parent_task_id is not a foreign key: the tree is
-- walked, never enforced, so pruning old tasks stays possible.
CREATE TABLE tasks (
    task_id        TEXT    PRIMARY KEY,
    jti            TEXT    NOT NULL UNIQUE,
    agent          TEXT    NOT NULL,
    parent_task_id TEXT,
    root_task_id   TEXT    NOT NULL,
    depth          INTEGER NOT NULL,
    grant_json     TEXT    NOT NULL,
    issued_us      INTEGER NOT NULL,
    expires_us     INTEGER NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('active', 'completed', 'revoked')),
    ended_us       INTEGER,
    end_reason     TEXT
);

CREATE INDEX tasks_by_parent ON tasks (parent_task_id);
CREATE INDEX tasks_by_agent ON tasks (agent, state);
-- The revocation set every node reloads several times a second.
CREATE INDEX tasks_ended_by_expiry ON tasks (expires_us, task_id) WHERE state <> 'active';
