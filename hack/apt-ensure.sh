#!/usr/bin/env bash
# Makes sure some commands exist, installing the distribution's packages that provide them when
# they do not and this runs as root with apt-get. make test's suites may ask at once (the e2e
# suites and the release test): one installs, the others wait for it (two apt-get at once fail
# on dpkg's lock).
#
# Usage: hack/apt-ensure.sh "<command> <command>..." <package>...
# Exit:  0 when every command exists (afterwards), 3 when they cannot be installed (says why).
# Env:   SCIM_OPERATOR_CACHE (default ~/.cache/scim-operator) holds the lock.
set -euo pipefail

CACHE="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
read -r -a commands <<<"$1"
shift
packages=("$@")

say() { echo "apt-ensure: $*" >&2; }

present() {
  local c
  for c in "${commands[@]}"; do command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] || return 1; done
}

present && exit 0
if [ "$(id -u)" != 0 ]; then
  say "${commands[*]}: not installed and this is not root: install them, e.g. sudo apt-get install -y ${packages[*]}"
  exit 3
fi
if ! command -v apt-get >/dev/null; then
  say "${commands[*]}: not installed and there is no apt-get to install them: install ${packages[*]}"
  exit 3
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/apt-install.lock"
flock 9
present && exit 0
say "installing ${packages[*]} with apt-get"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"; } >"$log" 2>&1; then
  tail -20 "$log" >&2
  say "apt-get could not install ${packages[*]} (output above)"
  exit 3
fi
present || { say "installed ${packages[*]}, but ${commands[*]} are still missing"; exit 3; }
