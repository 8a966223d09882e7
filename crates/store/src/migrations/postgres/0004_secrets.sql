-- Secrets, sealed: each value is encrypted under the node's key-encryption
-- key (KEK), which never comes here. kek_id names that key; nonce and
-- ciphertext (with its tag) are base64. The plaintext is never stored.
-- Times are microseconds since the epoch; rotated_us is NULL until the first
-- rotation.
CREATE TABLE secrets (
    name       TEXT    PRIMARY KEY,
    version    BIGINT  NOT NULL CHECK (version >= 1),
    kek_id     TEXT    NOT NULL,
    nonce      TEXT    NOT NULL,
    ciphertext TEXT    NOT NULL,
    created_us BIGINT  NOT NULL,
    rotated_us BIGINT
);
