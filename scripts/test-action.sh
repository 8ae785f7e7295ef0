#!/usr/bin/env bash
# Tests the GitHub Action (action.yml) by running its steps with scripts/action-steps.sh in a
# throwaway workspace holding the real-component corpus under build/: the first run installs the
# gate build exactly as the action does (`cargo install --locked --path cli --no-default-features
# --features gate`, into the stand-in tool cache, then cached by the source key), later runs restore
# it. Checks: `policy: ci` over build/**/*.wasm fails the job with exit status 1, the SARIF names the
# one failing file twice, the log has one line per file and the GitHub annotations; the passing
# files alone pass; a glob that matches nothing is exit status 2.
# Needs the corpus ($GRIDREG_CORPUS, scripts/fetch-corpus.sh). The release build goes to
# $CARGO_TARGET_DIR/action-gate, so it never replaces the full build's target/release/gridreg.
# Usage: scripts/test-action.sh      (scripts/test.sh runs it); prints "N passed, N failed"
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
corpus="${GRIDREG_CORPUS:-${XDG_CACHE_HOME:-$HOME/.cache}/gridreg-corpus}"
[[ -f "$corpus/numcodecs-jpeg2000.wasm" ]] || { echo "error: no corpus in $corpus (scripts/fetch-corpus.sh)" >&2; exit 2; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}/action-gate"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/build/codecs"
cp "$corpus"/numcodecs-*.wasm "$work/build/codecs/"
cd "$work"

passed=0 failed=0
check() { # check WHAT COMMAND...: counts a pass when COMMAND succeeds
  local what="$1"; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $what" >&2; fi
}

# 1. The gate over the whole build: jpeg2000 needs the filesystem, which `ci` does not allow.
set +e
INPUT_FILES='build/**/*.wasm' INPUT_POLICY=ci INPUT_SARIF_FILE=out.sarif \
  ACTION_UPLOADS="$work/uploads" bash "$root/scripts/action-steps.sh" > log1 2>&1
status=$?
set -e
cat log1
check "the job fails with exit status 1" [ "$status" = 1 ]
check "one PASS/FAIL line per file" [ "$(grep -cE '^(PASS|FAIL)  build/codecs/numcodecs-[a-z0-9]+\.wasm  \(component, ' log1)" = 5 ]
check "jpeg2000 is the failing one" grep -q '^FAIL  build/codecs/numcodecs-jpeg2000.wasm  ' log1
check "two annotations on jpeg2000" [ "$(grep -c '^::error file=build/codecs/numcodecs-jpeg2000.wasm,title=gridreg capability-not-allowed (policy ci)::import wasi:filesystem/' log1)" = 2 ]
check "the verdict line of the job" grep -qF '::error title=gridreg verify::a file violates the policy (exit status 1)' log1
check "the SARIF was uploaded" cmp -s out.sarif "$work/uploads/gridreg.sarif"
check "the SARIF has the two findings, on jpeg2000" python3 - out.sarif <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["runs"][0]["results"]
uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
sys.exit(0 if len(results) == 2 and uris == {"build/codecs/numcodecs-jpeg2000.wasm"} else f"{len(results)} results on {uris}")
PY
check "the gate build was installed or restored" grep -qE '^(Cache restored from key|Cache saved with key): gridreg-gate-' log1

# 2. The passing files alone: the job passes, from the cache.
set +e
INPUT_FILES='build/codecs/numcodecs-identity.wasm build/codecs/numcodecs-z*.wasm' INPUT_POLICY=ci \
  ACTION_UPLOADS="$work/uploads" bash "$root/scripts/action-steps.sh" > log2 2>&1
status=$?
set -e
cat log2
check "passing files pass" [ "$status" = 0 ]
check "restored from the cache, not rebuilt" grep -q '^-- skipped: Install the gate build' log2
check "three PASS lines" [ "$(grep -c '^PASS  ' log2)" = 3 ]

# 3. A glob that matches nothing is an input error, and nothing is uploaded.
set +e
INPUT_FILES='dist/*.wasm' ACTION_UPLOADS="$work/uploads" bash "$root/scripts/action-steps.sh" > log3 2>&1
status=$?
set -e
cat log3
check "no match is exit status 2" [ "$status" = 2 ]
check "no upload without a report" grep -q '^-- skipped: Upload SARIF to code scanning' log3

echo "action: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
