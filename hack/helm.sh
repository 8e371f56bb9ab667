#!/usr/bin/env bash
# Provides helm for the chart checks (make chart-test): built once from the Go module proxy
# (helm.sh/helm/v4 has no replace directives, so `go install module@version` builds it) and
# cached beside the control-plane binaries.
#
# Usage: hack/helm.sh        prints the path of the helm binary (last line of stdout)
# Env:   HELM_VERSION (default v4.3.1), SCIM_OPERATOR_CACHE (default ~/.cache/scim-operator)
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.1}"
CACHE="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
DEST="$CACHE/tools/helm-${HELM_VERSION}"

say() { echo "helm: $*" >&2; }

if [ -x "$DEST/helm" ]; then
  echo "$DEST/helm"
  exit 0
fi

mkdir -p "$CACHE/tools"
# Two runs at once (parallel test packages, two terminals) build it once.
exec 9>"$CACHE/tools/helm.lock"
flock 9
if [ -x "$DEST/helm" ]; then
  echo "$DEST/helm"
  exit 0
fi

TMP="$(mktemp -d "$CACHE/tools/tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
start=$(date +%s)
say "building helm ${HELM_VERSION} from the Go module proxy (first run only; about 6 minutes on 2 cores with empty Go caches)"
vpkg=helm.sh/helm/v4/internal/version
GOBIN="$TMP" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath \
  -ldflags="-s -w -X ${vpkg}.version=${HELM_VERSION} -X ${vpkg}.metadata= -X ${vpkg}.gitTreeState=clean" \
  "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}" >&2
mkdir -p "$DEST"
install -m 0755 "$TMP/helm" "$DEST/helm"
say "ready in $(( $(date +%s) - start ))s: $DEST/helm"
echo "$DEST/helm"
