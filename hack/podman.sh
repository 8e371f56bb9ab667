#!/usr/bin/env bash
# podman as `make docker-build` and the end-to-end image spec use it, with settings that work on
# machines like CI's (a container itself: no overlayfs, no cgroup delegation, no systemd, no
# registry) as well as on a workstation:
#   - storage driver vfs under $PODMAN_ROOT (default ~/.cache/scim-operator/podman), so a build
#     or a test never touches the user's own podman storage and can be removed with one rm -rf;
#   - runtime runc when installed (crun fails on cgroups there), cgroupfs, events to a file;
#   - CONTAINERS_CONF pointing at $PODMAN_ROOT/containers.conf with `default_ulimits = []`
#     (raising the default ulimits is refused there).
# When podman is missing it is installed from the distribution's packages (podman, runc) if this
# runs as root with apt-get; otherwise it exits 3 and says why.
#
# Usage: hack/podman.sh <podman arguments>   e.g. hack/podman.sh build -t scim-operator:dev .
#        hack/podman.sh --ensure             install if needed; exit 0 when podman can be used
# Env:   PODMAN_ROOT  storage root (the e2e suite passes a directory of its own, removed after)
#        SCIM_OPERATOR_CACHE (default ~/.cache/scim-operator)
set -euo pipefail

CACHE="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
ROOT="${PODMAN_ROOT:-$CACHE/podman}"

say() { echo "podman.sh: $*" >&2; }

ensure() {
  if command -v podman >/dev/null && command -v runc >/dev/null; then
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    command -v podman >/dev/null && return 0
    say "podman is not installed and this is not root: install podman (and runc), e.g. sudo apt-get install -y podman runc"
    return 3
  fi
  if ! command -v apt-get >/dev/null; then
    command -v podman >/dev/null && return 0
    say "podman is not installed and there is no apt-get to install it: install podman (and runc)"
    return 3
  fi
  # make test's suites may ask at once (the e2e suite and the release test): one installs, the
  # others wait for it (two apt-get at once fail on dpkg's lock). The lock is closed before podman runs.
  mkdir -p "$CACHE"
  exec 9>"$CACHE/podman-install.lock"
  flock 9
  if command -v podman >/dev/null && command -v runc >/dev/null; then
    exec 9>&-
    return 0
  fi
  say "installing podman and runc with apt-get (about 30 s)"
  local log
  log="$(mktemp)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc; } >"$log" 2>&1; then
    tail -20 "$log" >&2
    rm -f "$log"
    exec 9>&-
    command -v podman >/dev/null && return 0
    say "apt-get could not install podman (output above)"
    return 3
  fi
  rm -f "$log"
  exec 9>&-
}

ensure
if [ "${1:-}" = "--ensure" ]; then
  exit 0
fi

mkdir -p "$ROOT/storage" "$ROOT/run" "$ROOT/tmp"
if [ ! -f "$ROOT/containers.conf" ]; then
  printf '[containers]\ndefault_ulimits = []\n' >"$ROOT/containers.conf"
fi
export CONTAINERS_CONF="$ROOT/containers.conf"

flags=(--root "$ROOT/storage" --runroot "$ROOT/run" --tmpdir "$ROOT/tmp" --storage-driver vfs
  --cgroup-manager cgroupfs --events-backend file)
if command -v runc >/dev/null; then
  flags+=(--runtime "$(command -v runc)")
fi
exec podman "${flags[@]}" "$@"
