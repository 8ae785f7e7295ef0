#!/usr/bin/env bash
# Benchmark of the gate build (issue 21): what a CI job pays to get `gridreg verify`.
#  1. `cargo install --locked` wall time, each from an EMPTY target dir, in the same run: the gate
#     build (`--path cli --no-default-features --features gate`) against the anchor,
#     `cargo install --locked cargo-deny@0.20.2` (what cargo-deny users pay). Goal: ratio <= 1.0.
#  2. The size of both installed binaries, as installed and stripped.
#  3. `verify` speed of the installed gate build against `wasm-tools validate` (bench/verify.sh with
#     GRIDREG_BIN: the corpus and pysandbox.wasm, hyperfine). Goal: ratio <= 1.0.
# Crate sources are fetched before the clock starts (`cargo fetch` of this workspace, and of the
# anchor's packaged Cargo.lock), so both times are compile time on this machine. Time it on a quiet machine: the script prints the load average
# before and after, and refuses to time (exit 3) when the 1-minute load is over MAX_LOAD (0.5)
# unless FORCE=1.
# Needs: what bench/verify.sh needs (hyperfine, python3 + pip), network to crates.io the first time.
# Usage: bench/gate.sh [VERIFY_RUNS]    writes bench/results/gate.md and prints it
#   SKIP_INSTALL=1 GATE_BIN=PATH  skips part 1 and the gate install (sizes and verify speed of PATH)
#   ANCHOR=crate@version          another anchor than cargo-deny@0.20.2
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
runs="${1:-30}"
anchor="${ANCHOR:-cargo-deny@0.20.2}"
anchor_bin="${anchor%%@*}"
work="${GATE_BENCH_DIR:-${TMPDIR:-/tmp}/gridreg-gate-bench}"
out=bench/results/gate.md
mkdir -p bench/results "$work"

load() { cut -d' ' -f1 /proc/loadavg; }
if [[ "${FORCE:-0}" != 1 ]] && ! awk -v l="$(load)" -v m="${MAX_LOAD:-0.5}" 'BEGIN { exit !(l <= m) }'; then
  echo "error: load average $(load) > ${MAX_LOAD:-0.5}: the machine is busy, timings would mean little" \
    "(FORCE=1 to time anyway)" >&2
  exit 3
fi
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

# install NAME ARGS...: `cargo install --locked ARGS --root $work/NAME` from an empty target dir;
# prints the wall time in seconds.
install() {
  local name="$1"; shift
  rm -rf "$work/$name" "$work/target-$name"
  local start end
  start="$(date +%s.%N)"
  CARGO_TARGET_DIR="$work/target-$name" CARGO_INCREMENTAL=0 \
    cargo install --locked --quiet "$@" --root "$work/$name" >&2
  end="$(date +%s.%N)"
  rm -rf "$work/target-$name"
  python3 -c "print(f'{$end - $start:.1f}')"
}

if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
  cargo fetch --locked -q
  # The anchor's sources: `cargo info` downloads its .crate; its packaged Cargo.lock says what
  # `cargo install --locked` will build, and `cargo fetch` downloads that.
  cargo info -q "$anchor" >/dev/null
  crate="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$anchor_bin-${anchor#*@}.crate" | head -n 1)"
  rm -rf "$work/src" && mkdir -p "$work/src"
  tar -xzf "$crate" -C "$work/src"
  cargo fetch --locked -q --manifest-path "$work/src/$anchor_bin-${anchor#*@}/Cargo.toml"
  echo "== timing: gate build" >&2
  t_gate="$(install gate --path cli --no-default-features --features gate)"
  echo "== timing: $anchor" >&2
  t_anchor="$(install anchor "$anchor")"
  gate_bin="$work/gate/bin/gridreg"
  anchor_path="$work/anchor/bin/$anchor_bin"
else
  gate_bin="${GATE_BIN:?SKIP_INSTALL=1 needs GATE_BIN=PATH}"
  anchor_path="${ANCHOR_BIN:-}"
  t_gate="" t_anchor=""
fi
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

size() { # size FILE: "installed / stripped" in MiB
  [[ -f "$1" ]] || { echo "n/a"; return; }
  strip -o "$work/stripped" "$1"
  python3 -c "import os; print(f'{os.path.getsize(\"$1\")/2**20:.1f} MiB / {os.path.getsize(\"$work/stripped\")/2**20:.1f} MiB')"
}

{
  echo "## The gate build against $anchor ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m), $(rustc --version | cut -d' ' -f1-2))"
  echo
  echo "Load average before / after the installs: $load_before / $load_after."
  echo
  echo "| | gate build (\`--path cli --no-default-features --features gate\`) | \`$anchor\` | ratio gate / anchor |"
  echo "|---|---|---|---|"
  if [[ -n "$t_gate" ]]; then
    echo "| \`cargo install --locked\`, empty target dir (s) | $t_gate | $t_anchor | $(python3 -c "print(f'{$t_gate / $t_anchor:.2f}')") |"
  fi
  echo "| binary size, installed / stripped | $(size "$gate_bin") | $(size "$anchor_path") | |"
  echo
} > "$out"

# Verify speed of the installed gate build: bench/verify.sh's files and method.
GRIDREG_BIN="$gate_bin" VERIFY_OUT="$work/verify.md" bash bench/verify.sh "$runs" >/dev/null
sed '1s/^## /### Gate build: /' "$work/verify.md" >> "$out"
cat "$out"
