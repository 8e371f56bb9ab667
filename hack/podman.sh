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
# runs as root with apt-get (hack/apt-ensure.sh); otherwise it exits 3 and says why.
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
  # Without root or apt-get, a podman without runc still works on many machines (crun).
  if command -v podman >/dev/null && { [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; }; then
    return 0
  fi
  "$(dirname "$0")/apt-ensure.sh" "podman runc" podman runc
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
