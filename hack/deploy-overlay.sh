#!/usr/bin/env bash
# Writes DIR/kustomization.yaml: BASE (config/default or config/no-admission-policy) with the
# operator's image replaced by IMG (name[:tag] or name@sha256:...), for `make deploy IMG=...`.
# DIR must lie inside the repository (kustomize refuses absolute bases).
#
# Usage: hack/deploy-overlay.sh DIR BASE IMG
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$1" base="$2" img="$3"
# The image config/manager/kustomization.yaml sets (its images: newName).
current="$(awk '/newName:/ {print $2; exit}' config/manager/kustomization.yaml)"

if [[ "$img" == *@* ]]; then
  name="${img%@*}" ref="    digest: ${img#*@}"
elif [[ "${img##*/}" == *:* ]]; then
  name="${img%:*}" ref="    newTag: ${img##*:}"
else
  name="$img" ref="    newTag: latest"
fi
mkdir -p "$dir"
rel="$(realpath --relative-to="$dir" "$base")"
cat >"$dir/kustomization.yaml" <<YAML
# Written by hack/deploy-overlay.sh for make deploy IMG=$img
resources:
  - $rel
images:
  - name: $current
    newName: $name
$ref
YAML
