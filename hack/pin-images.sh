#!/usr/bin/env bash
# The Dockerfile's base images (ARG GO_IMAGE, ARG BASE_IMAGE) pinned by digest:
# NAME:TAG@sha256:<digest>, so a rebuild compiles in and ships on exactly the image reviewed,
# whatever the tag points at later.
#
#   hack/pin-images.sh          resolve each ARG *_IMAGE's NAME:TAG on its registry (crane, skopeo
#                               or podman, whichever is installed) and write NAME:TAG@sha256:... into
#                               the Dockerfile (an already pinned one is re-resolved from its tag:
#                               the way to move to a newer patch release). Needs the registry.
#   hack/pin-images.sh --check  fail when an ARG *_IMAGE default carries no @sha256: digest (no
#                               network). `make verify REQUIRE_PINNED_IMAGES=1` runs it.
#
# Digests are never written by hand: only what the registry answers.
set -euo pipefail
cd "$(dirname "$0")/.."
dockerfile=Dockerfile
args=$(grep -E '^ARG [A-Z_]+_IMAGE=' "$dockerfile" || true)
[[ -n "$args" ]] || { echo "no ARG *_IMAGE= in $dockerfile" >&2; exit 1; }

if [[ "${1:-}" == "--check" ]]; then
  bad=0
  while read -r _ kv; do
    if [[ "${kv#*=}" != *@sha256:* ]]; then
      echo "$dockerfile: ARG ${kv%%=*}=${kv#*=} is not pinned by digest (run hack/pin-images.sh where the registry is reachable)" >&2
      bad=1
    fi
  done <<<"$args"
  exit "$bad"
fi

digest() { # NAME:TAG -> sha256:... (the manifest list's digest: every platform)
  if command -v crane >/dev/null; then
    crane digest "$1"
  elif command -v skopeo >/dev/null; then
    skopeo inspect --raw "docker://$1" | sha256sum | awk '{print "sha256:" $1}'
  elif command -v podman >/dev/null; then
    podman pull -q "$1" >/dev/null && podman image inspect --format '{{.Digest}}' "$1"
  else
    echo "pin-images: install crane, skopeo or podman" >&2
    return 1
  fi
}

while read -r _ kv; do
  name=${kv%%=*} ref=${kv#*=}
  tagged=${ref%@*}
  d=$(digest "$tagged")
  [[ "$d" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "pin-images: $tagged: no digest (got '$d')" >&2; exit 1; }
  sed -i "s|^ARG ${name}=.*|ARG ${name}=${tagged}@${d}|" "$dockerfile"
  echo "$name=${tagged}@${d}"
done <<<"$args"
