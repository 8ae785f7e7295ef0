#!/usr/bin/env bash
# Benchmark: download throughput of a ~1 MB component at 64 connections, `gridreg serve`
# (GET /v1/content/sha256:...) against nginx serving the same file from disk, in the same run,
# with the same load generator (wrk). Goal (issue 4): gridreg >= 0.5x nginx. Also reports the
# server's peak RSS under that load (goal: under 200 MB).
#
# Needs: nginx and wrk (Debian packages; the script installs them with apt-get if missing).
# Usage: bench/download.sh [SECONDS] [FILE.wasm]    writes bench/results/download.md
# Default FILE: the largest component of the real-component corpus (scripts/fetch-corpus.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${1:-10}"
corpus="${GRIDREG_CORPUS:-${XDG_CACHE_HOME:-$HOME/.cache}/gridreg-corpus}"
if [[ -n "${2:-}" ]]; then
  file="$2"
else
  bash "$root/scripts/fetch-corpus.sh" "$corpus" >/dev/null
  file="$(ls -S "$corpus"/*.wasm | head -1)"
fi
[[ -f "$file" ]] || { echo "error: no component to serve at $file" >&2; exit 2; }
command -v nginx >/dev/null && command -v wrk >/dev/null || apt-get install -y -q nginx-light wrk >/dev/null

cargo build --release --locked -q -p gridreg
gridreg="${CARGO_TARGET_DIR:-$root/target}/release/gridreg"
work="$(mktemp -d)"
chmod 755 "$work"   # nginx workers run as www-data and must read the file
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# gridreg, with the file uploaded.
gport=$(free_port)
RUST_LOG=warn "$gridreg" serve --data "$work/data" --addr "127.0.0.1:$gport" 2>/dev/null &
gpid=$!; pids+=("$gpid")
wait_port "$gport"
digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
curl -sf -X PUT --data-binary @"$file" -H 'content-type: application/wasm' "http://127.0.0.1:$gport/v1/content/$digest" >/dev/null

# nginx, serving the same bytes from disk: 2 workers (one per core), sendfile on, logs off.
nport=$(free_port)
mkdir -p "$work/www" "$work/nginx"
cp "$file" "$work/www/c.wasm"
cat > "$work/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  types { application/wasm wasm; }
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$nport; root $work/www; }
}
EOF
nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=("$!")
wait_port "$nport"

# Sample the gridreg server's RSS while it is under load.
rss_peak=0
sample_rss() {
  while kill -0 "$gpid" 2>/dev/null; do
    r=$(awk '/VmRSS/{print $2}' /proc/$gpid/status 2>/dev/null || echo 0)
    [[ "$r" -gt "$rss_peak" ]] && rss_peak=$r && echo "$rss_peak" > "$work/rss"
    sleep 0.2
  done
}
sample_rss & pids+=("$!")

run_wrk() {
  curl -sf -o "$work/check" "$1" && cmp -s "$work/check" "$file" || { echo "error: $1 does not serve the file" >&2; exit 2; }
  wrk -t2 -c64 -d"${secs}s" --latency "$1" > "$2"
  if grep -q 'Non-2xx' "$2"; then echo "error: $1 answered errors under load:" >&2; cat "$2" >&2; exit 2; fi
}
run_wrk "http://127.0.0.1:$nport/c.wasm" "$work/nginx.txt"
run_wrk "http://127.0.0.1:$gport/v1/content/$digest" "$work/gridreg.txt"

rps() { awk '/Requests\/sec/{print $2}' "$1"; }
p99() { awk '/ 99%/{print $2}' "$1"; }
size=$(stat -c %s "$file")
n=$(rps "$work/nginx.txt"); g=$(rps "$work/gridreg.txt")
mkdir -p bench/results
{
  echo "## download: $(basename "$file") ($size bytes), 64 connections, wrk -t2, ${secs}s each, $(date -u +%Y-%m-%d), $(nproc) cores"
  echo
  echo "| server | requests/s | MiB/s | p99 latency |"
  echo "|---|---:|---:|---:|"
  python3 - "$n" "$g" "$size" "$(p99 "$work/nginx.txt")" "$(p99 "$work/gridreg.txt")" <<'PY'
import sys
n, g, size, pn, pg = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
print(f"| nginx (sendfile, 2 workers) | {n:,.0f} | {n*size/1048576:,.0f} | {pn} |")
print(f"| gridreg serve | {g:,.0f} | {g*size/1048576:,.0f} | {pg} |")
print(f"\nratio gridreg / nginx: **{g/n:.2f}** (goal >= 0.5)")
PY
  echo
  echo "gridreg server peak RSS under this load: $(( $(cat "$work/rss" 2>/dev/null || echo 0) / 1024 )) MiB (goal < 200 MB)"
} > bench/results/download.md
cat bench/results/download.md
