#!/usr/bin/env bash
# Prints the operator's Argo CD health checks (config/argocd/health/scim.nhi.dev/<Kind>/health.lua)
# for argocd-cm: `make argocd-cm` writes config/argocd/argocd-cm-patch.yaml (a patch of the
# ConfigMap) and, with the argument `helm`, charts/scim-operator/files/argocd-values.yaml (values
# for Argo CD's own Helm chart, configs.cm). internal/gitopshealth's tests fail when either is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
indent="    "
if [ "${1:-}" = helm ]; then
  cat <<'HEAD'
# Generated from config/argocd/health by `make argocd-cm`: edit the health.lua files.
# Values for Argo CD's Helm chart (argo/argo-cd), so it judges the operator's kinds:
#   helm upgrade argocd argo/argo-cd -n argocd --reuse-values -f charts/scim-operator/files/argocd-values.yaml
configs:
  cm:
HEAD
  prefix="    "
  indent="      "
else
  cat <<'HEAD'
# Generated from config/argocd/health by `make argocd-cm`: edit the health.lua files.
# kubectl -n argocd patch configmap argocd-cm --type merge --patch-file config/argocd/argocd-cm-patch.yaml
data:
HEAD
  prefix="  "
fi
for kind in ServiceIdentity ScimTarget ClusterScimTarget; do
  echo "${prefix}resource.customizations.health.scim.nhi.dev_${kind}: |"
  sed -e "s/^/${indent}/" -e 's/^ *$//' "config/argocd/health/scim.nhi.dev/${kind}/health.lua"
done
