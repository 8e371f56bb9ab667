#!/usr/bin/env bash
# Builds, signs and publishes a release (`make release`; docs/releasing.md):
#
#   1. images of the operator and the reference SCIM server for linux/amd64 and linux/arm64, one
#      OCI image index per image, pushed as REGISTRY/scim-operator:VERSION and
#      REGISTRY/scim-server:VERSION;
#   2. the Helm chart with version and appVersion from VERSION (a copy: the committed Chart.yaml
#      is left alone), pushed to oci://REGISTRY/charts;
#   3. kubectl-scim archives for linux, darwin and windows on amd64 and arm64 (LICENSE inside) and
#      the krew manifest dist/krew/scim.yaml, checked by krew's own validator;
#   4. a CycloneDX SBOM per binary (the images' binaries and the plugin's): NAME_VERSION_OS_ARCH.cdx.json;
#   5. dist/SHA256SUMS over every file of dist/, signed with cosign (SHA256SUMS.sig), and a cosign
#      signature on each image index and on the chart in the registry (key-based, no
#      transparency log: --tlog-upload=false); the public key is dist/cosign.pub.
#
# Env (the Makefile passes them):
#   VERSION       vX.Y.Z or vX.Y.Z-pre (required). A final vX.Y.Z must be the tag at HEAD of a
#                 clean tree and be signed with the key of the committed cosign.pub.
#   REGISTRY      where images and chart go (default ghcr.io/nhi-dev); log in first.
#   DIST          output directory (default dist; any other one must be empty or absent).
#   BUILD_FROM    host: compile here, images FROM scratch (Dockerfile targets offline and
#                 scim-server-offline), nothing pulled; registry (default): the Dockerfile's
#                 registry stages on GO_IMAGE/BASE_IMAGE, with docker buildx or podman.
#   COSIGN_KEY    path of the cosign private key (cosign generate-key-pair); COSIGN_PASSWORD its
#                 password (may be empty, but must be set). Or a KMS URI cosign understands
#                 (awskms://, gcpkms://, azurekms://, hashivault://): no password then.
#   PLAIN_HTTP    1: the registry speaks plain HTTP (a local test registry).
#   CONTAINER_TOOL  for BUILD_FROM=registry: docker (buildx) or podman; default hack/podman.sh.
#   GO_IMAGE, BASE_IMAGE  base images of BUILD_FROM=registry (default: the Dockerfile's).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${VERSION:-}"
REGISTRY="${REGISTRY:-ghcr.io/nhi-dev}"
REGISTRY="${REGISTRY%/}"
DIST="${DIST:-dist}"
BUILD_FROM="${BUILD_FROM:-registry}"
PLAIN_HTTP="${PLAIN_HTTP:-}"
COSIGN_KEY="${COSIGN_KEY:-}"
CONTAINER_TOOL="${CONTAINER_TOOL:-hack/podman.sh}"
GITHUB_REPO=nhi-dev/scim-operator
IMAGE_PLATFORMS=(linux/amd64 linux/arm64)
PLUGIN_PLATFORMS=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64)
CACHE="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"

say() { echo "release: $*" >&2; }
die() { echo "release: error: $*" >&2; exit 1; }
step() { echo "==> [${SECONDS}s] $*" >&2; }
run() { echo "+ $*" >&2; "$@"; }

