# backupd — see README.md. Tools the targets need are installed by
# scripts/install-tools.sh into $(TOOLS) (outside the clone) when missing.
SHELL := /bin/bash
TOOLS ?= $(or $(BACKUPD_TOOLS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/backupd/bin)
export BACKUPD_TOOLS := $(TOOLS)
export PATH := $(TOOLS):$(PATH)
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)


.PHONY: all build run run-minio demo alerts dashboards crds kube-test e2e test test-short lint fuzz bench bench-s3 bench-faults clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/backupd ./backupd

# The daemon on the embedded default config (deploy/local/backupd.yaml) with a
# simulated live mesh volume set under ./var (bench/cmd/simulate keeps it
# changing); metrics on 127.0.0.1:9847.
run: build
	$(GO) build -o bin/simulate ./bench/cmd/simulate
	./scripts/run-local.sh

# The same with the repository in a bucket of a local MinIO (installed by
# scripts/install-tools.sh, data under ./var/minio): deploy/local/backupd-minio.yaml.
run-minio: build
	$(GO) build -o bin/simulate ./bench/cmd/simulate
	./scripts/run-minio.sh

# The command-line walk-through: backup, change, backup, check, restore, diff.
demo: build
	./scripts/demo.sh

# Every test, including crash/fault scenarios and the fuzz seed corpora.
test:
	./scripts/install-tools.sh prometheus alertmanager minio etcd kube-apiserver helm controller-gen restic
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	GO=$(GO) ./scripts/test-unprivileged.sh

# Regenerate the SLO rule files from alerts/alerts.go (and the Helm chart's
# copy, deploy/helm/backupd/files/backupd.rules.yml).
alerts:
	$(GO) run ./alerts/cmd/genrules
	./scripts/install-tools.sh prometheus
	promtool check rules alerts/backupd.rules.yml
	promtool test rules alerts/tests/*.yml

# Regenerate the Grafana dashboards, their ConfigMaps and the Helm chart's
# copies (deploy/helm/backupd/files/dashboards/).
dashboards:
	$(GO) run ./dashboards/cmd/gendashboards

# Regenerate the CRDs (deploy/helm/backupd/crds/) and the deepcopy code of
# the custom resources from backupd/kube/api/v1alpha1.
crds:
	./scripts/install-tools.sh controller-gen
	controller-gen object paths=./backupd/kube/api/...
	controller-gen crd:crdVersions=v1 paths=./backupd/kube/api/... output:crd:artifacts:config=deploy/helm/backupd/crds

# The Kubernetes tests alone, against a real etcd and kube-apiserver on
# 127.0.0.1: the CRDs' validation, the Helm chart (lint, template, every
# rendered object applied server-side) and the node agents with MinIO. Also
# in make test.
KUBE_PKGS := ./backupd/kube/... ./deploy/helm/...
kube-test:
	./scripts/install-tools.sh etcd kube-apiserver helm controller-gen minio prometheus
	$(GO) test -count=1 -timeout 20m -v $(KUBE_PKGS)

# The end-to-end SLO test alone: backupd, Prometheus with the rules,
# Alertmanager and a webhook receiver, with faults injected (also in make test).
e2e:
	./scripts/install-tools.sh prometheus alertmanager
	$(GO) test -count=1 -run 'TestE2E' -v ./backupd

test-short:
	$(GO) test -short ./...

lint:
	./scripts/install-tools.sh staticcheck
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	staticcheck ./...

# Run each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for t in FuzzDecodeTrailer FuzzDecodeIndexFile FuzzDecodeConfig FuzzParsePackTail FuzzDecodeDamageRecord FuzzDecodeKeyFile; do \
		$(GO) test ./backupd/repository -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done
	@for t in FuzzDecodeTree FuzzDecodeSnapshot; do \
		$(GO) test ./backupd/snapshot -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done

# Whole-process benchmark against restic and borg (and kopia if BENCH_KOPIA=1).
bench: build
	./scripts/install-tools.sh restic borg $(if $(BENCH_KOPIA),kopia)
	$(GO) run ./bench/cmd/bench $(BENCH_FLAGS)

# The same against S3: backupd, restic and kopia, each in a bucket of a MinIO
# the bench starts, every request counted (borg has no S3 backend).
bench-s3: build
	./scripts/install-tools.sh restic kopia minio
	$(GO) run ./bench/cmd/bench -s3 $(BENCH_FLAGS)

# The fault-tolerance benchmark: every scenario (crashes, bit rot, damaged
# repositories, ...) on every tool and workload, the quick profile by default
# (BENCH_FLAGS="-profile full" for the full one); results in
# bench/results/faults.json (bench/README.md, "Fault benchmark").
bench-faults: build
	./scripts/install-tools.sh restic borg kopia
	$(GO) run ./bench/cmd/bench -faults $(BENCH_FLAGS)

clean:
	rm -rf bin var
