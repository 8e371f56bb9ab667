#!/usr/bin/env bash
# Prepares the offline image builds (Dockerfile stages host-base, offline, scim-server-offline) in DIR
# (default bin/image): the static binaries of the operator and the reference SCIM server, the host's CA certificates and an
# /etc/passwd and /etc/group naming 65532 nonroot, as distroless static:nonroot has them.
#
# Usage: hack/image-context.sh [DIR]     Env: VERSION (stamped into --version), GOARCH (the binaries'
#        architecture, default the host's: GOARCH=arm64 for a linux/arm64 image; make release builds both)
# The binaries are left in DIR between runs, so go build relinks only when they are out of date.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-bin/image}"
VERSION="${VERSION:-dev}"

ca=""
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
  if [ -s "$f" ]; then ca="$f"; break; fi
done
if [ -z "$ca" ]; then
  echo "image-context.sh: no CA certificate bundle on this host (install ca-certificates)" >&2
  exit 1
fi

rm -rf "${DIR:?}/etc"
mkdir -p "$DIR/etc/ssl/certs"
CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o "$DIR/manager" ./cmd
CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w" -o "$DIR/scimserver" ./test/scimserver/cmd
cp "$ca" "$DIR/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$DIR/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$DIR/etc/group"
chmod 0644 "$DIR/etc/passwd" "$DIR/etc/group" "$DIR/etc/ssl/certs/ca-certificates.crt"
