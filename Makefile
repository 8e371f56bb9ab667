# scim-operator — run `make help` for the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

CONTROLLER_GEN ?= go tool controller-gen
GOLANGCI_LINT_VERSION ?= v2.15.0

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate the CRDs and the RBAC ClusterRole from the markers (and copy the CRDs into the chart).
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases
	@hack/chart-sync.sh

.PHONY: generate
generate: ## Generate the DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

CRD_REF_DOCS_VERSION ?= v0.3.0
.PHONY: docs
docs: ## Write the references of docs/reference from the code: the API (crd-ref-docs), flags, metrics, annotations, conditions.
	@mkdir -p bin docs/reference
	@env -u POD_NAMESPACE go run ./cmd --help > bin/manager-help.txt 2>&1
	@go run ./hack/refdocs -out docs/reference -help-file bin/manager-help.txt
	@go run github.com/elastic/crd-ref-docs@$(CRD_REF_DOCS_VERSION) --log-level=ERROR --source-path=api \
		--config=hack/crd-ref-docs.yaml --renderer=markdown --output-path=docs/reference/api.md

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: verify
verify: manifests generate docs ## Fail when generated code, manifests, references, formatting or go.mod are stale, or a Markdown link is broken.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@go mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	@git diff --exit-code -- api config charts docs/reference || { echo "generated files are stale: run make manifests generate docs and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- api config charts docs/reference)" || { echo "untracked generated files:"; git status --porcelain -- api config charts docs/reference; exit 1; }
	@go run ./hack/mdlinks $$(git ls-files '*.md') || { echo "broken Markdown links (a link must stay inside the repository and name a file and heading that exist)"; exit 1; }
	@if [ -n "$(REQUIRE_PINNED_IMAGES)" ]; then hack/pin-images.sh --check; fi
	@echo "verify: generated code and manifests are fresh"

.PHONY: envtest-bins
envtest-bins: ## Provide kube-apiserver, etcd, kube-controller-manager, kubectl (download, else build; cached).
	@hack/envtest-bins.sh

.PHONY: test
test: verify vet ## Verify, then run every test against a real kube-apiserver and the reference SCIM server.
	@hack/helm.sh >/dev/null # test/chart needs helm: built once (about 6 minutes cold), then cached
	@# The end-to-end suites and the release test share no process with the others (their own
	@# control planes, operators, SCIM servers, registry): they run beside them, and their
	@# summaries are printed at the end. go test of the other packages runs beside the
	@# controllers' envtest suite, which runs on three Ginkgo processes (its restart specs are Serial; the suite waits on its API servers more than on the two cores).
	@assets="$$(hack/envtest-bins.sh)"; \
	$(MAKE) --no-print-directory test-e2e > test-e2e.out 2>&1 & e2e=$$!; \
	$(MAKE) --no-print-directory test-release > test-release.out 2>&1 & release=$$!; \
	echo "go test, and the controller suite on 3 Ginkgo processes, beside the e2e suite (control plane from $$assets; logs: test.log, test-controller.log, test-e2e.log)"; \
	failed=""; \
	KUBEBUILDER_ASSETS="$$assets" go test $$(go list ./... | grep -v '/internal/controller$$') -count=1 -v -coverprofile cover.out > test.log 2>&1 & unit=$$!; \
	KUBEBUILDER_ASSETS="$$assets" go run github.com/onsi/ginkgo/v2/ginkgo -p --procs=3 --timeout=20m --cover --coverprofile=cover-controller.out \
		--output-dir=. ./internal/controller > test-controller.log 2>&1 || { cat test-controller.log; failed="$$failed controller suite"; }; \
	wait $$unit || { cat test.log; failed="go test $$failed"; }; \
	if [ -z "$$failed" ]; then \
		grep -E '^(ok|FAIL)\s|Ran [0-9]+ of [0-9]+ Specs|[0-9]+ Passed \|' test.log test-controller.log; \
		tail -n +2 cover-controller.out >> cover.out; go tool cover -func cover.out | tail -1; \
		$(MAKE) --no-print-directory test-alerts && $(MAKE) --no-print-directory fuzz || failed="test-alerts or fuzz"; \
	fi; \
	wait $$e2e || failed="$$failed test-e2e"; \
	cat test-e2e.out; \
	wait $$release || failed="$$failed test-release"; cat test-release.out; \
	if [ -n "$$failed" ]; then echo "make test: FAILED ($$failed)"; exit 1; fi

