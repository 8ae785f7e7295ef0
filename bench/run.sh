#!/usr/bin/env bash
# Benchmark: start-up of `gridreg run` (policy pre-check, audit, cached compiled code, linking,
# instantiation, the guest's run) against `wasmtime run` with its own compilation cache, on the
# same component in the same run. Goal (issue 6): warm gridreg <= 1.2x warm wasmtime.
# Cold rows (no cache on either side: compile every time) are reported too.
#
# Needs: hyperfine (apt); wasmtime-cli 48.0.8, built here with `cargo install` into the bench cache
# (several minutes on 2 cores, once).
# Usage: bench/run.sh [RUNS] [FILE.wasm...]   prints a Markdown table; writes bench/results/run.md
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
runs="${1:-50}"
shift || true
files=("$@")
[[ ${#files[@]} -gt 0 ]] || files=("$root/examples/wasm/hello.wasm")
cache="${XDG_CACHE_HOME:-$HOME/.cache}/gridreg-bench"
mkdir -p "$cache" bench/results

command -v hyperfine >/dev/null || { apt-get install -y -q hyperfine >/dev/null || { echo "error: hyperfine is needed (apt-get install hyperfine)" >&2; exit 2; }; }

source "$root/bench/wasmtime.sh"

cargo build --release --locked -q -p gridreg
target="${CARGO_TARGET_DIR:-$root/target}"
gridreg="$target/release/gridreg"

# Each side's compiled-code cache lives in the bench cache, so runs start from a known state.
gcache="$cache/gridreg-compiled"
wcache="$cache/wasmtime-cache"
mkdir -p "$wcache"
wconf="$cache/wasmtime-cache.toml"
printf '[cache]\ndirectory = "%s"\n' "$wcache" > "$wconf"
export GRIDREG_CACHE_DIR="$gcache"

out=bench/results/run.md
{
  echo "## run start-up vs wasmtime run ($(date -u +%Y-%m-%d), $(nproc) cores, $runs runs each)"
  echo
  echo "\`$("$wasmtime" --version)\` (\`run -C cache-config=...\`) vs \`gridreg $("$gridreg" --version | cut -d' ' -f2)\` (\`run --policy default\`: audit, policy pre-check and cache integrity check included)"
  echo
  echo "| file | size | wasmtime warm (ms) | gridreg warm (ms) | warm ratio (goal <= 1.2) | wasmtime cold (ms) | gridreg cold (ms) |"
  echo "|---|---|---|---|---|---|---|"
} > "$out"

mean_ms() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(" ".join("%.2f" % (x["mean"]*1000) for x in r))' "$1"; }

for f in "${files[@]}"; do
  name="$(basename "$f")"
  size=$(stat -c %s "$f")
  # Warm: one run first fills both caches.
  "$wasmtime" run -C cache-config="$wconf" "$f" >/dev/null
  "$gridreg" run "$f" >/dev/null
  warm="$cache/hf-run-warm-$name.json"
  hyperfine -N -w 5 -r "$runs" --export-json "$warm" \
    "$wasmtime run -C cache-config=$wconf $f" \
    "$gridreg run $f" >/dev/null
  read -r w_warm g_warm < <(mean_ms "$warm")
  cold="$cache/hf-run-cold-$name.json"
  hyperfine -N -w 2 -r "$(( runs / 5 > 3 ? runs / 5 : 3 ))" --export-json "$cold" \
    "$wasmtime run -C cache=n $f" \
    "$gridreg run --no-cache $f" >/dev/null
  read -r w_cold g_cold < <(mean_ms "$cold")
  ratio=$(python3 -c "print('%.2f' % ($g_warm / $w_warm))")
  echo "| $name | $size | $w_warm | $g_warm | $ratio | $w_cold | $g_cold |" >> "$out"
done
cat "$out"
