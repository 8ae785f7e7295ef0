-- The namespace records alone, in log order: a sequencer that follows other replicas' appends
-- reads only the namespace records they added (`kind = 'namespace' AND idx >= ...`), which without
-- this index scanned every entry of the log on each catch-up.
CREATE INDEX entries_namespace_records ON entries (idx) WHERE kind = 'namespace';