# --- 0. what was asked, and what is needed -------------------------------------------------
semver='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$'
[ -n "$VERSION" ] || die "VERSION is required: make release VERSION=v0.1.0 (docs/releasing.md)"
[[ "$VERSION" =~ $semver ]] || die "VERSION=$VERSION is not vMAJOR.MINOR.PATCH[-PRERELEASE] (e.g. v0.1.0 or v0.2.0-rc.1)"
CHART_VERSION="${VERSION#v}"
final=""
[[ "$VERSION" == *-* ]] || final=1
[[ "$BUILD_FROM" == host || "$BUILD_FROM" == registry ]] || die "BUILD_FROM=$BUILD_FROM: host or registry"
[ -n "$COSIGN_KEY" ] || die "COSIGN_KEY is required: the path of the cosign private key (docs/releasing.md, Keys)"
if [[ "$COSIGN_KEY" != *://* ]]; then
  [ -r "$COSIGN_KEY" ] || die "COSIGN_KEY=$COSIGN_KEY: no such readable file"
  [ -n "${COSIGN_PASSWORD+set}" ] || die "COSIGN_PASSWORD must be set (to the key's password; empty if it has none)"
  export COSIGN_PASSWORD
fi
for c in go:golang git:git sha256sum:coreutils tar:tar gzip:gzip zip:zip flock:util-linux; do
  command -v "${c%%:*}" >/dev/null || die "${c%%:*} is needed (Debian: apt-get install ${c#*:})"
done

if [ "$DIST" = dist ]; then
  rm -rf dist
elif [ -e "$DIST" ] && [ -n "$(ls -A "$DIST")" ]; then
  die "DIST=$DIST is not empty: remove it or name another directory"
fi
mkdir -p "$DIST"
DIST="$(cd "$DIST" && pwd)"

step "tools (hack/tool.sh: built once from the Go module proxy, cached under $CACHE/tools)"
COSIGN="$(hack/tool.sh cosign)"
CYCLONEDX="$(hack/tool.sh cyclonedx-gomod)"
VALIDATE_KREW="$(hack/tool.sh validate-krew-manifest)"
HELM="$(hack/tool.sh helm)"

step "key: the public key of COSIGN_KEY is $DIST/cosign.pub"
"$COSIGN" public-key --key "$COSIGN_KEY" >"$DIST/cosign.pub" || die "cosign could not read COSIGN_KEY=$COSIGN_KEY with COSIGN_PASSWORD"

if [ -n "$final" ]; then
  step "a final release: clean tree, tag $VERSION at HEAD, signed with the committed cosign.pub"
  [ -z "$(git status --porcelain --untracked-files=no)" ] || die "the working tree has uncommitted changes: commit or stash them"
  git tag --points-at HEAD | grep -qx "$VERSION" || die "HEAD is not tagged $VERSION: git tag -a $VERSION -m $VERSION (docs/releasing.md)"
  [ -f cosign.pub ] || die "no cosign.pub committed: commit the release key's public key as cosign.pub first (docs/releasing.md, Keys)"
  cmp -s cosign.pub "$DIST/cosign.pub" || die "COSIGN_KEY is not the key of the committed cosign.pub"
  committed="$(sed -n 's/^version: *//p' charts/scim-operator/Chart.yaml)"
  [ "$committed" = "$CHART_VERSION" ] || say "warning: charts/scim-operator/Chart.yaml says version $committed; the release publishes the chart as $CHART_VERSION"
else
  say "pre-release $VERSION: not checked against a tag, a clean tree or the committed cosign.pub"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/scim-operator-release.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
EPOCH="$(git log -1 --format=%ct)"

registry_flags=() helm_flags=() cosign_flags=(--tlog-upload=false --yes)
verify_flags=(--insecure-ignore-tlog=true)
if [ -n "$PLAIN_HTTP" ]; then
  registry_flags=(--tls-verify=false)
  helm_flags=(--plain-http)
  cosign_flags+=(--allow-insecure-registry --allow-http-registry)
  verify_flags+=(--allow-insecure-registry --allow-http-registry)
fi

# go build with the release flags; the output lives under $CACHE/release-bin, so a rebuild of the
# same sources and version only checks that the binary is up to date.
BIN="$CACHE/release-bin"
mkdir -p "$BIN"
exec 8>"$BIN/.lock"
flock 8
gobuild() { # os arch out package [version stamp]
  local ldflags="-s -w"
  [ -z "${5:-}" ] || ldflags="$ldflags -X main.version=$5"
  run env CGO_ENABLED=0 GOOS="$1" GOARCH="$2" go build -trimpath -ldflags "$ldflags" -o "$3" "$4"
}
sbom() { # os arch binary out (GOOS/GOARCH: cyclonedx-gomod names the platform in the purls after them)
  run env GOOS="$1" GOARCH="$2" "$CYCLONEDX" bin -json -version "$VERSION" -output "$4" "$3"
}

# --- 1. images -----------------------------------------------------------------------------
declare -A DIGEST
images_host() {
  export PODMAN_ROOT="$WORK/podman"
  local p arch ctx img target
  for p in "${IMAGE_PLATFORMS[@]}"; do
    arch="${p#linux/}"
    ctx="$BIN/image-linux-$arch"
    step "image binaries for $p: GOARCH=$arch hack/image-context.sh $ctx/bin/image"
    run env GOARCH="$arch" VERSION="$VERSION" hack/image-context.sh "$ctx/bin/image"
    sbom linux "$arch" "$ctx/bin/image/manager" "$DIST/scim-operator_${VERSION}_linux_${arch}.cdx.json"
    sbom linux "$arch" "$ctx/bin/image/scimserver" "$DIST/scim-server_${VERSION}_linux_${arch}.cdx.json"
    for img in scim-operator scim-server; do
      target=offline
      [ "$img" = scim-operator ] || target=scim-server-offline
      step "image $img for $p (--target $target, FROM scratch: nothing pulled, nothing run)"
      run hack/podman.sh build --quiet --platform "$p" --target "$target" --timestamp "$EPOCH" \
        --label org.opencontainers.image.version="$VERSION" \
        --label org.opencontainers.image.source="https://github.com/$GITHUB_REPO" \
        --label org.opencontainers.image.licenses=Apache-2.0 \
        --manifest "localhost/$img:$VERSION" -f Dockerfile "$ctx" >/dev/null
    done
  done
  for img in scim-operator scim-server; do
    step "push the image index $REGISTRY/$img:$VERSION"
    run hack/podman.sh manifest push --quiet --all --format oci "${registry_flags[@]}" \
      --digestfile "$WORK/$img.digest" "localhost/$img:$VERSION" "docker://$REGISTRY/$img:$VERSION"
    DIGEST[$img]="$(cat "$WORK/$img.digest")"
  done
}

images_registry() {
  local platforms img target
  platforms="$(IFS=,; echo "${IMAGE_PLATFORMS[*]}")"
  local args=(--build-arg "VERSION=$VERSION")
  [ -z "${GO_IMAGE:-}" ] || args+=(--build-arg "GO_IMAGE=$GO_IMAGE")
  [ -z "${BASE_IMAGE:-}" ] || args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
  for img in scim-operator scim-server; do
    target=()
    [ "$img" = scim-operator ] || target=(--target scim-server)
    step "image index $REGISTRY/$img:$VERSION for $platforms from the registry stages"
    if [[ "$CONTAINER_TOOL" == docker ]]; then
      run docker buildx build --platform "$platforms" "${target[@]}" "${args[@]}" \
        --label org.opencontainers.image.version="$VERSION" --provenance=false \
        --tag "$REGISTRY/$img:$VERSION" --metadata-file "$WORK/$img.json" --push .
      DIGEST[$img]="$(sed -n 's/.*"containerimage.digest": *"\(sha256:[0-9a-f]*\)".*/\1/p' "$WORK/$img.json")"
    else
      "$CONTAINER_TOOL" manifest rm "localhost/$img:$VERSION" >/dev/null 2>&1 || true # a list left by an earlier run
      run "$CONTAINER_TOOL" build --platform "$platforms" "${target[@]}" "${args[@]}" \
        --label org.opencontainers.image.version="$VERSION" --manifest "localhost/$img:$VERSION" .
      run "$CONTAINER_TOOL" manifest push --all --format oci "${registry_flags[@]}" \
        --digestfile "$WORK/$img.digest" "localhost/$img:$VERSION" "docker://$REGISTRY/$img:$VERSION"
      DIGEST[$img]="$(cat "$WORK/$img.digest")"
    fi
  done
  # The SBOMs describe the binaries in the pushed images: copied out of each platform's image.
  local p arch bin id out pull_flags=()
  [[ "$CONTAINER_TOOL" == docker ]] || pull_flags=("${registry_flags[@]}")
  for p in "${IMAGE_PLATFORMS[@]}"; do
    arch="${p#linux/}"
    for img in scim-operator scim-server; do
      bin=/manager
      [ "$img" = scim-operator ] || bin=/scimserver
      out="$WORK/registry-linux-$arch$bin"
      mkdir -p "$WORK/registry-linux-$arch"
      id="$(run "$CONTAINER_TOOL" create "${pull_flags[@]}" --platform "$p" "$REGISTRY/$img@${DIGEST[$img]}")"
      run "$CONTAINER_TOOL" cp "$id:$bin" "$out"
      run "$CONTAINER_TOOL" rm "$id" >/dev/null
      chmod 0755 "$out"
      sbom linux "$arch" "$out" "$DIST/${img}_${VERSION}_linux_${arch}.cdx.json"
    done
  done
}

"images_$BUILD_FROM"
for img in scim-operator scim-server; do
  [[ "${DIGEST[$img]}" =~ ^sha256:[0-9a-f]{64}$ ]] || die "no digest for $img (got '${DIGEST[$img]}')"
  echo "$REGISTRY/$img:$VERSION@${DIGEST[$img]}" >>"$DIST/digests.txt"
done

# --- 2. the chart ----------------------------------------------------------------------------
step "chart $CHART_VERSION (appVersion $VERSION; images from $REGISTRY) -> oci://$REGISTRY/charts"
mkdir -p "$WORK/chart"
cp -R charts/scim-operator "$WORK/chart/scim-operator"
# The chart's default images are ghcr.io/nhi-dev/...: point them at REGISTRY (a no-op for it).
sed -i "s|ghcr.io/nhi-dev/|$REGISTRY/|g" "$WORK/chart/scim-operator/values.yaml"
run "$HELM" package "$WORK/chart/scim-operator" --version "$CHART_VERSION" --app-version "$VERSION" -d "$DIST" >/dev/null
CHART_TGZ="$DIST/scim-operator-$CHART_VERSION.tgz"
[ -f "$CHART_TGZ" ] || die "helm package wrote no $CHART_TGZ"
run "$HELM" push "$CHART_TGZ" "oci://$REGISTRY/charts" "${helm_flags[@]}" >"$WORK/helm-push.log" 2>&1 || { cat "$WORK/helm-push.log" >&2; die "helm push failed"; }
DIGEST[chart]="$(sed -n 's/^Digest: *\(sha256:[0-9a-f]*\).*/\1/p' "$WORK/helm-push.log")"
[[ "${DIGEST[chart]}" =~ ^sha256:[0-9a-f]{64}$ ]] || { cat "$WORK/helm-push.log" >&2; die "helm push printed no digest"; }
echo "$REGISTRY/charts/scim-operator:$CHART_VERSION@${DIGEST[chart]}" >>"$DIST/digests.txt"

# --- 3. kubectl-scim and its krew manifest ---------------------------------------------------
step "kubectl-scim for ${PLUGIN_PLATFORMS[*]}"
krew_platforms=""
for p in "${PLUGIN_PLATFORMS[@]}"; do
  os="${p%/*}" arch="${p#*/}"
  exe=kubectl-scim
  [ "$os" != windows ] || exe=kubectl-scim.exe
  dir="$BIN/plugin-$os-$arch"
  gobuild "$os" "$arch" "$dir/$exe" ./cmd/kubectl-scim
  sbom "$os" "$arch" "$dir/$exe" "$DIST/kubectl-scim_${VERSION}_${os}_${arch}.cdx.json"
  stage="$WORK/plugin-$os-$arch"
  mkdir -p "$stage"
  cp "$dir/$exe" LICENSE "$stage/"
  touch -d "@$EPOCH" "$stage/$exe" "$stage/LICENSE"
  if [ "$os" = windows ]; then
    archive="kubectl-scim_${VERSION}_${os}_${arch}.zip"
    (cd "$stage" && run zip -q -X "$DIST/$archive" "$exe" LICENSE)
  else
    archive="kubectl-scim_${VERSION}_${os}_${arch}.tar.gz"
    run tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" -C "$stage" -cf - "$exe" LICENSE \
      | gzip -n >"$DIST/$archive"
  fi
  sum="$(sha256sum "$DIST/$archive" | cut -d' ' -f1)"
  krew_platforms+="  - selector:
      matchLabels:
        os: $os
        arch: $arch
    uri: https://github.com/$GITHUB_REPO/releases/download/$VERSION/$archive
    sha256: $sum
    bin: $exe
    files:
      - from: $exe
        to: .
      - from: LICENSE
        to: .
"
done

step "krew manifest $DIST/krew/scim.yaml"
mkdir -p "$DIST/krew"
cat >"$DIST/krew/scim.yaml" <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: scim
spec:
  version: $VERSION
  homepage: https://github.com/$GITHUB_REPO
  shortDescription: Inventory, explain, review and revoke non-human identities of scim-operator
  description: |
    kubectl scim is the kubectl plugin of scim-operator, which gives every non-human identity
    (a service account, an AI agent, a pipeline's API user) a declared, owned, expiring account
    in the applications that speak SCIM 2.0.
      inventory    every ServiceIdentity with owner, targets, account state, expiry, review due
      why NAME     why an identity is in its state: conditions, targets, Events
      review NAME  record an access review (attestation) of an identity
      revoke NAME  the incident kill switch: suspend the identity's accounts on every target and
                   wait until every target shows them off
  platforms:
$krew_platforms
YAML
run "$VALIDATE_KREW" -manifest "$DIST/krew/scim.yaml" -skip-install 2>"$WORK/krew.log" \
  || { cat "$WORK/krew.log" >&2; die "krew's validator refused $DIST/krew/scim.yaml"; }

# --- 4. checksums and signatures -------------------------------------------------------------
step "checksums: $DIST/SHA256SUMS"
(cd "$DIST" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs sha256sum) >"$WORK/SHA256SUMS"
mv "$WORK/SHA256SUMS" "$DIST/SHA256SUMS"

step "signatures: cosign (key $COSIGN_KEY, no transparency log)"
run "$COSIGN" sign-blob --key "$COSIGN_KEY" --tlog-upload=false --yes \
  --output-signature "$DIST/SHA256SUMS.sig" "$DIST/SHA256SUMS" 2>"$WORK/cosign.log" || { cat "$WORK/cosign.log" >&2; die "cosign sign-blob failed"; }
for ref in "$REGISTRY/scim-operator@${DIGEST[scim-operator]}" "$REGISTRY/scim-server@${DIGEST[scim-server]}" \
  "$REGISTRY/charts/scim-operator@${DIGEST[chart]}"; do
  run "$COSIGN" sign --key "$COSIGN_KEY" "${cosign_flags[@]}" "$ref" 2>"$WORK/cosign.log" || { cat "$WORK/cosign.log" >&2; die "cosign sign $ref failed"; }
  run "$COSIGN" verify --key "$DIST/cosign.pub" "${verify_flags[@]}" "$ref" >/dev/null 2>"$WORK/cosign.log" \
    || { cat "$WORK/cosign.log" >&2; die "the signature just made on $ref does not verify"; }
done

step "release $VERSION done"
cat "$DIST/digests.txt"
echo "artifacts in $DIST:"
(cd "$DIST" && find . -type f -printf '  %P\n' | LC_ALL=C sort)
if [ -n "$final" ]; then
  echo "next: upload the files of $DIST to the GitHub release $VERSION (docs/releasing.md)"
fi
