#!/usr/bin/env bash
# Run the whole idpbuilder-push test suite, including the integration tests
# against a private dockerd, a Podman API service and three registries.
#
#   scripts/test.sh [ARGS...]    # ARGS go to `cargo test`, e.g. a test name filter
#
# Steps: install missing Debian packages (as root), `cargo fmt --check`,
# `cargo clippy -D warnings` (with and without the default features), start scripts/test-services.sh (stopped again on
# exit, whatever happens), then `cargo test --all-targets`. Lint runs before
# the daemons start so that a formatting slip fails in seconds. Tests see
# IDPB_TEST_REQUIRE_SERVICES=1: a missing service is a failure, not a skip.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

log() { printf 'test.sh: %s\n' "$*" >&2; }

# Installs what is missing (as root), or says what to install.
# shellcheck source=scripts/packages.sh
source "$REPO_ROOT/scripts/packages.sh"

ensure_rust() {
	command -v cargo >/dev/null 2>&1 || {
		log "cargo not found; install a Rust toolchain (https://rustup.rs) first"
		exit 1
	}
	local c
	for c in fmt clippy; do
		cargo "$c" --version >/dev/null 2>&1 || {
			log "cargo $c is missing; run: rustup component add ${c/fmt/rustfmt}"
			exit 1
		}
	done
}

ensure_packages
ensure_rust

log "cargo fmt --all -- --check"
cargo fmt --all -- --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
# The build without ISA-L (for hosts without nasm/autotools) must stay clean too.
log "cargo clippy --no-default-features --all-targets -- -D warnings"
cargo clippy --no-default-features --all-targets -- -D warnings

# The services run as root-owned daemons; test-services.sh says so if not root.
export IDPB_TEST_ROOT=${IDPB_TEST_ROOT:-$REPO_ROOT/.test-services}
stop_services() {
	# Quiet on success, so the last lines on screen stay cargo test's summary.
	mkdir -p "$IDPB_TEST_ROOT/logs"
	local stop_log=$IDPB_TEST_ROOT/logs/stop.log
	if ! scripts/test-services.sh stop >"$stop_log" 2>&1; then
		log "WARNING: stopping the test services failed:"
		cat "$stop_log" >&2
	fi
}
trap stop_services EXIT
# Turn Ctrl-C/TERM into a normal exit so the EXIT trap always runs.
trap 'exit 130' INT
trap 'exit 143' TERM

scripts/test-services.sh start
# shellcheck source=/dev/null # generated at runtime by test-services.sh
source "$IDPB_TEST_ROOT/env"
export IDPB_TEST_REQUIRE_SERVICES=1

log "cargo test --all-targets $*"
cargo test --all-targets "$@"
