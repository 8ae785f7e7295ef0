;; A WASI preview 1 command module: `_start` writes "hello from gridreg\n" to stdout and exits 0.
;; Fixture for core-module audits (stdio only) and for `gridreg run` on preview 1 modules.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  ;; One iovec at offset 0 pointing at the text at offset 16; fd_write stores the count at 8.
  (data (i32.const 0) "\10\00\00\00\13\00\00\00")
  (data (i32.const 16) "hello from gridreg\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.const 0))))
