#!/usr/bin/env bash
# Installs what the deployment checks (tests/deploy, `make deploy-check`) need beyond the virtual
# environment: Debian's docker-compose, which validates docker-compose.yml with `config` (no Docker
# engine needed). hadolint, kubectl and kubernetes-validate come from requirements.txt.
# Installs the way infra/up.sh does: apt-get only when missing, package lists refreshed only when
# apt does not know the package yet, waiting for the dpkg lock rather than failing.
set -euo pipefail

log() { printf '[deploy-tools] %s\n' "$*" >&2; }

command -v docker-compose >/dev/null && exit 0

if ((EUID != 0)); then
  log "docker-compose is missing; install it (as root: apt-get install -y docker-compose)"
  exit 1
fi
if ! apt-cache policy docker-compose 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  log "apt-get update"
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
fi
log "apt-get install -y docker-compose"
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --no-install-recommends docker-compose >&2
command -v docker-compose >/dev/null
