-- Rows derived from log entries, written in the same transaction as the entries, so search and
-- package pages never show a release the log does not hold.

-- One row per release; versions are immutable, so (package, version) is the primary key.
CREATE TABLE releases (
    package      TEXT NOT NULL,
    version      TEXT NOT NULL,
    idx          BIGINT NOT NULL UNIQUE REFERENCES entries (idx),
    digest       TEXT NOT NULL,
    size         BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    capabilities TEXT NOT NULL, -- JSON array of class names
    audit        TEXT NOT NULL, -- JSON of gridreg_verifier::Audit
    wit          TEXT,          -- absent for core modules
    yank_idx     BIGINT REFERENCES entries (idx),
    yank_reason  TEXT,
    PRIMARY KEY (package, version)
);

-- The surface, one row per name, for "who imports wasi:sockets" style searches.
CREATE TABLE release_imports (
    idx   BIGINT NOT NULL REFERENCES releases (idx),
    name  TEXT NOT NULL,
    class TEXT NOT NULL
);
CREATE INDEX release_imports_name ON release_imports (name text_pattern_ops);
CREATE INDEX release_imports_class ON release_imports (class);
CREATE INDEX release_imports_idx ON release_imports (idx);

CREATE TABLE release_exports (
    idx  BIGINT NOT NULL REFERENCES releases (idx),
    name TEXT NOT NULL
);
CREATE INDEX release_exports_name ON release_exports (name text_pattern_ops);
CREATE INDEX release_exports_idx ON release_exports (idx);

-- Server-side policy per namespace (gridreg policy TOML), set by an admin; not part of the log.
CREATE TABLE namespace_policies (
    namespace TEXT PRIMARY KEY NOT NULL,
    policy    TEXT NOT NULL
);
