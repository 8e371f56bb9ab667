#!/usr/bin/env bash
# Prints config/prometheus/alerts.yaml (a plain Prometheus rule file) as a PrometheusRule for
# the Prometheus Operator: `make prometheus-rules` writes config/prometheus/prometheusrule.yaml,
# and `make test-alerts` fails when that file is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
cat <<'HEAD'
# Generated from config/prometheus/alerts.yaml by `make prometheus-rules`: edit that file.
# Your Prometheus' ruleSelector may need another label (kube-prometheus-stack: `release: <name>`).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: scim-operator
  namespace: scim-operator-system
  labels:
    app.kubernetes.io/name: scim-operator
    app.kubernetes.io/component: alerts
spec:
HEAD
# Comment lines at the top of the file are its header, not rules: leave them out.
awk 'started || !/^#/ { started = 1; if ($0 == "") print ""; else print "  " $0 }' config/prometheus/alerts.yaml
