#!/usr/bin/env bash
# Benchmark: `gridreg run --listen` against `wasmtime serve` 48.0.8 on the same hello handler
# (examples/wasm/http-hello.wasm), same machine, same run: requests/s and p99 latency with wrk at
# 64 connections, the first request's latency after a start with a warm compiled-code cache, and
# the server's peak RSS. Then the composed gateway (gateway + authenticator + converter) through
# gridreg alone, with the Rust converter and with the Python one (componentize-py, stubbed WASI).
# Goals (issue 19): requests/s >= 1.0x wasmtime serve, p99 <= 1.2x.
#
# Needs: wrk (apt), curl; wasmtime-cli 48.0.8, built here with `cargo install` into the bench
# cache (about 15 minutes on 2 cores, once).
# Usage: bench/serve.sh [SECONDS] [ROUNDS]   prints a Markdown report; writes bench/results/serve.md
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${1:-10}"
rounds="${2:-3}"
conns=64
cache="${XDG_CACHE_HOME:-$HOME/.cache}/gridreg-bench"
mkdir -p "$cache" bench/results

command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null || { echo "error: wrk is needed (apt-get install wrk)" >&2; exit 2; }; }
source "$root/bench/wasmtime.sh"

cargo build --release --locked -q -p gridreg
target="${CARGO_TARGET_DIR:-$root/target}"
gridreg="$target/release/gridreg"
export GRIDREG_CACHE_DIR="$cache/gridreg-compiled"
wconf="$cache/wasmtime-cache.toml"
mkdir -p "$cache/wasmtime-cache"
printf '[cache]\ndirectory = "%s"\n' "$cache/wasmtime-cache" > "$wconf"

hello="$root/examples/wasm/http-hello.wasm"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME PORT CMD...: starts a server, waits for its first 200 on /healthz-or-/, prints ms to it.
start() {
  local name="$1" port="$2" path="$3"; shift 3
  local t0; t0=$(date +%s%N)
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  echo $! > "$work/$name.pid"
  for _ in $(seq 1 3000); do
    if curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "http://127.0.0.1:$port$path" 2>/dev/null | grep -q 200; then
      echo $(( ($(date +%s%N) - t0) / 1000000 ))
      return
    fi
    sleep 0.01
  done
  echo "error: $name did not answer on port $port" >&2; cat "$work/$name.err" >&2; exit 1
}
stop() { local pid; pid=$(cat "$work/$1.pid"); kill "$pid"; wait "$pid" 2>/dev/null || true; }
rss_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$(cat "$work/$1.pid")/status"; }

# load URL [HEADER]: wrk for $secs at $conns connections; prints "rps p99_ms".
load() {
  local url="$1"; shift
  wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" "$url" > "$work/wrk.txt"
  python3 - "$work/wrk.txt" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", t)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
errors = re.search(r"Socket errors:.*", t)
print(f"{rps:.0f} {p99:.2f} {non2xx.group(1) if non2xx else 0}")
EOF
}

auth=()
# Warm both compiled-code caches once, so "first request" measures start-up, not compilation.
p=$(free_port); start warm-w "$p" / "$wasmtime" serve -C cache-config="$wconf" -S cli=y --addr "127.0.0.1:$p" "$hello" >/dev/null; stop warm-w
p=$(free_port); start warm-g "$p" / "$gridreg" run "$hello" --listen "127.0.0.1:$p" >/dev/null; stop warm-g

out=bench/results/serve.md
{
  echo "## run --listen vs wasmtime serve ($(date -u "+%Y-%m-%d %H:%M") UTC, $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  echo
  echo "\`$("$wasmtime" --version)\` (\`serve -S cli=y\`, its default pooling allocator) vs \`gridreg $("$gridreg" --version | cut -d' ' -f2)\` (\`run --listen --policy default\`), \`wrk -t2 -c$conns -d${secs}s\` on the same 2 cores; $rounds rounds, sides alternating."
  echo
  echo "| round | server | requests/s | p99 (ms) | non-2xx | first request after start (ms) | peak RSS (MB) |"
  echo "|---|---|---|---|---|---|---|"
} > "$out"

for r in $(seq 1 "$rounds"); do
  for side in wasmtime gridreg; do
    p=$(free_port)
    if [[ $side == wasmtime ]]; then
      first=$(start "$side" "$p" / "$wasmtime" serve -C cache-config="$wconf" -S cli=y --addr "127.0.0.1:$p" "$hello")
    else
      first=$(start "$side" "$p" / "$gridreg" run "$hello" --listen "127.0.0.1:$p")
    fi
    read -r rps p99 bad < <(load "http://127.0.0.1:$p/")
    echo "| $r | $side | $rps | $p99 | $bad | $first | $(rss_mb "$side") |" >> "$out"
    stop "$side"
  done
done

# The composed gateway, through gridreg only (wasmtime serve has no policy or grants to give it).
{
  echo
  echo "Composed gateway (\`gridreg compose gateway --plug authenticator --plug CONVERTER\`), \`GET /convert?amount=100&from=EUR&to=USD\` with Basic credentials, same wrk settings:"
  echo
  echo "| converter | service size | requests/s | p99 (ms) | non-2xx | first request, cold start: compile included (ms) | first request, warm cache (ms) | peak RSS (MB) |"
  echo "|---|---|---|---|---|---|---|---|"
} >> "$out"
auth=(-u "bench:s3cret")
for conv in converter converter-py-stub; do
  svc="$work/service-$conv.wasm"
  "$gridreg" compose examples/wasm/gateway.wasm --plug examples/wasm/authenticator.wasm \
    --plug "examples/wasm/$conv.wasm" -o "$svc" >/dev/null 2>&1
  policy=examples/gateway/policy.toml
  # A cache of its own, empty: the first start compiles the service.
  export GRIDREG_CACHE_DIR="$work/cache-$conv"
  p=$(free_port)
  cold=$(start "cold-$conv" "$p" "/convert?amount=1&from=EUR&to=USD" "$gridreg" run "$svc" --listen "127.0.0.1:$p" --policy "$policy" --env AUTH_TOKEN=s3cret)
  stop "cold-$conv"
  p=$(free_port)
  first=$(start "$conv" "$p" "/convert?amount=1&from=EUR&to=USD" "$gridreg" run "$svc" --listen "127.0.0.1:$p" --policy "$policy" --env AUTH_TOKEN=s3cret)
  read -r rps p99 bad < <(load "http://127.0.0.1:$p/convert?amount=100&from=EUR&to=USD" -H "Authorization: Basic $(printf bench:s3cret | base64)")
  echo "| $conv | $(( $(stat -c %s "$svc") / 1024 )) KiB | $rps | $p99 | $bad | $cold | $first | $(rss_mb "$conv") |" >> "$out"
  stop "$conv"
done
cat "$out"
