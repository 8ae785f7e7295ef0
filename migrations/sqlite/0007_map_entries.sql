-- no-transaction
-- Map entries (docs/protocol.md §6.9): every batch now ends with an entry of kind 'map', which
-- belongs to no chain and no namespace (chain NULL, namespace ''). SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt the way SQLite documents it (ALTER TABLE, "making
-- other kinds of table schema changes"): foreign keys off on this connection, copy, drop,
-- rename, indexes again, all in one transaction. A crash before COMMIT leaves the old table;
-- after it, running this file again rebuilds the new table once more, to the same result.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE entries_with_maps (
    idx       INTEGER PRIMARY KEY NOT NULL,
    body      BLOB NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('release', 'namespace', 'yank', 'map')),
    namespace TEXT NOT NULL,
    chain     TEXT,
    leaf      BLOB
) STRICT;
INSERT INTO entries_with_maps (idx, body, kind, namespace, chain, leaf)
    SELECT idx, body, kind, namespace, chain, leaf FROM entries;
DROP TABLE entries;
ALTER TABLE entries_with_maps RENAME TO entries;
CREATE INDEX entries_namespace ON entries (namespace, kind);
CREATE INDEX entries_namespace_records ON entries (idx) WHERE kind = 'namespace';
CREATE INDEX entries_chain ON entries (chain, idx) WHERE chain IS NOT NULL;
COMMIT;
PRAGMA foreign_keys = ON;
