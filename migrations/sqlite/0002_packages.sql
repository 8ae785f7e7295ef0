-- Rows derived from log entries, written in the same transaction as the entries, so search and
-- package pages never show a release the log does not hold.

-- One row per release; versions are immutable, so (package, version) is the primary key.
CREATE TABLE releases (
    package      TEXT NOT NULL,
    version      TEXT NOT NULL,
    idx          INTEGER NOT NULL UNIQUE REFERENCES entries (idx),
    digest       TEXT NOT NULL,
    size         INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    capabilities TEXT NOT NULL, -- JSON array of class names
    audit        TEXT NOT NULL, -- JSON of gridreg_verifier::Audit
    wit          TEXT,          -- absent for core modules
    yank_idx     INTEGER REFERENCES entries (idx),
    yank_reason  TEXT,
    PRIMARY KEY (package, version)
) STRICT;

-- The surface, one row per name, for "who imports wasi:sockets" style searches.
CREATE TABLE release_imports (
    idx   INTEGER NOT NULL REFERENCES releases (idx),
    name  TEXT NOT NULL,
    class TEXT NOT NULL
) STRICT;
CREATE INDEX release_imports_name ON release_imports (name);
CREATE INDEX release_imports_class ON release_imports (class);
CREATE INDEX release_imports_idx ON release_imports (idx);

CREATE TABLE release_exports (
    idx  INTEGER NOT NULL REFERENCES releases (idx),
    name TEXT NOT NULL
) STRICT;
CREATE INDEX release_exports_name ON release_exports (name);
CREATE INDEX release_exports_idx ON release_exports (idx);

-- Server-side policy per namespace (gridreg policy TOML), set by an admin; not part of the log.
CREATE TABLE namespace_policies (
    namespace TEXT PRIMARY KEY NOT NULL,
    policy    TEXT NOT NULL
) STRICT;
