# Crier: the two commands that matter are `make demo` and `make test`.
# `make deps` installs what a fresh Debian bookworm machine lacks (skipping what is there).

SHELL := /bin/bash
DEBIAN_PACKAGES := elixir erlang-dev erlang-proper erlang-eunit erlang-inets erlang-ssl erlang-os-mon iproute2 curl openssl chromium
export MIX_ENV ?= dev
export CARGO_TERM_COLOR := never

.PHONY: deps test test-rust test-elixir lint demo bench fuzz clean

deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# Node may come from another source than Debian (with npm inside): only a missing npm
	@# command is installed from Debian.
	@command -v npm >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null)
	@if [ -f test/e2e/package.json ] && [ ! -d test/e2e/node_modules ]; then \
	  (cd test/e2e && npm install --no-audit --no-fund --loglevel=error); \
	fi

lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	mix format --check-formatted

test-rust: deps
	cargo test --workspace

# Warnings are errors here, in CI, not in the project's config: a newer Elixir's new
# warnings must not break a user's build of Crier.
test-elixir: deps
	MIX_ENV=test mix compile --warnings-as-errors
	MIX_ENV=test mix test --warnings-as-errors

test: lint test-rust test-elixir

demo: deps
	mix run examples/demo.exs

bench: deps
	bench/run

# A longer property run of the request parser and chunked decoder than `make test` does
# (README, "Fuzzing"). FUZZ_CASES sets the cases per property.
FUZZ_CASES ?= 200000
fuzz: deps
	PROPTEST_CASES=$(FUZZ_CASES) cargo test -p crier_core --release --test http_props

clean:
	cargo clean
	rm -rf _build priv/native/*.so
