#!/usr/bin/env bash
# Soak: a real `gridreg serve` (release build, SQLite + files) under mixed hostile and honest load
# on loopback for SECONDS (default 600), sampling the server's RSS, open files and `/healthz`
# latency once a second (issue 17). The load, all at once:
#   - publishes through the CLI (4 packages, each version a different component), and verified
#     pulls through the CLI of what was acknowledged;
#   - proofs, checkpoints, log pages, tiles and search read over HTTP;
#   - 2,000 slow connections (half-sent request heads) from 127.0.0.2, reopened as the server
#     closes them;
#   - oversized bodies (an upload declaring more than --max-blob-size, a 4 MiB record);
#   - uploads no release ever names, from 127.0.0.3 (collected after --upload-ttl);
#   - once, 32 concurrent publishes of a 100 MiB component, then 64 first reads of those releases
#     (each extracts WIT from the 100 MiB of content): 32 of one release at once, one of each.
# At the end: `gridreg log monitor` must be clean and every acknowledged publish must pull with
# --verify. Prints a Markdown report and writes it, with the per-second samples, to
# bench/results/soak.md and bench/results/soak-samples.csv.
#
# Usage: bench/soak.sh [SECONDS]     GRIDREG_BIN=PATH to use a built binary
# Needs: python3; about 3.5 GB of free disk for the 100 MiB components and what is published.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${1:-600}"
bin="${GRIDREG_BIN:-}"
if [[ -z "$bin" ]]; then
  cargo build --release --locked -q -p gridreg
  bin="${CARGO_TARGET_DIR:-$root/target}/release/gridreg"
fi
mkdir -p bench/results
# 2,000 slow connections and the server's own need more descriptors than the usual 1,024.
ulimit -n "$(ulimit -Hn)"
work="$(mktemp -d "${TMPDIR:-/tmp}/gridreg-soak.XXXXXX")"
trap 'rm -rf "$work"' EXIT
python3 "$root/bench/soak.py" --bin "$bin" --work "$work" --seconds "$secs" \
  --fixture "$root/examples/wasm/hello.wasm" \
  --report "$root/bench/results/soak.md" --samples "$root/bench/results/soak-samples.csv"
