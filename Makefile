# vaultgate — the commands a developer needs. See README.md.
CARGO ?= cargo
SANDBOX_DIR ?= .sandbox
export SANDBOX_DIR

.PHONY: run test bench soak deploy crds certs lint fmt

## run: the whole thing on one machine (Kubernetes API emulator + Vault dev server + vaultgate), no cluster needed
run:
	$(CARGO) run -p vaultgate-sandbox --bin vaultgate-sandbox

## test: every test of the workspace (unit, emulator conformance, end to end)
test:
	$(CARGO) test --workspace --all-targets

## bench: release build, benchmarks, figures in target/bench/results.json
bench:
	command -v oha >/dev/null 2>&1 || $(CARGO) install oha --locked
	$(CARGO) build --release -p vaultgate -p vaultgate-sandbox
	./target/release/vaultgate-bench

## soak: release build, 1,000 ExternalSecrets under random faults for ~3 minutes (SOAK_SECONDS, SOAK_OBJECTS, SOAK_SEED); figures in target/soak/results.json
soak:
	$(CARGO) build --release -p vaultgate -p vaultgate-sandbox
	./target/release/vaultgate-soak

## deploy: apply CRDs, RBAC, Deployment, Service and webhooks to the current kubectl context
deploy:
	kubectl apply -k deploy/

## crds: regenerate deploy/crds/ from the API types
crds:
	$(CARGO) run -q --bin vaultgate -- crds --out-dir deploy/crds

## certs: a development CA and serving certificate in certs/ (never committed)
certs:
	$(CARGO) run -q --bin vaultgate -- certs --out-dir certs

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
