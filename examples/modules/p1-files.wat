;; A WASI preview 1 module that opens "input.txt" under the first preopened directory (fd 3),
;; reads up to 256 bytes from it and closes it. Fixture for the file-system capability class.
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get"
    (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close"
    (func $fd_close (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "input.txt")
  (func (export "_start")
    (local $fd i32)
    ;; Stop quietly when fd 3 is not a preopened directory.
    (if (call $fd_prestat_get (i32.const 3) (i32.const 0))
      (then (return)))
    ;; path_open(dirfd 3, no lookup flags, "input.txt", no oflags, rights fd_read, no inheriting
    ;; rights, no fdflags, result fd stored at offset 8).
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 9)
          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 8))
      (then (return)))
    (local.set $fd (i32.load (i32.const 8)))
    ;; One iovec at offset 16 for 256 bytes at offset 128; the count lands at offset 24.
    (i32.store (i32.const 16) (i32.const 128))
    (i32.store (i32.const 20) (i32.const 256))
    (drop (call $fd_read (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24)))
    (drop (call $fd_close (local.get $fd)))))
