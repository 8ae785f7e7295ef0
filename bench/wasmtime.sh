# Sourced by the benchmarks that compare against wasmtime (bench/run.sh, bench/serve.sh): sets
# $wasmtime to wasmtime-cli 48.0.8 under "$cache", building it with `cargo install --locked` the
# first time (about 15 minutes on 2 cores), so every comparison runs against the same pinned build.
wasmtime="$cache/wasmtime-48.0.8/bin/wasmtime"
if [[ ! -x "$wasmtime" ]]; then
  cargo install -q --locked wasmtime-cli --version 48.0.8 --root "$cache/wasmtime-48.0.8"
fi
"$wasmtime" --version | grep -q '^wasmtime 48\.0\.8' || { echo "error: $wasmtime is not wasmtime 48.0.8" >&2; exit 2; }