.PHONY: test-alerts
test-alerts: ## promtool: check the alert rules and run their unit tests (config/prometheus/alerts_test.yaml).
	@promtool="$$(hack/promtool.sh)"; \
	"$$promtool" check rules config/prometheus/alerts.yaml > promtool.log 2>&1 && \
	(cd config/prometheus && "$$promtool" test rules --junit=../../promtool-junit.xml alerts_test.yaml) >> promtool.log 2>&1 || { cat promtool.log; exit 1; }; \
	echo "promtool check rules: $$(grep -Eo '[0-9]+ rules found' promtool.log)"; \
	echo "promtool test rules: $$(grep -Eo 'tests="[0-9]+" failures="[0-9]+"' promtool-junit.xml) ($$(grep -c 'alertname:' config/prometheus/alerts_test.yaml) alert checks, $$(grep -c -- '- expr:' config/prometheus/alerts_test.yaml) expression checks): $$(grep -Eo 'SUCCESS|FAILED' promtool.log | tail -1)"
	@hack/prometheusrule.sh | diff -u config/prometheus/prometheusrule.yaml - > /dev/null || { echo "config/prometheus/prometheusrule.yaml is stale: run make prometheus-rules"; exit 1; }
	@test "$$(grep -c -- '- alert:' config/prometheus/alerts.yaml)" = "$$(grep -c 'runbook_url: .*docs/runbooks.md#' config/prometheus/alerts.yaml)" || { echo "an alert has no runbook_url"; exit 1; }
	@for a in $$(grep -o 'runbooks.md#[a-z]*' config/prometheus/alerts.yaml | cut -d'#' -f2); do \
		grep -qix "## $$a" docs/runbooks.md || { echo "docs/runbooks.md has no section for #$$a"; exit 1; }; done

.PHONY: prometheus-rules
prometheus-rules: ## Write config/prometheus/prometheusrule.yaml (a PrometheusRule) from config/prometheus/alerts.yaml.
	hack/prometheusrule.sh > config/prometheus/prometheusrule.yaml

.PHONY: argocd-cm
argocd-cm: ## Write the Argo CD health checks (config/argocd/health) as an argocd-cm patch and as values of the argo-cd chart.
	hack/argocd-cm.sh > config/argocd/argocd-cm-patch.yaml
	hack/argocd-cm.sh helm > charts/scim-operator/files/argocd-values.yaml

.PHONY: gitops-testdata
gitops-testdata: ## Record live objects in every state for the health-check replay tests (config/argocd/health/*/*/testdata).
	@assets="$$(hack/envtest-bins.sh)"; GITOPS_HEALTH_TESTDATA=1 KUBEBUILDER_ASSETS="$$assets" \
	go test ./internal/controller/ -run TestControllers -count=1 -ginkgo.focus 'GitOps health checks'

FUZZTIME ?= 30000x
.PHONY: fuzz
fuzz: ## Run each fuzz target of the SCIM client for FUZZTIME executions (seed corpus in internal/scim/testdata/fuzz; a count, not a duration: a -fuzztime deadline that lands while the engine minimizes a new interesting input fails the run with "context deadline exceeded").
	@for f in FuzzParseListResponse FuzzParseServiceProviderConfig FuzzParseResource FuzzFilter; do \
		go test ./internal/scim/ -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) > fuzz.log 2>&1 || { cat fuzz.log; exit 1; }; \
		echo "fuzz $$f: $$(grep -Eo 'execs: [0-9]+' fuzz.log | tail -1) ok"; \
	done

.PHONY: test-e2e
test-e2e: ## End-to-end suites: real control plane with garbage collection, operator binary and image, kubectl; beside it, the chart's Pods on a real kubelet node of its own (the README's quick start, metrics Service, failover, apply -k).
	@assets="$$(hack/envtest-bins.sh)"; echo "go test -tags e2e ./test/e2e (full log in test-e2e.log)"; \
	KUBEBUILDER_ASSETS="$$assets" go test -tags e2e ./test/e2e/ ./test/quickstart/ -count=1 -v -timeout 20m > test-e2e.log 2>&1 || { cat test-e2e.log; echo "make test-e2e: FAILED"; exit 1; }
	@grep -E '^(ok|FAIL)\s|Ran [0-9]+ of [0-9]+ Specs|revocation latency:|operator killed|leader failover:|garbage collector picked|^container image:|e2e suite ran|^quick start:|^node:' test-e2e.log

.PHONY: chart-test
chart-test: ## Helm chart: lint, render, server-side dry-run on a local kube-apiserver, same CRDs/RBAC as config/default (make test runs it too).
	@assets="$$(hack/envtest-bins.sh)"; helm="$$(hack/helm.sh)"; \
	KUBEBUILDER_ASSETS="$$assets" HELM="$$helm" go test ./test/chart/ -count=1 -v

.PHONY: lint
lint: ## Run golangci-lint.
	go run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run ./...

##@ Build and run

