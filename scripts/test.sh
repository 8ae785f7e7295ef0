#!/usr/bin/env bash
# Runs every test: fetches the real-component corpus (once, cached), makes sure PostgreSQL is up for
# the tests that need it, then `cargo test` over the whole workspace.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

export GRIDREG_CORPUS="${GRIDREG_CORPUS:-${XDG_CACHE_HOME:-$HOME/.cache}/gridreg-corpus}"
shared="$root/../shared"
if [[ ! -f "$GRIDREG_CORPUS/numcodecs-jpeg2000.wasm" ]]; then
  if [[ -x "$shared/corpus/fetch.sh" || -f "$shared/corpus/fetch.sh" ]]; then
    bash "$shared/corpus/fetch.sh" "$GRIDREG_CORPUS"
  else
    echo "error: the real-component corpus is not in $GRIDREG_CORPUS and ../shared/corpus/fetch.sh is missing" >&2
    exit 2
  fi
fi

# PostgreSQL for the tests that use it (later issues); harmless when it is already running.
if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi

cargo test --workspace --locked "$@"
