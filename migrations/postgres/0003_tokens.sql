-- Access tokens for private registries. Only a SHA-256 of the secret part is stored; the id is
-- public and selects the row, the hash is compared in constant time.
CREATE TABLE tokens (
    id        TEXT PRIMARY KEY NOT NULL,
    hash      BYTEA NOT NULL CHECK (length(hash) = 32),
    scope     TEXT NOT NULL CHECK (scope IN ('read', 'publish', 'admin')),
    namespace TEXT,
    created   TEXT NOT NULL,
    revoked   TEXT
);
