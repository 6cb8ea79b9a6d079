#!/usr/bin/env bash
# Installs the Debian programs the tests drive beyond the virtual environment, when missing:
#   docker-compose  validates docker-compose.yml with `config` (no Docker engine needed; tests/deploy)
#   chromium        loads the storefront page headless and clicks a bundle (tests/integration)
#   espeak-ng       speaks queries for the spoken-search tests (tests/unit/embedding)
# hadolint, kubectl and kubernetes-validate come from requirements.txt. Installs the way
# infra/up.sh does: apt-get only for what is missing, package lists refreshed only when apt does
# not know a package yet, waiting for the dpkg lock rather than failing.
set -euo pipefail

log() { printf '[test-tools] %s\n' "$*" >&2; }

# command:package
wanted=(docker-compose:docker-compose chromium:chromium espeak-ng:espeak-ng)
missing=()
for pair in "${wanted[@]}"; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair##*:}")
done
((${#missing[@]} == 0)) && exit 0

if ((EUID != 0)); then
  log "missing: ${missing[*]}; install them (as root: apt-get install -y ${missing[*]})"
  exit 1
fi
for package in "${missing[@]}"; do
  if ! apt-cache policy "$package" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    log "apt-get update"
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    break
  fi
done
log "apt-get install -y ${missing[*]}"
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --no-install-recommends "${missing[@]}" >&2
for pair in "${wanted[@]}"; do
  command -v "${pair%%:*}" >/dev/null || { log "${pair##*:} did not install ${pair%%:*}"; exit 1; }
done
