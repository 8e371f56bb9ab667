#!/usr/bin/env bash
# Provides the tools of `make release` and `make test-release`, each built once from the Go module
# proxy (`go install module/cmd@version`) and cached beside helm and the control-plane binaries.
# The table below is the one place their versions are pinned; helm keeps its own script
# (hack/helm.sh, HELM_VERSION) because `make test` uses it too, and `hack/tool.sh helm` runs it.
#
# Usage: hack/tool.sh NAME      prints the path of the binary (last line of stdout)
#        hack/tool.sh --list    prints NAME PACKAGE@VERSION of every tool
# Env:   SCIM_OPERATOR_CACHE (default ~/.cache/scim-operator)
set -euo pipefail

# NAME                    PACKAGE@VERSION
TOOLS="
cosign                  github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
cyclonedx-gomod         github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0
krew                    sigs.k8s.io/krew/cmd/krew@v0.4.3
registry                github.com/distribution/distribution/v3/cmd/registry@v3.1.2
validate-krew-manifest  sigs.k8s.io/krew/cmd/validate-krew-manifest@v0.4.3
"

say() { echo "tool.sh: $*" >&2; }

name="${1:-}"
if [ "$name" = "--list" ]; then
  echo "$TOOLS" | sed '/^$/d'
  helm_version="$(grep -o 'HELM_VERSION:-v[0-9.]*' "$(dirname "$0")/helm.sh" | head -1)"
  echo "helm                    helm.sh/helm/v4/cmd/helm@${helm_version#*:-} (hack/helm.sh)"
  exit 0
fi
if [ "$name" = "helm" ]; then
  exec "$(dirname "$0")/helm.sh"
fi
pkg="$(echo "$TOOLS" | awk -v n="$name" '$1 == n { print $2 }')"
if [ -z "$name" ] || [ -z "$pkg" ]; then
  say "usage: hack/tool.sh NAME, NAME one of: $(echo "$TOOLS" | awk 'NF { printf "%s ", $1 }')helm"
  exit 2
fi
version="${pkg##*@}"

# Version stamps, so `NAME version` tells what was built.
ldflags="-s -w"
case "$name" in
  cosign)
    ldflags="$ldflags -X sigs.k8s.io/release-utils/version.gitVersion=${version} -X sigs.k8s.io/release-utils/version.gitTreeState=clean" ;;
  registry)
    ldflags="$ldflags -X github.com/distribution/distribution/v3/version.version=${version}" ;;
  krew)
    ldflags="$ldflags -X sigs.k8s.io/krew/internal/version.gitTag=${version}" ;;
esac

CACHE="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
DEST="$CACHE/tools/${name}-${version}"
BIN="$DEST/$name"

if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { say "go is needed to build $name: install Go 1.26 or later and put it on PATH"; exit 1; }

mkdir -p "$DEST"
# One build at a time per tool (make test and a shell may both ask).
exec 9>"$DEST/.lock"
flock 9
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

TMP="$(mktemp -d "$DEST/tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
say "building $name from the Go module proxy: go install $pkg (first run only)"
start=$SECONDS
if ! GOBIN="$TMP" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "$pkg" >&2; then
  say "could not build $pkg: the Go module proxy must be reachable (GOPROXY=$(go env GOPROXY))"
  exit 1
fi
bin_name="${pkg%@*}"
bin_name="${bin_name##*/}"
install -m 0755 "$TMP/$bin_name" "$BIN"
say "built $name ${version} in $((SECONDS - start)) s: $BIN"
echo "$BIN"
