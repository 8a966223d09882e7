-- The head's seal: an HMAC of (node, seq, hash) under a key kept in the node's
-- data directory, never in the database. Empty for chains written without one.
ALTER TABLE audit_heads ADD COLUMN seal TEXT NOT NULL DEFAULT '';
