-- The indexes on import and export names were never used: search matches a name prefix inside
-- EXISTS (... WHERE n.idx = r.idx AND substr(n.name, ...) = ...), which the idx index answers,
-- and no other query reads names by value. They cost most of the database: with long names every
-- key overflowed its page (measured on SQLite with 250 imports of 1,022-byte names per release:
-- 44.6 MiB of the file's 78 MiB, for 9.9 MiB of records).
DROP INDEX release_imports_name;
DROP INDEX release_exports_name;
