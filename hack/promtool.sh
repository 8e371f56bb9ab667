#!/usr/bin/env bash
# Provides promtool (Prometheus' rule checker and rule unit-test runner) for `make test`.
#
# Built from the Go module proxy (github.com/prometheus/prometheus/cmd/promtool) on first use and
# cached beside the control-plane binaries; a second run only prints the path.
# The build leaves out the service-discovery plugins (build tag remove_all_sd: promtool keeps
# file and http discovery), which the rule commands never use, and strips symbols.
#
# Usage: hack/promtool.sh        prints the path of the promtool binary (last line of stdout)
# Env:   PROMTOOL_MODULE_VERSION (default v0.316.0, that is Prometheus 3.16.0),
#        SCIM_OPERATOR_CACHE (default ~/.cache/scim-operator)
set -euo pipefail

VERSION="${PROMTOOL_MODULE_VERSION:-v0.316.0}"
CACHE="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
DEST="$CACHE/tools/promtool-${VERSION}"
BIN="$DEST/promtool"

if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

say() { echo "promtool: $*" >&2; }

mkdir -p "$DEST"
# One build at a time (make test and a developer's shell may both ask).
exec 9>"$DEST/.lock"
flock 9
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

# Prometheus' module versions v0.3XX.Y are its releases 3.XX.Y.
release="${VERSION#v0.}"
release="3.${release#3}"
say "building github.com/prometheus/prometheus/cmd/promtool@${VERSION} (Prometheus ${release}) from the Go module proxy (first run only)"
TMP="$(mktemp -d "$DEST/tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
start=$SECONDS
GOBIN="$TMP" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath -tags remove_all_sd \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=${release}" \
  "github.com/prometheus/prometheus/cmd/promtool@${VERSION}"
"$TMP/promtool" --version >/dev/null
mv "$TMP/promtool" "$BIN"
say "built in $((SECONDS - start)) s: $BIN"
echo "$BIN"
