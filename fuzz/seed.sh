#!/usr/bin/env bash
# Seeds the fuzz corpora (fuzz/corpus/<target>/, not committed) from a real registry: starts
# `gridreg serve` in a temp dir, makes a small history (a namespace claimed, a key granted and
# revoked, releases published, one yanked), and stores what a client would read from it: log
# entries, checkpoints, keys, bundles, proofs and every JSON answer; plus the policies and the
# small example components. Usage: fuzz/seed.sh [GRIDREG_BINARY]   (default: a debug build)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-}"
if [[ -z "$bin" ]]; then
  (cd "$root" && cargo build -q -p gridreg)
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/gridreg"
fi
corpus="$root/fuzz/corpus"
work="$(mktemp -d)"
server=""
trap '[[ -n "$server" ]] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
export GRIDREG_CONFIG="$work/config.toml" GRIDREG_STATE_DIR="$work/state" GRIDREG_REGISTRY="$url"
"$bin" serve --data "$work/data" --addr "127.0.0.1:$port" 2>"$work/serve.log" &
server=$!
for _ in $(seq 200); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done

g() { "$bin" "$@" >/dev/null; }
cd "$work"
g keygen --name acme -o acme.key
g keygen --name acme-ci -o ci.key
g namespace claim acme --key acme.key
g namespace grant acme --to ci.key --key acme.key
g namespace revoke acme --to ci.key --key acme.key
for v in 1.0.0 1.1.0 2.0.0; do
  g publish "$root/examples/wasm/hello.wasm" --package acme:hello --version "$v" --key acme.key
done
g publish "$root/examples/wasm/tcp-client.wasm" --package acme:net --version 0.1.0 --key acme.key
g yank acme:hello@1.1.0 --reason "seed" --key acme.key

mkdir -p "$corpus"/{record,note,key,checkpoint,policy,audit,bundle,api_bodies,merkle,map_proof}
get() { curl -sf "$url$1"; }
size=$(get /healthz | python3 -c 'import json,sys; print(json.load(sys.stdin)["log_size"])')
get "/v1/log/entries?start=0&end=$size" > "$corpus/api_bodies/entries.json"
python3 - "$corpus" "$corpus/api_bodies/entries.json" <<'PY'
import json, sys, hashlib
corpus, path = sys.argv[1], sys.argv[2]
for e in json.load(open(path))["entries"]:
    body = e["body"].encode()
    name = hashlib.sha1(body).hexdigest()
    for target in ("record", "note"):
        open(f"{corpus}/{target}/{name}", "wb").write(body)
PY
get /v1/log/checkpoint > "$corpus/checkpoint/served"
cp "$corpus/checkpoint/served" "$corpus/note/checkpoint"
get /v1/log/key > "$corpus/key/log"
get /v1/log/timestamp-key > "$corpus/key/timestamp" || true
cp acme.key "$corpus/key/secret"
i=0
for p in "/v1/bundles/acme:hello" "/v1/bundles/acme:net" "/v1/bundles/acme:none" \
         "/v1/namespaces/acme/bundle"; do
  get "$p" > "$corpus/bundle/$i.json"; cp "$corpus/bundle/$i.json" "$corpus/api_bodies/bundle$i.json"
  i=$((i + 1))
done
for p in "/v1/log/proof/inclusion?index=1&size=$size" "/v1/log/proof/consistency?from=2&to=$size" \
         "/v1/packages/acme:hello" "/v1/packages?q=acme" "/v1/namespaces/acme" \
         "/v1/chains/package/acme:hello" "/v1/chains/namespace/acme" "/v2/acme/hello/tags/list" \
         "/v1/packages/acme:nothing"; do
  curl -s "$url$p" > "$corpus/api_bodies/$(echo "$p" | tr -c 'a-z0-9' '_')"
done
cp "$root"/policies/*.toml "$corpus/policy/"
find "$root/examples/wasm" -name '*.wasm' -size -64k -exec cp {} "$corpus/audit/" \;
echo "seeded $(find "$corpus" -type f | wc -l) files under $corpus"
