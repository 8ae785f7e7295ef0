#!/usr/bin/env bash
# Runs the GitLab CI template ci/gitlab-gridreg.yml outside GitLab, as a runner runs a job that
# extends `.gridreg-verify`: its `script:` entries in order, in one `bash -eo pipefail` shell, in
# the current directory (the project), with the template's variables overridden by the environment
# (GRIDREG_GIT, GRIDREG_REV, GRIDREG_FILES, GRIDREG_POLICY, GRIDREG_BASELINE, GRIDREG_FORMAT,
# GRIDREG_SARIF_FILE). The job cache (.gridreg-gate/, keyed by GRIDREG_REV) is stood in for by
# $GITLAB_CACHE (default ~/.cache/gridreg-tools/gitlab): restored before the job and saved after
# it as the template's `cache: when:` says (always: a job that fails the gate keeps its install).
# Usage: GRIDREG_GIT=file://$PWD GRIDREG_REV=$(git rev-parse HEAD) GRIDREG_FILES='build/*.wasm' \
#          scripts/gitlab-steps.sh
# Exit status: the job's.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export GITLAB_CACHE="${GITLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gridreg-tools/gitlab}"
mkdir -p "$GITLAB_CACHE"
exec python3 - "$root/ci/gitlab-gridreg.yml" <<'PY'
import os, re, shutil, subprocess, sys, tempfile
import yaml

job = yaml.safe_load(open(sys.argv[1]))[".gridreg-verify"]
variables = {k: os.environ.get(k, str(v)) for k, v in job["variables"].items()}
env = dict(os.environ, **variables, CI="true", GITLAB_CI="true", CI_PROJECT_DIR=os.getcwd())
expand = lambda s: re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), s)

key = expand(job["cache"]["key"])
saved = os.path.join(os.environ["GITLAB_CACHE"], key)
if os.path.isdir(saved):
    for path in job["cache"]["paths"]:
        shutil.copytree(os.path.join(saved, path), path, symlinks=True, dirs_exist_ok=True)
    print(f"Restored cache {key}", flush=True)

# The runner's way: every script entry in one shell that stops at the first failing command.
with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
    f.write("\n".join(job["script"]) + "\n")
code = subprocess.run(["bash", "-eo", "pipefail", f.name], env=env).returncode
os.unlink(f.name)

if code == 0 or job["cache"].get("when") == "always":
    for path in job["cache"]["paths"]:
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(saved, path), symlinks=True, dirs_exist_ok=True)
    print(f"Saved cache {key}", flush=True)
artifacts = [expand(p) for p in job["artifacts"]["paths"]]
print(f"Artifacts ({job['artifacts']['when']}): " + ", ".join(f"{p} ({os.path.getsize(p)} bytes)" if os.path.exists(p) else f"{p} (missing)" for p in artifacts))
print(f"Job {'succeeded' if code == 0 else f'failed: exit code {code}'}")
sys.exit(code)
PY