.PHONY: build
build: ## Build the operator (bin/manager), the reference SCIM server (bin/scimserver) and the kubectl plugin (bin/kubectl-scim).
	go build -o bin/manager ./cmd
	go build -o bin/scimserver ./test/scimserver/cmd
	go build -o bin/kubectl-scim ./cmd/kubectl-scim

PLUGIN_DIR ?= $(HOME)/.local/bin
.PHONY: install-plugin
install-plugin: ## Build kubectl-scim stripped, as the release does, and copy it into PLUGIN_DIR (default ~/.local/bin, which must be on PATH): then `kubectl scim`.
	go build -trimpath -ldflags="-s -w" -o bin/kubectl-scim ./cmd/kubectl-scim
	install -D -m 0755 bin/kubectl-scim $(PLUGIN_DIR)/kubectl-scim

.PHONY: run
run: manifests generate ## Run the operator against the current kubeconfig (CRDs must be installed: make install).
	go run ./cmd --metrics-bind-address=127.0.0.1:8443 --health-probe-bind-address=127.0.0.1:8081

.PHONY: install
install: manifests ## Install the CRDs into the current kubeconfig's cluster.
	kubectl apply -k config/crd

DEPLOY ?= config/default
.PHONY: deploy
deploy: manifests ## Install the operator into the current kubeconfig's cluster (IMG=... runs that image; DEPLOY=config/no-admission-policy before Kubernetes 1.36).
ifneq ($(filter command line environment,$(origin IMG)),)
	hack/deploy-overlay.sh bin/deploy $(DEPLOY) $(IMG)
	kubectl apply -k bin/deploy
else
	kubectl apply -k $(DEPLOY)
endif

.PHONY: undeploy
undeploy: ## Remove what make deploy installed. Refuses while ServiceIdentities exist; REVOKE=1 deletes them first and waits until their accounts are revoked (docs/upgrade.md#uninstall).
	@n=$$(kubectl get serviceidentities -A --no-headers 2>/dev/null | wc -l); \
	if [ "$$n" -gt 0 ] && [ -z "$(REVOKE)" ]; then \
		echo "undeploy: $$n ServiceIdentities exist. Removing the operator first would leave their finalizers (and CRD deletion) stuck and their accounts active."; \
		echo "  make undeploy REVOKE=1   deletes every ServiceIdentity, waits until the operator has revoked their accounts, then uninstalls (remove the workloads' scim.nhi.dev/targets annotations first, or they make new identities)"; \
		echo "  to keep the accounts, see docs/upgrade.md#uninstall"; exit 1; fi; \
	if [ "$$n" -gt 0 ]; then \
		kubectl delete serviceidentities --all -A --wait=false && \
		kubectl wait serviceidentities --all -A --for=delete --timeout=$(or $(REVOKE_TIMEOUT),10m); fi
	kubectl delete scimtargets --all -A --ignore-not-found --timeout=5m
	kubectl delete clusterscimtargets --all --ignore-not-found --timeout=5m
	kubectl delete -k $(DEPLOY) --ignore-not-found

.PHONY: dev
dev: build ## Local control plane + reference SCIM server + operator + samples; Ctrl-C stops all.
	go build -o bin/dev ./hack/dev
	assets="$$(hack/envtest-bins.sh)"; KUBEBUILDER_ASSETS="$$assets" bin/dev $(DEV_ARGS)

##@ Container image

IMG ?= scim-operator:dev
# The reference SCIM server's image (the quick start and the chart's demo option run it).
SCIM_SERVER_IMG ?= scim-server:dev
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# docker when its daemon answers, else podman through hack/podman.sh (installed with apt-get when
# missing and root; vfs storage under ~/.cache/scim-operator/podman). CONTAINER_TOOL=podman uses
# your own podman setup.
CONTAINER_TOOL ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo hack/podman.sh)
# Base images of BUILD_FROM=registry; empty: the Dockerfile's ARG defaults. Pin by digest:
# GO_IMAGE=docker.io/library/golang:1.26@sha256:<digest> (make pin-images writes the digests into the Dockerfile).
GO_IMAGE ?=
BASE_IMAGE ?=
# registry: compile in GO_IMAGE (docker.io/library/golang:1.26), base BASE_IMAGE (distroless static:nonroot), pulled.
# host: compile on this host, base made of its CA certificates and a generated /etc/passwd; pulls
# nothing (the e2e suite, machines that reach no registry).
BUILD_FROM ?= registry

