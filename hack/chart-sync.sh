#!/usr/bin/env bash
# Copies into the Helm chart the files it ships as they are: the CRDs (config/crd/bases) and the
# Prometheus alert rules (config/prometheus/alerts.yaml). `make manifests` runs it; test/chart
# fails when the copies differ from their sources.
set -euo pipefail
cd "$(dirname "$0")/.."
chart=charts/scim-operator
rm -f "$chart"/files/crds/*.yaml
mkdir -p "$chart/files/crds"
cp config/crd/bases/*.yaml "$chart/files/crds/"
if [ -f config/prometheus/alerts.yaml ]; then
  cp config/prometheus/alerts.yaml "$chart/files/alerts.yaml"
fi
