#!/usr/bin/env bash
# Provides kube-apiserver, etcd, kube-controller-manager and kubectl for tests and `make dev`;
# with the argument `node`, kubelet, kube-proxy and kube-scheduler for the suite that runs the
# chart's Pods on a real node (test/node), in the same directory.
#
# 1. Already cached?            -> print the directory and exit (a second run takes well under a second).
# 2. Try the usual downloads    -> envtest tarball (kube-apiserver, etcd, kubectl) and dl.k8s.io
#    (kube-controller-manager), with short timeouts so an offline machine fails fast.
# 3. Otherwise build them from the Go module proxy through a throwaway wrapper module
#    (k8s.io/kubernetes cannot be `go install`ed because its go.mod replaces staging modules
#    with local folders; the wrapper replaces them with the published k8s.io/* modules).
#
# Usage: hack/envtest-bins.sh [node]     prints the directory holding the binaries (last line of stdout)
# Env:   K8S_VERSION (default 1.37.2), SCIM_OPERATOR_CACHE (default ~/.cache/scim-operator)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
CACHE="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
OS="$(go env GOOS)"
ARCH="$(go env GOARCH)"
DEST="$CACHE/k8s/${K8S_VERSION}-${OS}-${ARCH}"
case "${1:-}" in
  "") BINS=(kube-apiserver etcd kube-controller-manager kubectl) ;;
  node) BINS=(kubelet kube-proxy kube-scheduler) ;;
  *) echo "usage: $0 [node]" >&2; exit 2 ;;
esac

say() { echo "envtest-bins: $*" >&2; }

complete() {
  local b
  for b in "${BINS[@]}"; do [ -x "$DEST/$b" ] || return 1; done
}

if complete; then
  echo "$DEST"
  exit 0
fi

mkdir -p "$DEST"
TMP="$(mktemp -d "$CACHE/tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

fetch() { # url out
  curl -fsSL --connect-timeout 5 --max-time 300 -o "$2" "$1"
}

try_download() {
  local b
  if [ "${1:-}" = node ]; then
    for b in "${BINS[@]}"; do
      say "trying $b from dl.k8s.io"
      fetch "https://dl.k8s.io/release/v${K8S_VERSION}/bin/${OS}/${ARCH}/$b" "$TMP/$b" || { say "download not reachable"; return 1; }
    done
    for b in "${BINS[@]}"; do install -m 0755 "$TMP/$b" "$DEST/$b"; done
    return 0
  fi
  say "trying the envtest download for v${K8S_VERSION} (${OS}/${ARCH})"
  local url="https://github.com/kubernetes-sigs/controller-tools/releases/download/envtest-v${K8S_VERSION}/envtest-v${K8S_VERSION}-${OS}-${ARCH}.tar.gz"
  fetch "$url" "$TMP/envtest.tgz" || { say "download not reachable (${url})"; return 1; }
  tar -xzf "$TMP/envtest.tgz" -C "$TMP"
  for b in kube-apiserver etcd kubectl; do
    install -m 0755 "$TMP/controller-tools/envtest/$b" "$DEST/$b"
  done
  say "trying kube-controller-manager from dl.k8s.io"
  fetch "https://dl.k8s.io/release/v${K8S_VERSION}/bin/${OS}/${ARCH}/kube-controller-manager" "$TMP/kcm" || return 1
  install -m 0755 "$TMP/kcm" "$DEST/kube-controller-manager"
}

build_from_proxy() {
  say "building from the Go module proxy (first run only; about 10-15 minutes on 2 cores)"
  local mod="$TMP/wrapper"
  mkdir -p "$mod"
  local gomod
  gomod="$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [ -f "$gomod" ] || { say "could not fetch k8s.io/kubernetes@v${K8S_VERSION} go.mod"; return 1; }
  local staging_minor="v0.${K8S_VERSION#*.}"
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
  local etcd_version
  etcd_version="$(sed -n 's#^[[:space:]]*go.etcd.io/etcd/server/v3 \(v[^ ]*\).*#\1#p' "$gomod" | head -1)"
  local mods=("k8s.io/kubernetes@v${K8S_VERSION}") pkgs=() b
  for b in "${BINS[@]}"; do
    case "$b" in
      # The etcd main package is go.etcd.io/etcd/server/v3, so go build names the binary "server".
      etcd) mods+=("go.etcd.io/etcd/server/v3@${etcd_version}"); pkgs+=(go.etcd.io/etcd/server/v3) ;;
      *) pkgs+=("k8s.io/kubernetes/cmd/$b") ;;
    esac
  done
  (
    cd "$mod"
    export GOFLAGS=-mod=mod CGO_ENABLED=0
    go get "${mods[@]}" >&2
    say "go build ${BINS[*]}"
    local vpkg=k8s.io/component-base/version
    local minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
    go build -trimpath -o "$TMP/out/" \
      -ldflags="-s -w -X ${vpkg}.gitVersion=v${K8S_VERSION} -X ${vpkg}.gitMajor=${K8S_VERSION%%.*} -X ${vpkg}.gitMinor=${minor} -X ${vpkg}.gitTreeState=clean" \
      "${pkgs[@]}" >&2
  )
  for b in "${BINS[@]}"; do
    if [ "$b" = etcd ]; then install -m 0755 "$TMP/out/server" "$DEST/etcd"; else install -m 0755 "$TMP/out/$b" "$DEST/$b"; fi
  done
}

start=$(date +%s)
if ! try_download "${1:-}"; then
  build_from_proxy
fi
complete || { say "binaries incomplete in $DEST"; exit 1; }
say "ready in $(( $(date +%s) - start ))s: $DEST"
echo "$DEST"
