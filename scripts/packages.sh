#!/usr/bin/env bash
# Sourced by test.sh and demo.sh: `ensure_packages` installs the Debian
# packages the build, the test services and the demo need when run as root, and otherwise
# prints the exact apt-get command and exits 1.

# Debian package => a command it provides. Checking commands (not dpkg) keeps
# hosts that got a tool elsewhere (pyenv python3, a newer docker CLI) working.
# docker.io pulls in containerd and runc. nasm, autoconf, automake, libtool
# and make build ISA-L (the default `isal` cargo feature) from source.
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
	[time]=/usr/bin/time
	[nasm]=nasm
	[autoconf]=autoconf
	[automake]=automake
	[libtool]=libtoolize
	[make]=make
)

ensure_packages() {
	local missing=() pkg
	for pkg in docker.io containerd docker-registry podman skopeo apache2-utils openssl curl python3 time \
		nasm autoconf automake libtool make; do
		command -v "${PKG_CMD[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
	done
	# dockerd alone is not enough: we also drive it with the docker CLI.
	if ! command -v docker >/dev/null 2>&1 && [[ " ${missing[*]} " != *" docker.io "* ]]; then
		missing+=(docker.io)
	fi
	((${#missing[@]} == 0)) && return 0

	if ((EUID != 0)); then
		printf "packages: %s\n" "missing packages: ${missing[*]}; install them with:" >&2
		echo "sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	printf "packages: %s\n" "installing missing packages: ${missing[*]}" >&2
	# noninteractive: no debconf prompts in CI. Recommends are kept on purpose
	# (podman recommends e.g. uidmap/fuse-overlayfs that some setups need).
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y "${missing[@]}"
}

