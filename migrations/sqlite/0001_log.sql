-- The transparency log: leaves, the RFC 6962 stored hashes, and every checkpoint ever signed.
-- Written only by the sequencer, one transaction per batch.

-- Settings fixed at first start (the log origin); a later start with a different value refuses.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

-- One row per log leaf: the exact signed-note bytes, and the namespace they concern so that
-- namespace state can be rebuilt from namespace records alone.
CREATE TABLE entries (
    idx       INTEGER PRIMARY KEY NOT NULL,
    body      BLOB NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('release', 'namespace', 'yank')),
    namespace TEXT NOT NULL
) STRICT;
CREATE INDEX entries_namespace ON entries (namespace, kind);

-- The stored-hash array of gridreg_protocol::merkle (leaf hashes and completed subtrees).
CREATE TABLE hashes (
    idx  INTEGER PRIMARY KEY NOT NULL,
    hash BLOB NOT NULL CHECK (length(hash) = 32)
) STRICT;

-- Every signed checkpoint; the primary key makes a second root for one size impossible.
CREATE TABLE checkpoints (
    size INTEGER PRIMARY KEY NOT NULL,
    root BLOB NOT NULL CHECK (length(root) = 32),
    body TEXT NOT NULL
) STRICT;
