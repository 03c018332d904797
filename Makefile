# vault-plugin-secrets-integrations: build, run, test.
SHELL := /bin/bash
PLUGIN  := vault-plugin-secrets-integrations
VERSION := v$(shell tr -d ' \n' < VERSION)
MODULE  := $(shell go list -m)
LDFLAGS := -s -w -X $(MODULE)/backend.Version=$(VERSION)

.PHONY: build build-race build-heapprof dev test unit lint fuzz e2e bench fmt vet vault tfprovider release clean

build: ## bin/vault-plugin-secrets-integrations
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/$(PLUGIN) ./cmd/$(PLUGIN)

build-race: ## bin-race/vault-plugin-secrets-integrations: the plugin built with -race (cgo) for the e2e run
	CGO_ENABLED=1 go build -race -trimpath -ldflags "-X $(MODULE)/backend.Version=$(VERSION)" -o bin-race/$(PLUGIN) ./cmd/$(PLUGIN)

build-heapprof: ## bin-heapprof/vault-plugin-secrets-integrations: the plugin with heap profiles on a signal (-tags heapprof; never a release build)
	CGO_ENABLED=0 go build -tags heapprof -trimpath -ldflags "-X $(MODULE)/backend.Version=$(VERSION)" -o bin-heapprof/$(PLUGIN) ./cmd/$(PLUGIN)

dev: build ## a real Vault dev server with the plugin mounted at integrations/
	@bash scripts/dev.sh

test: ## vet, lint, unit tests under -race, every benchmark once, every fuzz target (in every Go module), then end-to-end tests against a real Vault
	@bash scripts/test.sh

unit: ## vet, lint, unit tests, every benchmark once and fuzzing
	@bash scripts/test.sh unit

lint: ## golangci-lint (pinned, built once from the Go module proxy and cached) with .golangci.yml
	@bash scripts/test.sh lint

fuzz: ## every fuzz target for FUZZTIME (default 5s)
	@bash scripts/test.sh fuzz

e2e: build ## end-to-end tests only
	@bash scripts/test.sh e2e

bench: ## benchmarks with their figures
	@bash scripts/bench.sh

release: ## dist/: the plugin for every release platform, its SBOMs and SHA256SUMS (VERSION=x.y.z, default: the VERSION file)
	@bash scripts/release.sh $(if $(filter command line,$(origin VERSION)),$(VERSION))

fmt:
	gofmt -w $$(git ls-files '*.go') bootstrap/vault/main.go

vet: ## go vet in every Go module (the plugin, e2e/, bootstrap/devprovider), with and without the e2e tag
	@source scripts/lib.sh && for m in "$${GO_MODULES[@]}"; do (cd "$$m" && go vet ./... && go vet -tags e2e ./...) || exit 1; done

vault: ## build (or reuse) the Vault server binary
	@bash -c 'source scripts/lib.sh && vault_bin'

tfprovider: ## build (or reuse) the Terraform Vault provider
	@bash -c 'source scripts/lib.sh && tf_mirror'

clean:
	rm -rf bin bin-race dist
