#!/usr/bin/env bash
# Prints the argocd-cm patch that installs the operator's Argo CD health checks
# (config/argocd/health/scim.nhi.dev/<Kind>/health.lua): `make argocd-cm` writes
# config/argocd/argocd-cm-patch.yaml; internal/gitopshealth's tests fail when it is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
cat <<'HEAD'
# Generated from config/argocd/health by `make argocd-cm`: edit the health.lua files.
# kubectl -n argocd patch configmap argocd-cm --type merge --patch-file config/argocd/argocd-cm-patch.yaml
data:
HEAD
for kind in ServiceIdentity ScimTarget ClusterScimTarget; do
  echo "  resource.customizations.health.scim.nhi.dev_${kind}: |"
  sed -e 's/^/    /' -e 's/^ *$//' "config/argocd/health/scim.nhi.dev/${kind}/health.lua"
done
