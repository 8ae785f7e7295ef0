#!/usr/bin/env bash
# Benchmark: the client-side cost of `gridreg pull --verify --locked` of a ~1 MB component with a
# cached checkpoint (issue 5: under 10 ms, everything except the transfer). A release build of
# gridreg serves on 127.0.0.1; the same binary pulls RUNS times in each of two sets (`held`: the
# client continues from the chains it proved before; `whole`: it fetches and proves the whole
# chains); each pull reports its own split (--json timings_ms: hash, signatures, proofs,
# audit_and_policy, network) and the bundle it downloaded, and the script prints medians and
# p90 per set, plus the whole command's wall time.
#
# Usage: bench/pull.sh [RUNS] [FILE.wasm]   writes bench/results/pull.md
# Default FILE: the largest component of the real-component corpus (scripts/fetch-corpus.sh).
#
# VERSIONS=N NS_RECORDS=M bench/pull.sh ...: the package gets N versions (default 8) and its
# namespace M records (default 2: the claim and one grant; more are grant/revoke pairs of other
# keys), so `pull --verify` proves chains of that length (issue: 1,000 versions in a namespace of
# 100 records, <= 10 ms client-side); the result then goes to bench/results/pull-chain.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
runs="${1:-30}"
versions="${VERSIONS:-8}"
ns_records="${NS_RECORDS:-2}"
out_name=pull
[[ -n "${VERSIONS:-}${NS_RECORDS:-}" ]] && out_name=pull-chain
corpus="${GRIDREG_CORPUS:-${XDG_CACHE_HOME:-$HOME/.cache}/gridreg-corpus}"
if [[ -n "${2:-}" ]]; then
  file="$2"
else
  bash "$root/scripts/fetch-corpus.sh" "$corpus" >/dev/null
  file="$(ls -S "$corpus"/*.wasm | head -1)"
fi
[[ -f "$file" ]] || { echo "error: no component to pull at $file" >&2; exit 2; }

cargo build --release --locked -q -p gridreg
gridreg="${CARGO_TARGET_DIR:-$root/target}/release/gridreg"
work="$(mktemp -d)"
server=""
cleanup() { [[ -n "$server" ]] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export GRIDREG_CONFIG="$work/config.toml" GRIDREG_STATE_DIR="$work/state"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export GRIDREG_REGISTRY="http://127.0.0.1:$port"
"$gridreg" serve --data "$work/data" --addr "127.0.0.1:$port" 2>/dev/null &
server=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

cd "$work"
"$gridreg" keygen --name bench -o bench.key >/dev/null 2>&1
"$gridreg" namespace claim bench --key bench.key >/dev/null 2>&1
# Some history in the namespace and the log, so proofs have a few levels.
"$gridreg" namespace grant bench --key bench.key --to "$("$gridreg" keygen --name ci -o ci.key 2>/dev/null)" --role publish >/dev/null
for ((i = 3; i + 1 < ns_records + 1; i += 2)); do
  other="$("$gridreg" keygen --name "k$i" -o "k$i.key" 2>/dev/null)"
  "$gridreg" namespace grant bench --key bench.key --to "$other" --role publish >/dev/null
  "$gridreg" namespace revoke bench --key bench.key --to "$other" --role publish >/dev/null
done
for ((i = 1; i < versions; i++)); do
  "$gridreg" publish "$file" --package bench:codec --version "0.$i.0" --key bench.key >/dev/null
done
"$gridreg" publish "$file" --package bench:codec --version 1.0.0 --key ci.key >/dev/null
# Permissive policy: the goal measures verification, not a refusal.
cat > allow.toml <<'EOF'
[policy]
name = "allow-all"
[capabilities]
default = "allow"
[imports]
allow = ["*"]
EOF
"$gridreg" pull bench:codec@1.0.0 --verify --policy allow.toml -o c.wasm >/dev/null

# Two sets of RUNS pulls. `held`: the client proved the package before and keeps its chains
# (docs/protocol.md §8.6.5), so it asks only for what is above them: here nothing, as when a
# CI job pulls a locked version again. `whole`: the held chains are removed before each pull,
# so it fetches and proves the whole chains (the verified-signers cache stays: signatures are
# not verified again), as a first pull of the package by a client that knows its namespace.
one_set() {
  local label="$1"
  for _ in $(seq "$runs"); do
    [[ "$label" == whole ]] && rm -rf "$GRIDREG_STATE_DIR/held"
    s=$(date +%s%N)
    "$gridreg" pull bench:codec@1.0.0 --verify --locked --policy allow.toml -o c.wasm --json > one.json
    e=$(date +%s%N)
    python3 - "$(( (e - s) / 1000 ))" "$label" >> rows.jsonl <<'PY'
import json, sys
j = json.load(open("one.json"))
t = j["timings_ms"]
t["wall"] = int(sys.argv[1]) / 1000
t["set"] = sys.argv[2]
t["bundle_bytes"] = j["bundle"]["bytes"]
t["records_fetched"] = j["bundle"]["records_fetched"]
print(json.dumps(t))
PY
  done
}
one_set held
one_set whole
# One more release, then a pull that continues from the held chains: only the new record.
"$gridreg" pull bench:codec@1.0.0 --verify --locked --policy allow.toml -o c.wasm >/dev/null
"$gridreg" publish "$file" --package bench:codec --version 1.0.1 --key ci.key >/dev/null
"$gridreg" pull bench:codec@1.0.0 --verify --locked --policy allow.toml -o c.wasm --json > one.json
next_bytes=$(python3 -c 'import json; b = json.load(open("one.json"))["bundle"]; print(b["bytes"], b["records_fetched"])')
cd "$root"
mkdir -p bench/results
python3 - "$work/rows.jsonl" "$file" "$runs" "$versions" "$ns_records" "$next_bytes" > "bench/results/$out_name.md" <<'PY'
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
size = os.path.getsize(sys.argv[2])
def q(vals, p):
    vals = sorted(vals); return vals[min(len(vals) - 1, int(p * len(vals)))]
print(f"pull --verify --locked, cached checkpoint: {os.path.basename(sys.argv[2])} ({size/1048576:.2f} MiB), {sys.argv[3]} runs per set")
print(f"package chain: {sys.argv[4]} versions; namespace chain: {sys.argv[5]} records\n")
sets = ["held", "whole"]
print("| part | " + " | ".join(f"{s}: median ms | {s}: p90 ms" for s in sets) + " |")
print("|---|" + "---:|---:|" * len(sets))
for k in ["hash", "signatures", "proofs", "audit_and_policy", "client_total", "network", "wall"]:
    cells = []
    for s in sets:
        v = [r[k] for r in rows if r["set"] == s]
        cells += [f"{statistics.median(v):.2f}", f"{q(v, 0.9):.2f}"]
    print(f"| {k} | " + " | ".join(cells) + " |")
for s in sets:
    r = [r for r in rows if r["set"] == s][0]
    print(f"\n{s}: bundle {r['bundle_bytes']:,} bytes, {r['records_fetched']} records fetched per pull")
nb, nf = sys.argv[6].split()
print(f"after one more release, a pull continuing from the held chains: bundle {int(nb):,} bytes, {nf} records fetched")
PY
cat "bench/results/$out_name.md"
