;; A WASI preview 1 module that accepts one connection on the pre-opened listening socket fd 3,
;; echoes back one read of up to 256 bytes and returns. Fixture for the socket capability class.
(module
  (import "wasi_snapshot_preview1" "sock_accept"
    (func $sock_accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_recv"
    (func $sock_recv (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send"
    (func $sock_send (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $conn i32)
    (if (call $sock_accept (i32.const 3) (i32.const 0) (i32.const 0))
      (then (return)))
    (local.set $conn (i32.load (i32.const 0)))
    ;; One iovec at offset 16 for 256 bytes at offset 128.
    (i32.store (i32.const 16) (i32.const 128))
    (i32.store (i32.const 20) (i32.const 256))
    ;; sock_recv(fd, iovs, 1, no riflags, received-count at 24, roflags at 28)
    (if (call $sock_recv (local.get $conn) (i32.const 16) (i32.const 1) (i32.const 0)
          (i32.const 24) (i32.const 28))
      (then (return)))
    ;; Send back exactly what arrived.
    (i32.store (i32.const 20) (i32.load (i32.const 24)))
    (drop (call $sock_send (local.get $conn) (i32.const 16) (i32.const 1) (i32.const 0)
      (i32.const 32)))))
