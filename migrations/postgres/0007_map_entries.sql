-- Map entries (docs/protocol.md §6.9): every batch now ends with an entry of kind 'map', which
-- belongs to no chain and no namespace (chain NULL, namespace '').
ALTER TABLE entries DROP CONSTRAINT entries_kind_check;
ALTER TABLE entries ADD CONSTRAINT entries_kind_check
    CHECK (kind IN ('release', 'namespace', 'yank', 'map'));
