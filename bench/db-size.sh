#!/usr/bin/env bash
# Bytes the registry's SQLite file takes per byte of log records (issue 17: it was 7.6x), with the
# hostile-load issue's shape: core modules each importing 250 functions with 1,022-byte names,
# published as VERSIONS releases of one package through a real `gridreg serve`. Prints the file
# size, the record bytes, the ratio and the space per table and index (SQLite's dbstat).
# Usage: bench/db-size.sh [VERSIONS]   (default 40)   GRIDREG_BIN=PATH to use a built binary
# Needs: python3, sqlite3 (apt), curl.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
versions="${1:-40}"
bin="${GRIDREG_BIN:-}"
if [[ -z "$bin" ]]; then
  (cd "$root" && cargo build -q -p gridreg)
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/gridreg"
fi
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

# Core modules written byte by byte: one function type, then 250 function imports "m" / NAME.
python3 - "$versions" <<'PY'
import sys
def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7f; n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n: return bytes(out)
def vec(items): return leb(len(items)) + b"".join(items)
def name(s): b = s.encode(); return leb(len(b)) + b
def section(i, body): return bytes([i]) + leb(len(body)) + body
for v in range(int(sys.argv[1])):
    types = section(1, vec([b"\x60\x00\x00"]))
    imports = section(2, vec([name("m") + name(f"{v:04}-{i:04}-" + "x" * 1012) + b"\x00\x00" for i in range(250)]))
    open(f"m{v}.wasm", "wb").write(b"\x00asm\x01\x00\x00\x00" + types + imports)
PY

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export HOME="$work" GRIDREG_CONFIG="$work/config.toml" GRIDREG_STATE_DIR="$work/state" GRIDREG_REGISTRY="http://127.0.0.1:$port"
"$bin" serve --data "$work/data" --addr "127.0.0.1:$port" >serve.log 2>&1 &
server=$!
for _ in $(seq 100); do curl -sf "$GRIDREG_REGISTRY/healthz" >/dev/null && break; sleep 0.1; done
"$bin" keygen --name alice >/dev/null 2>&1
"$bin" namespace claim acme --key alice.key >/dev/null 2>&1
for v in $(seq 0 $((versions - 1))); do
  "$bin" publish "m$v.wasm" --package acme:big --version "1.0.$v" --key alice.key >/dev/null 2>&1
done
kill "$server"; wait "$server" 2>/dev/null || true

db="$work/data/registry.db"
file=$(stat -c %s "$db")
records=$(sqlite3 "$db" "SELECT SUM(length(body)) FROM entries")
entries=$(sqlite3 "$db" "SELECT COUNT(*) FROM entries")
echo "## registry.db size ($(date -u +%Y-%m-%d), $versions releases of 250 imports x 1,022-byte names)"
echo
echo "entries $entries, record bytes $records, file $file bytes: $(python3 -c "print(f'{$file/$records:.2f}')")x the records, $((file / entries)) bytes per entry"
echo
echo "| table or index | MiB |"
echo "|---|---:|"
sqlite3 -separator ' | ' "$db" "SELECT name, ROUND(SUM(pgsize)/1048576.0, 1) FROM dbstat GROUP BY name HAVING SUM(pgsize) > 65536 ORDER BY 2 DESC" | sed 's/^/| /; s/$/ |/'
