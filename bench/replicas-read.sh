#!/usr/bin/env bash
# Benchmark: do reads scale with replicas? Read throughput through 1, 2 and 3 `gridreg serve`
# replicas on one PostgreSQL database (and one blob directory), each replica held to the same CPU
# share by its own cgroup (v1 `cpu` controller, cfs quota), the way replicas on separate machines
# each bring their own CPU. On this 2-core machine the load generator and PostgreSQL share the
# rest. One wrk per replica, 8 connections each, asking for what `gridreg pull --verify` asks:
# a release (record, audit, WIT), an inclusion proof at the newest size, the newest checkpoint,
# a namespace's records, in equal parts, over RELEASES published versions.
#
# Needs: root (to make cgroups), wrk (installed with apt-get if missing), PostgreSQL on
# 127.0.0.1:5432 (the script makes and drops the database gridreg_bench_read).
# Usage: bench/replicas-read.sh [SECONDS] [RELEASES] [CPU_PER_REPLICA]   (defaults 10, 200, 0.3)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${1:-10}"
releases="${2:-200}"
cpu="${3:-0.3}"
cg=/sys/fs/cgroup/cpu
[[ -w "$cg" ]] || { echo "error: expected a writable cgroup v1 cpu controller at $cg, found none (run as root)" >&2; exit 2; }
command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null
psql_() { psql -q -h 127.0.0.1 -U postgres -d postgres "$@"; }
psql_ -c 'select 1' >/dev/null || { echo "error: expected PostgreSQL on 127.0.0.1:5432" >&2; exit 2; }

cargo build --release --locked -q -p gridreg
gridreg="${CARGO_TARGET_DIR:-$root/target}/release/gridreg"
work="$(mktemp -d)"
db=gridreg_bench_read
url="postgres://postgres@127.0.0.1:5432/$db"
pids=()
stop_replicas() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
cleanup() {
  stop_replicas
  for r in 0 1 2; do rmdir "$cg/gridreg-read-$r" 2>/dev/null || true; done
  psql_ -c "drop database if exists $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "error: nothing listens on $1" >&2; return 1; }

psql_ -c "set client_min_messages = warning" -c "drop database if exists $db" -c "create database $db" >/dev/null
quota=$(python3 -c "print(int($cpu * 100000))")
ports=()
# start_replica R: replica R in its own cgroup, every replica on the same database, blob
# directory and log key.
start_replica() {
  local r=$1 port
  port=$(free_port)
  mkdir -p "$cg/gridreg-read-$r" "$work/data$r"
  echo 100000 > "$cg/gridreg-read-$r/cpu.cfs_period_us"
  echo "$quota" > "$cg/gridreg-read-$r/cpu.cfs_quota_us"
  if [[ $r -gt 0 ]]; then cp "$work/data0/log.key" "$work/data$r/log.key"; fi
  # The subshell moves itself into the cgroup, then becomes the server.
  (echo "$BASHPID" > "$cg/gridreg-read-$r/cgroup.procs"
   RUST_LOG=warn exec "$gridreg" serve --data "$work/data$r" --addr "127.0.0.1:$port" \
     --database-url "$url" --blobs "file://$work/blobs" 2>"$work/serve$r.log") &
  pids+=("$!")
  ports+=("$port")
  wait_port "$port"
}

# Seed through one replica: a namespace and RELEASES versions.
start_replica 0
export GRIDREG_CONFIG="$work/config.toml" GRIDREG_STATE_DIR="$work/state" GRIDREG_REGISTRY="http://127.0.0.1:${ports[0]}"
"$gridreg" keygen --name bench -o "$work/bench.key" >/dev/null 2>&1
"$gridreg" namespace claim bench --key "$work/bench.key" >/dev/null 2>&1
echo "seeding $releases releases..." >&2
for i in $(seq 0 $((releases - 1))); do
  "$gridreg" publish examples/wasm/hello.wasm --package bench:hello --version "1.0.$i" --key "$work/bench.key" >/dev/null
done
size=$(curl -sf "http://127.0.0.1:${ports[0]}/v1/log/checkpoint" | sed -n 2p)
[[ "$size" == "$((releases + 1))" ]] || { echo "error: expected a log of $((releases + 1)) entries after seeding, found $size" >&2; exit 2; }
stop_replicas; ports=()

cat > "$work/mix.lua" <<EOF
local releases, size = $releases, $size
request = function()
  local kind, i = math.random(4), math.random(releases) - 1
  if kind == 1 then return wrk.format("GET", "/v1/packages/bench:hello/1.0." .. i)
  elseif kind == 2 then return wrk.format("GET", "/v1/log/proof/inclusion?index=" .. (i + 1) .. "&size=" .. size)
  elseif kind == 3 then return wrk.format("GET", "/v1/log/checkpoint")
  else return wrk.format("GET", "/v1/namespaces/bench") end
end
EOF

out="$root/bench/results/replicas-read.md"
mkdir -p "$root/bench/results"
{
  echo "# Reads through 1-3 replicas ($(date -u +%FT%TZ))"
  echo
  echo "\`bench/replicas-read.sh $secs $releases $cpu\`: each replica capped at $cpu CPU (cgroup), one PostgreSQL, $releases releases, wrk -t1 -c8 per replica, ${secs}s, after a warm-up pass."
  echo
  echo "| replicas | requests/s (sum) | per replica | p99 (worst replica) |"
  echo "|---:|---:|---:|---:|"
} > "$out"
for n in 1 2 3; do
  for r in $(seq 0 $((n - 1))); do start_replica "$r"; done
  # Warm-up: every release once through every replica (the first read of a release extracts
  # and stores its WIT; later reads are what a serving registry sees).
  for p in "${ports[@]}"; do
    for i in $(seq 0 $((releases - 1))); do curl -sf -o /dev/null "http://127.0.0.1:$p/v1/packages/bench:hello/1.0.$i"; done
  done
  wpids=()
  for r in $(seq 0 $((n - 1))); do
    wrk -t1 -c8 -d"${secs}s" --latency -s "$work/mix.lua" "http://127.0.0.1:${ports[$r]}" > "$work/wrk$n-$r.txt" &
    wpids+=("$!")
  done
  wait "${wpids[@]}"
  total=0; worst=0
  for r in $(seq 0 $((n - 1))); do
    f="$work/wrk$n-$r.txt"
    if grep -q 'Non-2xx\|Socket errors' "$f"; then echo "error: replica $r answered errors under load:" >&2; cat "$f" >&2; exit 2; fi
    total=$(python3 -c "print($total + $(awk '/Requests\/sec/{print $2}' "$f"))")
    p99=$(awk '/ 99%/{print $2}' "$f")
    worst=$(python3 -c "
def ms(s):
    for u, f in (('us', 1e-3), ('ms', 1), ('s', 1e3)):
        if s.endswith(u): return float(s[:-len(u)]) * f
print(max($worst, ms('$p99')))")
  done
  printf '| %d | %.0f | %.0f | %.2f ms |\n' "$n" "$total" "$(python3 -c "print($total / $n)")" "$worst" | tee -a "$out"
  stop_replicas; ports=()
done
echo "written to $out" >&2
