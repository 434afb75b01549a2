# ferrymail — the two commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo
CONFIG ?= deploy/examples/config.toml
export CARGO_TERM_COLOR ?= never

.PHONY: run test test-deps lint fmt build bench fuzz reference check-config crds chart-assets chart clean

## Start every role in one process on the embedded store (SMTP on 127.0.0.1:2525,
## admin endpoints on 127.0.0.1:8080). Ctrl-C stops it cleanly.
run:
	$(CARGO) run --release -p ferrymail -- all --config $(CONFIG)

## Install what the tests need (when missing), check formatting and lints, run every test.
test: test-deps lint build
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi
	$(CARGO) test --workspace --doc

test-deps:
	@.ci/check-disk-space
	@.ci/install-test-deps

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@# FoundationDB cannot run here: its backend is compiled and linted, and its tests run
	@# where FDB_CLUSTER_FILE points at a cluster (.github/workflows/foundationdb.yml).
	$(CARGO) clippy -p ferrymail-store --features fdb --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## The end-to-end tests start the real binary: build it first.
build:
	$(CARGO) build -p ferrymail

## Benchmarks: numbers printed side by side with the reference measured in the same run.
bench: test-deps
	$(CARGO) bench -p ferrymail-store --bench commit_throughput
	$(CARGO) bench -p ferrymail-directory-proxy --bench lookups
	$(CARGO) build --release -p ferrymail
	$(CARGO) bench -p ferrymail-e2e --bench ingress --bench delivery --bench split_roles \
		--bench shared_store --bench queue_operations --bench delivery_events \
		--bench stage_filters

## Fuzz the SMTP/LMTP session state machine (fuzz/fuzz_targets/smtp_session.rs) for
## FUZZ_TIME seconds. New inputs go to target/fuzz-corpus; findings to fuzz/artifacts.
## Needs cargo-fuzz; uses a nightly toolchain if there is one, else the stable one with
## RUSTC_BOOTSTRAP=1 (libFuzzer's sanitizer flags are nightly-only). A cold build takes
## about 20 minutes on 2 cores.
FUZZ_TIME ?= 60
FUZZ_RUN = fuzz run smtp_session target/fuzz-corpus/smtp_session fuzz/corpus/smtp_session \
	-- -max_total_time=$(FUZZ_TIME) -timeout=10
fuzz:
	@if ! $(CARGO) fuzz --version >/dev/null 2>&1; then \
		echo "make fuzz needs cargo-fuzz: cargo install cargo-fuzz"; \
		echo "Without it, the same harness runs on stable as part of make test:"; \
		echo "  $(CARGO) test -p ferrymail-smtp-ingress --test session_fuzz"; \
		exit 1; \
	fi
	@mkdir -p target/fuzz-corpus/smtp_session
	@if $(CARGO) +nightly --version >/dev/null 2>&1; then \
		$(CARGO) +nightly $(FUZZ_RUN); \
	else \
		echo "no nightly toolchain: building with the stable one and RUSTC_BOOTSTRAP=1"; \
		RUSTC_BOOTSTRAP=1 $(CARGO) $(FUZZ_RUN); \
	fi

## Regenerate the configuration reference in README.md from the key catalogue.
reference: build
	@target/debug/ferrymail config-reference > target/config-reference.md
	@python3 .ci/splice-reference README.md target/config-reference.md

check-config: build
	target/debug/ferrymail check-config $(CONFIG)

## Regenerate the CRD copies (chart, kustomize base) from the Rust types; a test keeps them equal.
crds: build
	target/debug/ferrymail crd > charts/ferrymail/files/crds.yaml
	cp charts/ferrymail/files/crds.yaml deploy/kustomize/base/crds.yaml

## Copy the dashboards of deploy/grafana into the chart, which ships them as ConfigMaps.
chart-assets:
	cp deploy/grafana/*.json charts/ferrymail/dashboards/

## Lint the Helm chart and regenerate the kustomize base from its output (no secret in it).
chart: crds chart-assets test-deps
	helm lint --strict charts/ferrymail
	helm template ferrymail charts/ferrymail --namespace ferrymail \
		-f deploy/kustomize/chart-values.yaml > deploy/kustomize/base/ferrymail.yaml

clean:
	$(CARGO) clean
