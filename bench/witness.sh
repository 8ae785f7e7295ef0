#!/usr/bin/env bash
# Witnesses and tiles (docs/protocol.md §7.12, §7.13), the goals of the witness issue:
#   1. a witness cosigns >= 1,000 checkpoints/s on 2 cores (signature check + consistency proof +
#      a durable write each; requests that arrive together share one commit);
#   2. publishing with 2 witnesses keeps >= 90% of the publish throughput without them (the same
#      run, the same in-process registry, SQLite synchronous=FULL);
#   3. a full tile read at 1M entries, p99 <= 1 ms, from SQLite.
# No independent witness or tile server installs here (the C2SP reference implementations are
# Go); bench/interop.md has the by-hand checks against independent tile and cosignature clients.
# Usage: bench/witness.sh [SECONDS] [RECORDS]     appends to bench/results/witness.txt
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
records=${2:-20000}
mkdir -p bench/results
out=bench/results/witness.txt
{
  echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  cargo run -q --release --locked -p gridreg-registry --example bench_witness -- "$secs" 64
  publish() { cargo run -q --release --locked -p gridreg-registry --example bench_publish -- "$records" 64 | grep appends/s | grep -v tenth; }
  for round in 1 2; do
    GRIDREG_BENCH_WITNESSES=0 publish
    GRIDREG_BENCH_WITNESSES=2 publish
    # The witnesses' databases on a tmpfs: their fsyncs no longer share this disk with the
    # registry's, as with witnesses on other machines (their CPU still shares these 2 cores).
    shm=$(mktemp -d -p /dev/shm)
    GRIDREG_BENCH_WITNESSES=2 GRIDREG_BENCH_WITNESS_DIR="$shm" publish | sed 's/^/[witness dbs on tmpfs] /'
    rm -rf "$shm"
  done
  cargo run -q --release --locked -p gridreg-registry --example bench_proofs -- 1000000 20000 16
} | tee -a "$out"
