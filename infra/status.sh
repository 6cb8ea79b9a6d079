#!/usr/bin/env bash
# Prints whether each server of the local stack (infra/up.sh) is up; exits 0 only if all are.
set -euo pipefail

# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
  local name rc=0
  check_settings
  print_table status
  for name in postgres redis kafka; do
    "${name}_is_up" || rc=1
  done
  exit "$rc"
}

main "$@"
