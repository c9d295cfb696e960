# The two commands of the README, and the set-up both run first.
.PHONY: setup test demo demo-serve lint bench fuzz soak

setup:
	@scripts/setup.sh

## make test: formatting, lints, unit tests and integration tests against the local
## emulator, then two checks over what the whole suite did: every AWS call it made is
## granted in template.yaml, and no secret value written to Secrets Manager appears
## in any test's log lines.
test: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	rm -rf "$${CARGO_TARGET_DIR:-target}/aws-calls" "$${CARGO_TARGET_DIR:-target}/test-logs" "$${CARGO_TARGET_DIR:-target}/test-secrets"
	cargo test --workspace
	cargo test -p autopilot-tests --test iam -- --ignored
	cargo test -p autopilot-tests --test secrets_in_logs -- --ignored --nocapture

## make demo: the deploy, rotation and remediation stories on the local emulator.
demo: setup
	cargo run --quiet -p autopilot-tests --bin demo

## make demo-serve: the demo, then keep the emulator up for `cargo lambda invoke`.
demo-serve: setup
	cargo run --quiet -p autopilot-tests --bin demo -- --serve

lint: setup
	AWS_DEFAULT_REGION=us-east-1 .venv/bin/cfn-lint template.yaml

## make bench: artifact sizes, cold starts, warm latency per event, peak RSS and AWS
## calls per event for every function, written to docs/benchmarks.md. Not part of
## `make test`. `make bench BENCH=--quick` is a smoke run with fewer repetitions.
bench: setup
	@if [ -f scripts/bench-setup.sh ]; then bash scripts/bench-setup.sh; fi
	@# Exit 3: the build cargo found fresh came from another clone sharing the
	@# target directory (its harness paths); rebuild the harness from this one.
	cargo run --quiet --profile bench-harness -p autopilot-tests --bin bench -- $(BENCH) || { status=$$?; \
	  [ $$status -eq 3 ] || exit $$status; touch tests/src/lib.rs; \
	  cargo run --quiet --profile bench-harness -p autopilot-tests --bin bench -- $(BENCH); }

## make fuzz: the hostile-input property tests of `make test` (tests/tests/hostile_input)
## with FUZZ_CASES cases per property instead of 128, optimised, outside CI; it prints
## each property's cases and seconds and the total (docs/reliability.md).
FUZZ_CASES ?= 70000
fuzz: setup
	mkdir -p "$(CURDIR)/target" && rm -f "$(CURDIR)/target/fuzz-cases.tsv"
	AUTOPILOT_HOSTILE_CASES=$(FUZZ_CASES) AUTOPILOT_HOSTILE_LOG="$(CURDIR)/target/fuzz-cases.tsv" \
	  cargo test --profile fuzz -p autopilot-tests --test hostile_input
	@awk -F'\t' '{ print; cases += $$2 } END { printf "total: %d cases\n", cases }' "$(CURDIR)/target/fuzz-cases.tsv"

## make soak: at least SOAK_EVENTS mixed events (pushes and verdicts, alarm flips, rotations,
## snapshots and checks) replayed against the emulator with duplicates, disorder and
## injected faults drawn from SOAK_SEED; reports lost events, duplicated actions, invariant
## breaks and memory growth, and fails unless all are zero. Optimised (the bench's profile),
## outside CI; about 8 minutes on 2 cores (docs/reliability.md, "Soak").
SOAK_EVENTS ?= 10000
SOAK_SEED ?= 20261124
soak: setup
	SOAK_EVENTS=$(SOAK_EVENTS) SOAK_SEED=$(SOAK_SEED) \
	  cargo run --quiet --profile bench-harness -p autopilot-tests --bin soak
