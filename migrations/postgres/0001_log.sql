-- The transparency log on PostgreSQL: leaves, the RFC 6962 stored hashes, every checkpoint ever
-- signed, and the one tree-state row that sequencers (one per replica) lock to commit a batch.
-- Written only by a sequencer, one transaction per batch.

-- Settings fixed at first start (the log origin); a later start with a different value refuses.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- The log size, in exactly one row. A sequencer commits only under `SELECT ... FOR UPDATE` of
-- this row and only when `size` is the size its batch was built on, so several replicas on one
-- database serialise here and a batch never lands on a tree it was not computed from.
CREATE TABLE tree_state (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL CHECK (size >= 0)
);
INSERT INTO tree_state (id, size) VALUES (1, 0);

-- One row per log leaf: the exact signed-note bytes, and the namespace they concern so that
-- namespace state can be rebuilt from namespace records alone.
CREATE TABLE entries (
    idx       BIGINT PRIMARY KEY NOT NULL CHECK (idx >= 0),
    body      BYTEA NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('release', 'namespace', 'yank')),
    namespace TEXT NOT NULL
);
CREATE INDEX entries_namespace ON entries (namespace, kind);

-- The stored-hash array of gridreg_protocol::merkle (leaf hashes and completed subtrees).
CREATE TABLE hashes (
    idx  BIGINT PRIMARY KEY NOT NULL CHECK (idx >= 0),
    hash BYTEA NOT NULL CHECK (length(hash) = 32)
);

-- Every signed checkpoint; the primary key makes a second root for one size impossible.
CREATE TABLE checkpoints (
    size BIGINT PRIMARY KEY NOT NULL CHECK (size >= 0),
    root BYTEA NOT NULL CHECK (length(root) = 32),
    body TEXT NOT NULL
);
