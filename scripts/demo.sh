#!/usr/bin/env bash
# The main job, as a new user would try it: build gridreg, then audit real components against
# capability policies the way a CI gate would. Everything runs locally; nothing is left behind
# except the build and a temp dir that is removed at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release --locked -q -p gridreg
gridreg="${CARGO_TARGET_DIR:-$root/target}/release/gridreg"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { step "gridreg $*"; "$gridreg" "$@" || echo "(exit status $?)"; }

run inspect examples/wasm/tcp-client.wasm
run verify examples/wasm/hello.wasm examples/wasm/tcp-client.wasm --policy default
run diff examples/wasm/env-reader.wasm examples/wasm/tcp-client.wasm
run verify examples/wasm/tcp-client.wasm --policy strict --baseline examples/wasm/env-reader.wasm
step "gridreg verify examples/wasm/*.wasm --policy ci --format sarif > $work/gridreg.sarif"
"$gridreg" verify examples/wasm/*.wasm --policy ci --format sarif > "$work/gridreg.sarif" || true
python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['runs'][0]; print(f\"{len(r['results'])} SARIF results over {len(r['artifacts'])} files\")" "$work/gridreg.sarif"
run compose examples/wasm/processor.wasm --plug examples/wasm/converter.wasm -o "$work/app.wasm"
run run "$work/app.wasm" --policy tests/cli/verify/policies/allow-env.toml
run run examples/wasm/tcp-client.wasm --policy default -- 127.0.0.1:9
run keygen --name acme-release -o "$work/acme-release.key"
