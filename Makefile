# vaultgate — the commands a developer needs. See README.md.
CARGO ?= cargo
SANDBOX_DIR ?= .sandbox
export SANDBOX_DIR

.PHONY: help run test bench soak deploy crds certs lint fmt
.DEFAULT_GOAL := help

## help: this list (the default target)
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

## run: the whole thing on one machine (Kubernetes API emulator + Vault emulator + vaultgate), no cluster needed
run:
	$(CARGO) run --locked -p vaultgate-sandbox --bin vaultgate-sandbox

## test: every test of the workspace (unit, emulator conformance, end to end)
test:
	$(CARGO) test --workspace --all-targets --locked

## bench: release build, benchmarks, figures in target/bench/results.json
bench:
	@echo "bench: the benchmarks drive the oha load generator; installing it with '$(CARGO) install oha --locked' unless it is on PATH"
	command -v oha >/dev/null 2>&1 || $(CARGO) install oha --locked
	$(CARGO) build --release --locked -p vaultgate -p vaultgate-sandbox
	./target/release/vaultgate-bench

## soak: release build, 1,000 ExternalSecrets under random faults for ~3 minutes (SOAK_SECONDS, SOAK_OBJECTS, SOAK_SEED); figures in target/soak/results.json
soak:
	$(CARGO) build --release --locked -p vaultgate -p vaultgate-sandbox
	./target/release/vaultgate-soak

## deploy: apply CRDs, RBAC, Deployment, Service and webhooks to the current kubectl context
deploy:
	kubectl apply -k deploy/

## crds: regenerate deploy/crds/ from the API types
crds:
	$(CARGO) run -q --locked --bin vaultgate -- crds --out-dir deploy/crds

## certs: a development CA and serving certificate in certs/ (never committed)
certs:
	$(CARGO) run -q --locked --bin vaultgate -- certs --out-dir certs

## lint: formatting check and clippy with warnings as errors, as CI runs them
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## fmt: format every crate of the workspace
fmt:
	$(CARGO) fmt --all
