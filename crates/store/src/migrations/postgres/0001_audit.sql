-- Each node's hash-chained audit records, in insertion order (id), and the
-- head of each node's chain, kept beside it so a deleted tail shows.
CREATE TABLE audit_records (
    id             BIGSERIAL PRIMARY KEY,
    node_id        TEXT    NOT NULL,
    seq            BIGINT  NOT NULL,
    time_us        BIGINT  NOT NULL,
    kind           TEXT    NOT NULL,
    request_id     TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    resource       TEXT    NOT NULL,
    outcome        TEXT    NOT NULL,
    policies       TEXT    NOT NULL,
    request_digest TEXT    NOT NULL,
    detail         TEXT    NOT NULL,
    prev_hash      TEXT    NOT NULL,
    hash           TEXT    NOT NULL,
    UNIQUE (node_id, seq)
);

CREATE TABLE audit_heads (
    node_id TEXT   PRIMARY KEY,
    seq     BIGINT NOT NULL,
    hash    TEXT   NOT NULL
);
