#!/usr/bin/env bash
# Benchmark: OCI pulls of a ~1 MB component at 64 connections: `gridreg serve` (/v2/, manifests
# derived from the signed record, the layer from its blob store) against Debian's docker-registry
# (CNCF distribution 2.8, filesystem storage) serving the same artifact, copied into it with
# skopeo so both serve identical bytes under identical digests, in the same run, with the same
# load generator (wrk). Goal (the OCI issue): gridreg >= 1.5x the reference registry's
# requests/s on manifests and on blobs. Also reports p99 latency and each server's peak RSS.
#
# Needs: wrk, skopeo, docker-registry (Debian packages; installed with apt-get if missing).
# Usage: bench/oci.sh [SECONDS] [FILE.wasm]    writes bench/results/oci.md
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
for tool in wrk skopeo docker-registry; do
  command -v "$tool" >/dev/null || apt-get install -y -q wrk skopeo docker-registry >/dev/null
done

cargo build --release --locked -q -p gridreg
gridreg="${CARGO_TARGET_DIR:-$root/target}/release/gridreg"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
export GRIDREG_CONFIG="$work/config.toml" GRIDREG_STATE_DIR="$work/state"

# gridreg, with the component published as acme:bench@1.0.0.
gport=$(free_port)
RUST_LOG=warn "$gridreg" serve --data "$work/data" --addr "127.0.0.1:$gport" 2>/dev/null &
gpid=$!; pids+=("$gpid")
wait_port "$gport"
export GRIDREG_REGISTRY="http://127.0.0.1:$gport"
"$gridreg" keygen --name bench -o "$work/bench.key" >/dev/null 2>&1
"$gridreg" namespace claim acme --key "$work/bench.key" >/dev/null 2>&1
"$gridreg" publish "$file" --package acme:bench --version 1.0.0 --key "$work/bench.key" >/dev/null

# docker-registry on its own port, filling it from gridreg with skopeo (digests preserved).
dport=$(free_port)
mkdir -p "$work/distribution"
cat > "$work/distribution/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/distribution/data
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$dport
EOF
docker-registry serve "$work/distribution/config.yml" 2>"$work/distribution/log" &
dpid=$!; pids+=("$dpid")
wait_port "$dport"
skopeo --insecure-policy copy -q --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
  "docker://127.0.0.1:$gport/acme/bench:1.0.0" "docker://127.0.0.1:$dport/acme/bench:1.0.0"

accept='Accept: application/vnd.oci.image.manifest.v1+json'
manifest_digest="$(curl -sf -H "$accept" "http://127.0.0.1:$gport/v2/acme/bench/manifests/1.0.0" | sha256sum | cut -d' ' -f1)"
other="$(curl -sf -H "$accept" "http://127.0.0.1:$dport/v2/acme/bench/manifests/1.0.0" | sha256sum | cut -d' ' -f1)"
[[ "$manifest_digest" == "$other" ]] || { echo "error: the two registries serve different manifests" >&2; exit 2; }
blob="sha256:$(sha256sum "$file" | cut -d' ' -f1)"

# Peak RSS of each server while under load.
sample_rss() {
  local pid=$1 out=$2 peak=0 r
  while kill -0 "$pid" 2>/dev/null; do
    r=$(awk '/VmRSS/{print $2}' /proc/$pid/status 2>/dev/null || echo 0)
    [[ "$r" -gt "$peak" ]] && peak=$r && echo "$peak" > "$out"
    sleep 0.2
  done
}
sample_rss "$gpid" "$work/rss.gridreg" & pids+=("$!")
sample_rss "$dpid" "$work/rss.distribution" & pids+=("$!")

run_wrk() { # URL OUT [HEADER]
  wrk -t2 -c64 -d"${secs}s" --latency ${3:+-H "$3"} "$1" > "$2"
  if grep -q 'Non-2xx' "$2"; then echo "error: $1 answered errors under load:" >&2; cat "$2" >&2; exit 2; fi
}
curl -sf "http://127.0.0.1:$gport/v2/acme/bench/blobs/$blob" | cmp -s - "$file" || { echo "error: gridreg's blob differs" >&2; exit 2; }
curl -sfL "http://127.0.0.1:$dport/v2/acme/bench/blobs/$blob" | cmp -s - "$file" || { echo "error: distribution's blob differs" >&2; exit 2; }
run_wrk "http://127.0.0.1:$dport/v2/acme/bench/manifests/1.0.0" "$work/d-manifest.txt" "$accept"
run_wrk "http://127.0.0.1:$gport/v2/acme/bench/manifests/1.0.0" "$work/g-manifest.txt" "$accept"
run_wrk "http://127.0.0.1:$dport/v2/acme/bench/blobs/$blob" "$work/d-blob.txt"
run_wrk "http://127.0.0.1:$gport/v2/acme/bench/blobs/$blob" "$work/g-blob.txt"

rps() { awk '/Requests\/sec/{print $2}' "$1"; }
p99() { awk '/ 99%/{print $2}' "$1"; }
size=$(stat -c %s "$file")
mkdir -p bench/results
{
  echo "## oci: $(basename "$file") ($size bytes), 64 connections, wrk -t2, ${secs}s each, $(date -u +%Y-%m-%d), $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
  echo
  echo "| what | docker-registry 2.8 req/s | p99 | gridreg req/s | p99 | ratio |"
  echo "|---|---:|---:|---:|---:|---:|"
  for what in manifest blob; do
    d=$(rps "$work/d-$what.txt"); g=$(rps "$work/g-$what.txt")
    python3 - "$what" "$d" "$(p99 "$work/d-$what.txt")" "$g" "$(p99 "$work/g-$what.txt")" <<'PY'
import sys
what, d, pd, g, pg = sys.argv[1], float(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
label = {"manifest": "manifest by tag", "blob": "blob (the component)"}[what]
print(f"| {label} | {d:,.0f} | {pd} | {g:,.0f} | {pg} | **{g/d:.2f}** |")
PY
  done
  echo
  echo "Goal: ratio >= 1.5 on both. Peak RSS under this load: gridreg $(( $(cat "$work/rss.gridreg" 2>/dev/null || echo 0) / 1024 )) MiB, docker-registry $(( $(cat "$work/rss.distribution" 2>/dev/null || echo 0) / 1024 )) MiB."
} > bench/results/oci.md
cat bench/results/oci.md