.PHONY: docker-build
# IMAGE_CONTEXT: the build context of BUILD_FROM=host (its binaries go to IMAGE_CONTEXT/bin/image);
# builds that may run at once (the e2e and quick-start suites) each name their own.
IMAGE_CONTEXT ?= .
docker-build: ## Build the operator image IMG and the reference SCIM server's SCIM_SERVER_IMG (BUILD_FROM=host: offline, from binaries built here; VERSION is stamped into --version).
ifeq ($(BUILD_FROM),host)
	VERSION=$(VERSION) hack/image-context.sh $(IMAGE_CONTEXT)/bin/image
	$(CONTAINER_TOOL) build -t $(IMG) --target offline -f Dockerfile $(IMAGE_CONTEXT)
	$(CONTAINER_TOOL) build -t $(SCIM_SERVER_IMG) --target scim-server-offline -f Dockerfile $(IMAGE_CONTEXT)
else
	$(CONTAINER_TOOL) build -t $(IMG) --build-arg VERSION=$(VERSION) \
		$(if $(GO_IMAGE),--build-arg GO_IMAGE=$(GO_IMAGE)) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) .
	$(CONTAINER_TOOL) build -t $(SCIM_SERVER_IMG) --target scim-server \
		$(if $(GO_IMAGE),--build-arg GO_IMAGE=$(GO_IMAGE)) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) .
endif

.PHONY: pin-images
pin-images: ## Pin the Dockerfile's base images by digest (asks the registry: crane, skopeo or podman).
	hack/pin-images.sh

.PHONY: docker-push
docker-push: ## Push the images IMG and SCIM_SERVER_IMG.
	$(CONTAINER_TOOL) push $(IMG)
	$(CONTAINER_TOOL) push $(SCIM_SERVER_IMG)

##@ Benchmarks

BENCH_ARGS ?=
.PHONY: bench
bench: build ## Every performance target of DESIGN.md section 6 next to its measured value and floor, one table (flags: BENCH_ARGS="-n 1000 -memory-n 10000 -out bench-results.json").
	assets="$$(hack/envtest-bins.sh)"; KUBEBUILDER_ASSETS="$$assets" go run ./test/bench $(BENCH_ARGS)

SCALE ?= 1000,10000,50000
.PHONY: bench-scale
bench-scale: build ## Per-identity cost (CPU, Kubernetes writes, SCIM requests, RSS) of provisioning, a sweep and revocation at each size of SCALE (default 1000,10000,50000; not part of make test).
	assets="$$(hack/envtest-bins.sh)"; KUBEBUILDER_ASSETS="$$assets" go run ./test/bench -scale $(SCALE) -hung-n 0 -memory-n 0 $(BENCH_ARGS)

.PHONY: dashboard-png
dashboard-png: ## Run the bench recording the operator's metrics (bench-series.json), then render docs/dashboard.png.
	$(MAKE) --no-print-directory bench BENCH_ARGS="$(BENCH_ARGS) -metrics-series $(CURDIR)/bench-series.json"
	$(MAKE) --no-print-directory dashboard-render

.PHONY: dashboard-render
dashboard-render: ## Render docs/dashboard.png from bench-series.json with the queries of config/grafana/scim-operator.json.
	go -C hack/dashboard run . -series $(CURDIR)/bench-series.json -dashboard $(CURDIR)/config/grafana/scim-operator.json -out $(CURDIR)/docs/dashboard.png

##@ Release

# Where make release pushes the images (REGISTRY/scim-operator, REGISTRY/scim-server) and the chart
# (oci://REGISTRY/charts/scim-operator); log in first (docker/podman login, helm registry login).
REGISTRY ?= ghcr.io/nhi-dev
DIST ?= dist
.PHONY: release
release: ## Build, sign and push a release: VERSION=vX.Y.Z COSIGN_KEY=path (+ COSIGN_PASSWORD), REGISTRY, DIST (dist), BUILD_FROM=host (offline): docs/releasing.md.
	@VERSION="$(if $(filter command line environment,$(origin VERSION)),$(VERSION))" REGISTRY="$(REGISTRY)" DIST="$(DIST)" \
	BUILD_FROM="$(BUILD_FROM)" CONTAINER_TOOL="$(CONTAINER_TOOL)" GO_IMAGE="$(GO_IMAGE)" BASE_IMAGE="$(BASE_IMAGE)" \
	PLAIN_HTTP="$(PLAIN_HTTP)" COSIGN_KEY="$(COSIGN_KEY)" hack/release.sh

.PHONY: test-release
test-release: ## Release into a local registry with a throwaway key, then verify it as users would (and that tampering fails).
	@echo "go test -tags release ./test/release (full log in test-release.log)"; \
	go test -tags release ./test/release/ -count=1 -v -timeout 30m > test-release.log 2>&1 || { cat test-release.log; echo "make test-release: FAILED"; exit 1; }
	@grep -E '^(ok|FAIL)\s|^release: ' test-release.log
