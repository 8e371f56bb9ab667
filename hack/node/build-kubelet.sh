#!/usr/bin/env bash
# Copy of hack/envtest-bins.sh build_from_proxy, building only kubelet into /tmp/node-explore/bin
set -euo pipefail
K8S_VERSION=1.37.2
mod=/tmp/node-explore/wrapper
say() { echo "build-kubelet: $*" >&2; }
gomod="$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
staging_minor="v0.${K8S_VERSION#*.}"
{
  echo "module scim-operator.local/k8s-binaries"
  echo
  grep -E '^go [0-9]' "$gomod" | head -1
  echo
  echo "require k8s.io/kubernetes v${K8S_VERSION}"
  echo
  echo "replace ("
  sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/src/k8s.io/.*#\t\1 => \1 '"$staging_minor"'#p' "$gomod"
  echo ")"
} > "$mod/go.mod"
cd "$mod"
export GOFLAGS=-mod=mod CGO_ENABLED=0
t0=$(date +%s)
go get "k8s.io/kubernetes@v${K8S_VERSION}" >&2
say "go get took $(( $(date +%s) - t0 ))s"
vpkg=k8s.io/component-base/version
minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
t0=$(date +%s)
go build -trimpath -o /tmp/node-explore/bin/ \
  -ldflags="-s -w -X ${vpkg}.gitVersion=v${K8S_VERSION} -X ${vpkg}.gitMajor=${K8S_VERSION%%.*} -X ${vpkg}.gitMinor=${minor} -X ${vpkg}.gitTreeState=clean" \
  k8s.io/kubernetes/cmd/kubelet >&2
say "go build kubelet took $(( $(date +%s) - t0 ))s"
