# The two commands of the README:
#   make serve   build, install and serve the embedded demo docroot on http://127.0.0.1:8085
#   make test    build, install and run every test (Rust and Python), installing what they need
PY ?= python3
ARGS ?=

.PHONY: serve test install deps autobahn conformance rust-test py-test py-test-uring fuzz-smoke fuzz bench wheel wheel-native

install:
	$(PY) -m pip install -q -e '.[test]'

serve: install
	$(PY) -m vw serve $(ARGS)

# System tools the tests and the benchmark use (Debian packages). Installed only when missing.
# chromium: the headless browser of tests/core/test_clients.py; h2load: HTTP/2 load (tests/tls);
# liburing-dev: the io_uring floor of the benchmark (python/vw/benchmark/floor_uring.c).
deps:
	@if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null || ! command -v curl >/dev/null \
		|| ! command -v chromium >/dev/null || ! command -v h2load >/dev/null \
		|| ! test -e /usr/include/liburing.h; then \
		echo "installing wrk, nginx-light, curl, chromium, nghttp2-client (h2load), liburing-dev"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			wrk nginx-light curl chromium nghttp2-client liburing-dev >/dev/null; \
	fi

# Autobahn|Testsuite (tests/conformance) runs on Python 2.7: pyenv's, on this kind of machine.
WSTEST = $(firstword $(wildcard $(HOME)/.pyenv/versions/2.7*/bin/wstest))
PY27 = $(firstword $(wildcard $(HOME)/.pyenv/versions/2.7*/bin/python))
autobahn:
	@if [ -z "$(WSTEST)" ]; then \
		if [ -z "$(PY27)" ]; then echo "Autobahn|Testsuite needs Python 2.7 (pyenv's): none found" >&2; exit 1; fi; \
		echo "installing autobahntestsuite into $(PY27)"; \
		$(PY27) -m pip install -q --disable-pip-version-check autobahntestsuite 2>&1 | grep -v DEPRECATION || true; \
		test -n "$$(ls $(HOME)/.pyenv/versions/2.7*/bin/wstest 2>/dev/null)"; \
	fi

# Every Autobahn case but the performance group 9, against both WebSocket interfaces (about 18
# minutes); `make test` runs a chosen subset of them.
conformance: deps autobahn install
	VW_AUTOBAHN=all $(PY) -m pytest -s tests/conformance

rust-test:
	cargo test --profile test-fast

py-test:
	$(PY) -m pytest

# The core and TLS suites run on both backends in py-test; this runs the rest (applications,
# WebSockets, the process tree, HTTP/2) on io_uring too. About 3 minutes; not part of `make test`.
py-test-uring:
	VW_TEST_IO=uring $(PY) -m pytest tests/apps tests/ws tests/python tests/tls --deselect tests/python/test_wheel.py

# A short run of each fuzz target (4 s; libFuzzer via cargo-fuzz, on stable Rust, no sanitizer):
# every target's past findings (fuzz/regressions/TARGET/) replayed, its committed corpus, then new
# inputs from a seed that changes each run (printed: `make fuzz-smoke FUZZ_SEED=N` repeats one).
# The long runs are `make fuzz`.
SMOKE_SECONDS ?= 4
ifndef FUZZ_SEED
FUZZ_SEED := $(shell date +%s)
endif
FUZZ_TARGETS = parse conn negotiate stream ws wsconn tls h2 ring
fuzz-smoke:
	@command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	@echo "fuzz-smoke: seed $(FUZZ_SEED) (make fuzz-smoke FUZZ_SEED=$(FUZZ_SEED) repeats this run)"
	@for t in $(FUZZ_TARGETS); do \
		if ls fuzz/regressions/$$t/* >/dev/null 2>&1; then \
			(cd fuzz && cargo fuzz run -s none $$t regressions/$$t/*) || exit 1; \
		fi; \
	done
	@for t in $(FUZZ_TARGETS); do \
		(cd fuzz && cargo fuzz run -s none $$t -- -max_total_time=$(SMOKE_SECONDS) -seed=$(FUZZ_SEED)) || { echo "fuzz-smoke: $$t failed with seed $(FUZZ_SEED)"; exit 1; }; \
	done

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
	cd fuzz && cargo fuzz run -s none ring -- -max_total_time=$(FUZZ_SECONDS)

test: deps autobahn install rust-test fuzz-smoke wheel-native py-test

bench: deps install
	$(PY) bench/run.py $(ARGS)

# Wheels: abi3 (CPython 3.11 and later) manylinux2014 wheels for x86_64 and aarch64, and the
# sdist, into dist/. maturin links through zig (the ziglang package from PyPI), so one x86_64
# machine builds both with no system cross toolchain; auditwheel shows the tags each got.
WHEEL_TARGETS ?= x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu
WHEEL_TOOLS = 'maturin>=1.5,<2' 'ziglang>=0.11' 'auditwheel>=6'
wheel:
	$(PY) -m pip install -q $(WHEEL_TOOLS)
	@for t in $(WHEEL_TARGETS); do \
		rustup target list --installed | grep -qx $$t || rustup target add $$t || exit 1; \
		$(PY) -m maturin build --release --zig --compatibility manylinux2014 --target $$t --out dist || exit 1; \
	done
	$(PY) -m maturin sdist --out dist
	@for w in dist/vw-*.whl; do $(PY) -m auditwheel show $$w | tr '\n' ' ' | sed 's/  */ /g'; echo; done

# The wheel the tests install (tests/python/test_wheel.py): this machine's, from the release
# build `make install` made (cargo reuses it: seconds, where `make wheel` builds anew). Linked
# against this glibc (Debian 12), it is manylinux_2_34, which maturin checks; the manylinux2014
# ones come from `make wheel`.
wheel-native:
	$(PY) -m pip install -q $(WHEEL_TOOLS)
	$(PY) -m maturin build --release --compatibility manylinux_2_34 --out dist
