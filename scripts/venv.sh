#!/usr/bin/env bash
# Prints, as the last line of stdout, the path of a Python virtual environment with every pinned
# dependency of the repo, building it first if needed. Progress goes to stderr, so callers can use
#   venv=$(scripts/venv.sh | tail -n 1)
# The environment is keyed by the requirements file's sha256: changing a pin makes a new one and
# leaves the old one in place for whatever still uses it.
# Settings (environment): BUNDLEWISE_VENV_ROOT ($HOME/.cache/bundlewise), BUNDLEWISE_REQUIREMENTS
# (requirements.txt at the repo root), PYTHON (python3).
set -euo pipefail

log() { printf '[venv] %s\n' "$*" >&2; }
die() {
  printf '[venv] ERROR: %s\n' "$*" >&2
  exit 1
}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
requirements=${BUNDLEWISE_REQUIREMENTS:-$repo_root/requirements.txt}
venv_root=${BUNDLEWISE_VENV_ROOT:-$HOME/.cache/bundlewise}
python=${PYTHON:-python3}

[[ -r $requirements ]] || die "no requirements file at $requirements"
key=$(sha256sum "$requirements" | cut -c1-16)
venv=$venv_root/venv-$key

# The environment exists only once complete: $venv is a symlink that is renamed into place after a
# successful install (below), so an interrupted build is never picked up.
if [[ -x $venv/bin/python ]]; then
  printf '%s\n' "$venv"
  exit 0
fi

mkdir -p "$venv_root"
# One builder per requirements hash; a second caller waits and then uses the first one's result.
exec 9>"$venv.lock"
if ! flock -n 9; then
  log "another process is building $venv; waiting for it"
  flock 9
fi
if [[ -x $venv/bin/python ]]; then
  printf '%s\n' "$venv"
  exit 0
fi
[[ ! -e $venv || -L $venv ]] || die "$venv is not a symlink made by this script; remove it"

# A venv cannot be moved once built (its scripts' #! lines hold its path), so it is built in a
# folder beside it that stays where it is, and $venv becomes a symlink to that folder at the end.
# A folder left there by an interrupted build (the lock is ours, so none is running) is discarded.
build=$venv.real
rm -rf "$build" "$venv.link"
trap 'rm -rf "$build" "$venv.link"' EXIT
log "creating $venv from $requirements"
"$python" -m venv "$build" >&2
"$build/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
  -r "$requirements" >&2 || die "pip install -r $requirements failed; nothing was kept"

ln -s "$(basename "$build")" "$venv.link"
mv -T "$venv.link" "$venv" # rename(2): atomic, so readers see no venv or a complete one
trap - EXIT
log "ready: $venv"
printf '%s\n' "$venv"
