#!/usr/bin/env bash
# The main job, as a new user would try it: build gridreg, start a registry on the embedded
# default (SQLite + files), claim a namespace, publish a first component and pull it back with
# every check run on this machine; then audit components against capability policies the way a
# CI gate would, compose two and run the result; last, the polyglot microservice (a Rust HTTP
# gateway, the Rust authenticator, a converter written in Python) published, composed by
# reference, judged by its policy and served with `gridreg run --listen`. Everything runs locally;
# nothing is left behind except the build and the compiled-code cache (the registry, keys, client
# configuration and state live in a temp dir).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release --locked -q -p gridreg
gridreg="${CARGO_TARGET_DIR:-$root/target}/release/gridreg"
work="$(mktemp -d)"
server=""
service=""
cleanup() {
  [[ -n "$service" ]] && kill "$service" 2>/dev/null
  [[ -n "$server" ]] && kill "$server" 2>/dev/null
  wait 2>/dev/null; rm -rf "$work"
}
trap cleanup EXIT
# The client's configuration and state go to the temp dir, not your home.
export GRIDREG_CONFIG="$work/config.toml" GRIDREG_STATE_DIR="$work/state"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { step "gridreg $*"; "$gridreg" "$@" || echo "(exit status $?)"; }

# A registry on the embedded default. A bare `gridreg serve` listens on 127.0.0.1:7411, where the
# client looks when nothing is configured; if that port is taken, use another and say so.
port=7411
if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  export GRIDREG_REGISTRY="http://127.0.0.1:$port"
  echo "(127.0.0.1:7411 is busy; this demo's registry uses port $port)"
fi
step "gridreg serve --data $work/data --addr 127.0.0.1:$port &"
"$gridreg" serve --data "$work/data" --addr "127.0.0.1:$port" 2>"$work/serve.log" &
server=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

run keygen --name acme-release -o "$work/acme-release.key"
run namespace claim acme --key "$work/acme-release.key"
run publish examples/wasm/hello.wasm --package acme:hello --version 1.0.0 --key "$work/acme-release.key"
cd "$work"
run pull acme:hello@^1 --verify -o hello.wasm
step "cat gridreg.lock"; cat gridreg.lock
cd "$root"
# Version 1.1.0 gains a socket: pulling it under the default policy stops at the policy check.
run publish examples/wasm/tcp-client.wasm --package acme:hello --version 1.1.0 --key "$work/acme-release.key"
(cd "$work" && run pull acme:hello@^1 --verify -o hello.wasm)
run log monitor
# The same log as C2SP tlog-tiles, read and checked through the tiles alone.
run log monitor --tiles

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

# The microservice. The converter is Python (componentize-py): its default build carries CPython's
# runtime and imports 25 WASI interfaces, sockets and files among them; the same code built with
# --stub-wasi imports nothing. Both are published; the service's policy decides which may run.
run publish examples/wasm/gateway.wasm --package acme:gateway --version 0.1.0 --key "$work/acme-release.key"
run publish examples/wasm/authenticator.wasm --package acme:authenticator --version 0.1.0 --key "$work/acme-release.key"
run publish examples/wasm/converter-py.wasm --package acme:converter-py --version 0.1.0 --key "$work/acme-release.key"
run publish examples/wasm/converter-py-stub.wasm --package acme:converter-py --version 0.2.0 --key "$work/acme-release.key"
run compose acme:gateway@0.1.0 --plug acme:authenticator@0.1.0 --plug acme:converter-py@0.1.0 -o "$work/service-cpython.wasm"
# The policy is http-proxy's plus the environment the authenticator reads its token from.
run verify "$work/service-cpython.wasm" --policy examples/gateway/policy.toml
run compose acme:gateway@0.1.0 --plug acme:authenticator@0.1.0 --plug acme:converter-py@0.2.0 -o "$work/service.wasm"
run verify "$work/service.wasm" --policy examples/gateway/policy.toml

sport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
step "gridreg run service.wasm --listen 127.0.0.1:$sport --policy examples/gateway/policy.toml --env AUTH_TOKEN=s3cret --allow-host 127.0.0.1:$port &"
"$gridreg" run "$work/service.wasm" --listen "127.0.0.1:$sport" --policy examples/gateway/policy.toml \
  --env AUTH_TOKEN=s3cret --allow-host "127.0.0.1:$port" 2>"$work/service.log" &
service=$!
# The first start compiles the 18 MB service (tens of seconds on 2 cores); later starts load it cached.
for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/$sport) 2>/dev/null && break; sleep 0.1; done
head -1 "$work/service.log"
call() { step "curl $*"; curl -s -w '(HTTP %{http_code})\n' "$@" || true; }
call -u alice:s3cret "http://127.0.0.1:$sport/convert?amount=100&from=EUR&to=USD"
call -u alice:wrong "http://127.0.0.1:$sport/convert?amount=100&from=EUR&to=USD"
# Outgoing HTTP only to --allow-host: the registry is allowed, anything else is refused unsent.
call -u alice:s3cret "http://127.0.0.1:$sport/fetch?url=http://127.0.0.1:$port/healthz"
call -u alice:s3cret "http://127.0.0.1:$sport/fetch?url=http://example.com/"
kill -TERM "$service"; wait "$service" 2>/dev/null || true; service=""
step "the service's log (stderr): one line per request"; tail -n +2 "$work/service.log"
