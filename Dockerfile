# Two images, built alike: the operator (/manager; the last stage, the default target) and the
# reference SCIM server (/scimserver; targets scim-server and scim-server-offline), which the quick
# start and the chart's demo option run in the cluster. Each is one static binary run as
# 65532:65532, CA certificates, no shell; nothing is written to the root filesystem, so each runs
# with readOnlyRootFilesystem.
#
# With a registry (users):  make docker-build IMG=registry.example.com/scim-operator:v0.1.0
#   compiles in GO_IMAGE and puts /manager on BASE_IMAGE (distroless static:nonroot: CA
#   certificates, /etc/passwd naming 65532 nonroot, tzdata). The last stage, the default target.
# Offline (the e2e suite, machines that reach no registry):  make docker-build IMG=... BUILD_FROM=host
#   hack/image-context.sh builds the binary on the host into bin/image/, with the host's CA
#   certificates and a generated /etc/passwd; `--target offline` then pulls nothing.
#
# Base images: pin by digest, NAME:TAG@sha256:<digest> (the tag stays for the reader, the digest
# decides), so a rebuild uses exactly the image reviewed. `make pin-images` (hack/pin-images.sh)
# asks the registry and writes the digests here; `make verify REQUIRE_PINNED_IMAGES=1` fails while
# one is missing (`hack/pin-images.sh --check` says whether they are pinned). Override per
# build: make docker-build GO_IMAGE=docker.io/library/golang:1.26@sha256:... BASE_IMAGE=...@sha256:...
# Names are written in full (registry/repository:tag): podman resolves no short names without an
# unqualified-search registry.
ARG GO_IMAGE=docker.io/library/golang:1.26
ARG BASE_IMAGE=gcr.io/distroless/static:nonroot

# Offline: what the operator needs of distroless static:nonroot, from the host: CA certificates,
# /etc/passwd and /etc/group naming 65532 nonroot.
FROM scratch AS host-base
COPY bin/image/etc/ /etc/

# Offline: the binaries hack/image-context.sh built on the host, same flags as below.
FROM host-base AS scim-server-offline
COPY bin/image/scimserver /scimserver
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/scimserver", "--addr=:8080"]

FROM host-base AS offline
COPY bin/image/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/
COPY test/scimserver/ test/scimserver/
COPY test/loopback/ test/loopback/
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/manager ./cmd && \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w" -o /out/scimserver ./test/scimserver/cmd

FROM ${BASE_IMAGE} AS scim-server
COPY --from=build /out/scimserver /scimserver
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/scimserver", "--addr=:8080"]

FROM ${BASE_IMAGE}
COPY --from=build /out/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
