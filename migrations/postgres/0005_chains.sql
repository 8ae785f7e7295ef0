-- Chains (docs/protocol.md §4.7): every record names the head of its chain (`namespace acme` or
-- `package acme:auth`). The sequencer reads a chain's head as its newest entry, so each entry keeps
-- its chain key and leaf hash (SHA-256(0x00 || body)). Entries written before chains existed (record
-- format v1) have neither and belong to no chain.
ALTER TABLE entries ADD COLUMN chain TEXT;
ALTER TABLE entries ADD COLUMN leaf BYTEA;
CREATE INDEX entries_chain ON entries (chain, idx) WHERE chain IS NOT NULL;
