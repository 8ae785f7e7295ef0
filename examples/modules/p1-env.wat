;; A WASI preview 1 module that reads its arguments and environment, the real-time clock and
;; 16 random bytes, and discards them. Fixture for the env, clock and random capability classes.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get"
    (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; Pointers go from offset 1024 and string bytes from 4096; one page bounds what is read,
  ;; so sizes are checked first and larger lists are skipped rather than overrun.
  (func $fits (param $count i32) (param $bytes i32) (result i32)
    (i32.and
      (i32.le_u (local.get $count) (i32.const 256))
      (i32.le_u (local.get $bytes) (i32.const 32768))))
  (func (export "_start")
    (if (i32.eqz (call $args_sizes_get (i32.const 0) (i32.const 4)))
      (then
        (if (call $fits (i32.load (i32.const 0)) (i32.load (i32.const 4)))
          (then (drop (call $args_get (i32.const 1024) (i32.const 4096)))))))
    (if (i32.eqz (call $environ_sizes_get (i32.const 0) (i32.const 4)))
      (then
        (if (call $fits (i32.load (i32.const 0)) (i32.load (i32.const 4)))
          (then (drop (call $environ_get (i32.const 1024) (i32.const 4096)))))))
    ;; Clock 0 is realtime; the timestamp lands at offset 8.
    (drop (call $clock_time_get (i32.const 0) (i64.const 1000) (i32.const 8)))
    (drop (call $random_get (i32.const 16) (i32.const 16)))))
