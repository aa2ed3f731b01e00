# The two commands of the README:
#   make serve   build, install and serve the embedded demo docroot on http://127.0.0.1:8085
#   make test    build, install and run every test (Rust and Python), installing what they need
PY ?= python3
ARGS ?=

.PHONY: serve test install deps rust-test py-test fuzz-smoke fuzz bench

install:
	$(PY) -m pip install -q -e '.[test]'

serve: install
	$(PY) -m vw serve $(ARGS)

# System tools the tests and the benchmark use (Debian packages). Installed only when missing.
# chromium: the headless browser of tests/core/test_clients.py; h2load: HTTP/2 load (tests/tls).
deps:
	@if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null || ! command -v curl >/dev/null \
		|| ! command -v chromium >/dev/null || ! command -v h2load >/dev/null; then \
		echo "installing wrk, nginx-light, curl, chromium, nghttp2-client (h2load)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			wrk nginx-light curl chromium nghttp2-client >/dev/null; \
	fi

rust-test:
	cargo test --profile test-fast

py-test:
	$(PY) -m pytest

# A short run of each fuzz target (8 s; libFuzzer via cargo-fuzz, on stable Rust, no sanitizer).
fuzz-smoke:
	@command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	cd fuzz && cargo fuzz run -s none conn regressions/*
	cd fuzz && cargo fuzz run -s none parse -- -max_total_time=8 -seed=1
	cd fuzz && cargo fuzz run -s none conn -- -max_total_time=8 -seed=1
	cd fuzz && cargo fuzz run -s none negotiate -- -max_total_time=8 -seed=1
	cd fuzz && cargo fuzz run -s none stream -- -max_total_time=8 -seed=1
	cd fuzz && cargo fuzz run -s none ws -- -max_total_time=8 -seed=1
	cd fuzz && cargo fuzz run -s none wsconn -- -max_total_time=8 -seed=1
	cd fuzz && cargo fuzz run -s none tls -- -max_total_time=8 -seed=1
	cd fuzz && cargo fuzz run -s none h2 -- -max_total_time=8 -seed=1

# Long runs, for a developer: make fuzz FUZZ_SECONDS=1800
FUZZ_SECONDS ?= 600
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	cd fuzz && cargo fuzz run -s none parse -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && cargo fuzz run -s none conn -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && cargo fuzz run -s none negotiate -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && cargo fuzz run -s none stream -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && cargo fuzz run -s none ws -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && cargo fuzz run -s none wsconn -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && cargo fuzz run -s none tls -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && cargo fuzz run -s none h2 -- -max_total_time=$(FUZZ_SECONDS)

test: deps install rust-test fuzz-smoke py-test

bench: deps install
	$(PY) bench/run.py $(ARGS)
