#!/usr/bin/env bash
# Publish throughput of the registry with the real log (SQLite WAL, synchronous=FULL):
# an in-process server and C concurrent clients posting pre-signed releases of hello.wasm.
# Usage: bench/registry.sh [RECORDS] [CLIENTS]   (results go to bench/results/registry-publish.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-20000}
clients=${2:-64}
mkdir -p bench/results
cargo run -q --release -p gridreg-registry --example bench_publish -- "$records" "$clients" \
  | tee -a bench/results/registry-publish.txt
