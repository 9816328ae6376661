# Moonlander: `make demo` builds what the demo needs and runs it; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup envtest demo demo-crossplane test unit e2e lint typecheck fmt manifests image bench clean dev-clusters

$(STAMP): pyproject.toml devtools/pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e . -e devtools
	touch $(STAMP)

setup: $(STAMP) ## Python environment, control-plane binaries and the real consumers
	bash hack/envtest/build.sh >/dev/null
	bash hack/consumers/build.sh >/dev/null

envtest: ## build (or find cached) kube-apiserver, etcd, kubectl, kube-controller-manager, kubelet, helm
	bash hack/envtest/build.sh

# What the demo runs: two local clusters (kube-apiserver, etcd) and kubectl. The node
# binaries, helm and the real consumers are left to setup, test, e2e and demo-crossplane.
DEMO_BINARIES := kube-apiserver etcd kubectl

demo: $(STAMP) ## the seed's Pattern A end to end on local clusters (builds only what it uses)
	assets=$$(bash hack/envtest/build.sh $(DEMO_BINARIES)) && \
	  KUBEBUILDER_ASSETS=$$assets $(BIN)/moonlander-dev demo --dir .demo

demo-crossplane: setup ## Patterns A and B with Crossplane v2 in harvey composing in talos-root and a vcluster
	$(BIN)/moonlander-dev demo --crossplane --dir .demo/crossplane

dev-clusters: setup ## parent, child-a, child-b in the foreground (Ctrl-C stops them)
	$(BIN)/moonlander-dev dev-clusters up --dir .dev-clusters

lint: $(STAMP)
	$(BIN)/ruff check src devtools/src tests bench
	$(BIN)/ruff format --check src devtools/src tests bench
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format src devtools/src tests bench
	$(BIN)/ruff check --fix src devtools/src tests bench

manifests: $(STAMP) ## the CRDs in config/crd/bases, generated from src/moonlander/api
	$(BIN)/python -m moonlander.api.crd config/crd/bases

.PHONY: chart-docs
chart-docs: ## charts/moonlander/README.md from values.yaml and README.md.gotmpl (helm-docs v1.14.2, hack/chart)
	"$$(bash hack/chart/build.sh helm-docs | cut -d' ' -f2)/helm-docs" --chart-search-root charts/moonlander

unit: $(STAMP)
	$(BIN)/pytest tests/unit

e2e: setup
	$(BIN)/pytest tests/e2e

test: setup lint typecheck ## lint, types, unit and end-to-end tests on real API servers
	$(BIN)/pytest

image: ## the Dockerfile with buildah for amd64 and arm64, as one OCI archive in _out/image (no registry)
	bash hack/image/build.sh

.PHONY: release
release: ## REGISTRY=host[:port][/prefix] VERSION=x.y.z: image index and chart to an OCI registry, signed with COSIGN_KEY, SBOM attached (docs/release.md)
	REGISTRY="$(REGISTRY)" VERSION="$(VERSION)" bash hack/release/release.sh

bench: setup ## the benchmark of docs/performance.md (about 20 minutes; the shards case is separate)
	$(BIN)/python bench/run.py --out _out/bench.json

.PHONY: soak
soak: setup ## N Landings (2000) under DURATION s (1200) of churn and faults, judged by an independent checker; SEED= replays (bench/soak)
	$(BIN)/python -m bench.soak.run --landings $(or $(N),2000) --duration $(or $(DURATION),1200) $(if $(SEED),--seed $(SEED)) --out _out/soak.json $(SOAK_FLAGS)

clean:
	rm -rf $(VENV) .demo .dev-clusters build dist src/*.egg-info devtools/build devtools/src/*.egg-info
