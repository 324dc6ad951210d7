#!/usr/bin/env bash
# Run the whole idpbuilder-push test suite, including the integration tests
# against a private dockerd, a Podman API service and three registries.
#
#   scripts/test.sh [ARGS...]    # ARGS go to `cargo test`, e.g. a test name filter
#
# Steps: install missing Debian packages (as root), `cargo fmt --check`,
# `cargo clippy -D warnings`, start scripts/test-services.sh (stopped again on
# exit, whatever happens), then `cargo test --all-targets`. Lint runs before
# the daemons start so that a formatting slip fails in seconds. Tests see
# IDPB_TEST_REQUIRE_SERVICES=1: a missing service is a failure, not a skip.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

log() { printf 'test.sh: %s\n' "$*" >&2; }

# Debian package => a command it provides. Checking commands (not dpkg) keeps
# hosts that got a tool elsewhere (pyenv python3, a newer docker CLI) working.
# docker.io pulls in containerd and runc.
declare -A PKG_CMD=(
	[docker.io]=dockerd
	[containerd]=containerd
	[docker-registry]=docker-registry
	[podman]=podman
	[skopeo]=skopeo
	[apache2-utils]=htpasswd
	[openssl]=openssl
	[curl]=curl
	[python3]=python3
)

ensure_packages() {
	local missing=() pkg
	for pkg in docker.io containerd docker-registry podman skopeo apache2-utils openssl curl python3; do
		command -v "${PKG_CMD[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
	done
	# dockerd alone is not enough: we also drive it with the docker CLI.
	if ! command -v docker >/dev/null 2>&1 && [[ " ${missing[*]} " != *" docker.io "* ]]; then
		missing+=(docker.io)
	fi
	((${#missing[@]} == 0)) && return 0

	if ((EUID != 0)); then
		log "missing packages: ${missing[*]}; install them with:"
		echo "sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	log "installing missing packages: ${missing[*]}"
	# noninteractive: no debconf prompts in CI. Recommends are kept on purpose
	# (podman recommends e.g. uidmap/fuse-overlayfs that some setups need).
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y "${missing[@]}"
}

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
