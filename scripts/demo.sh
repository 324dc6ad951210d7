#!/usr/bin/env bash
# Demo: push a tiny locally built image with idpbuilder-push, end to end.
#
#   scripts/demo.sh [--keep] [--registry URL] [--docker-host HOST] [-- EXTRA_ARGS...]
#
# With no options, everything is embedded: a private dockerd and a plain-HTTP
# registry are started (scripts/test-services.sh, only those two services, in
# a fresh short-path temp dir), the image idpbuilder-push-demo:latest is built
# FROM scratch, and
#   cargo run --release --bin idpbuilder-push -- --registry http://127.0.0.1:PORT idpbuilder-push-demo:latest
# pushes it. --registry / --docker-host use an existing registry / daemon
# instead (the image is then built in that daemon). EXTRA_ARGS go to
# idpbuilder-push. The services are stopped at the end unless --keep is given.
# DOCKER_HOST from the environment is deliberately ignored: the demo must not
# build into the user's daemon unless asked to with --docker-host.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly IMAGE=idpbuilder-push-demo:latest

log() { printf 'demo: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}
usage() {
	sed -n '4p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2
	exit 2
}

keep=0 registry='' docker_host=''
extra=()
while (($#)); do
	case $1 in
	--keep) keep=1 ;;
	--registry)
		(($# >= 2)) || usage
		registry=$2
		shift
		;;
	--registry=*) registry=${1#*=} ;;
	--docker-host)
		(($# >= 2)) || usage
		docker_host=$2
		shift
		;;
	--docker-host=*) docker_host=${1#*=} ;;
	-h | --help) usage ;;
	--)
		shift
		extra=("$@")
		break
		;;
	*) usage ;;
	esac
	shift
done

# shellcheck source=scripts/packages.sh
source "$REPO_ROOT/scripts/packages.sh"
ensure_packages
command -v cargo >/dev/null 2>&1 || die "cargo is missing"

services=()
[[ -n $docker_host ]] || services+=(docker)
[[ -n $registry ]] || services+=(plain)

# Its own state dir, not the test suite's .test-services: a demo must not wipe
# (or be wiped by) a concurrent test run. /tmp keeps unix socket paths short.
work=$(mktemp -d /tmp/idpb-demo.XXXXXX)
export IDPB_TEST_ROOT=$work/services
started=0
cleanup() {
	local rc=$?
	if ((keep)); then
		if ((started)); then
			log "services kept running; stop them with:"
			echo "  IDPB_TEST_ROOT=$IDPB_TEST_ROOT $REPO_ROOT/scripts/test-services.sh stop" >&2
		fi
		return "$rc"
	fi
	if ((started)); then
		"$REPO_ROOT/scripts/test-services.sh" stop >/dev/null 2>&1 ||
			log "WARNING: could not stop services under $IDPB_TEST_ROOT"
	fi
	rm -rf --one-file-system "$work"
	return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((${#services[@]})); then
	log "starting embedded services: ${services[*]}"
	started=1
	"$REPO_ROOT/scripts/test-services.sh" start "${services[@]}"
	# shellcheck source=/dev/null # generated at runtime by test-services.sh
	source "$IDPB_TEST_ROOT/env"
	[[ -n $docker_host ]] || docker_host=$IDPB_TEST_DOCKER_HOST
	[[ -n $registry ]] || registry=http://$IDPB_TEST_REGISTRY_PLAIN
fi
export DOCKER_HOST=$docker_host

# FROM scratch + COPY is the only image that can be built without pulling a
# base image. Legacy builder (DOCKER_BUILDKIT=0): BuildKit needs the buildx
# plugin, and the Podman compat API only speaks the legacy build protocol.
ctx=$work/context
mkdir -p "$ctx"
printf 'hello from idpbuilder-push, built %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$ctx/hello.txt"
printf 'FROM scratch\nCOPY hello.txt /hello.txt\n' >"$ctx/Dockerfile"
log "building $IMAGE in $DOCKER_HOST"
# Output only on failure: the 28.x CLI prints a legacy-builder deprecation notice.
if ! DOCKER_BUILDKIT=0 docker build -t "$IMAGE" "$ctx" >"$work/build.log" 2>&1; then
	cat "$work/build.log" >&2
	die "docker build failed"
fi

log "pushing $IMAGE to $registry"
cd "$REPO_ROOT"
cargo run --release --bin idpbuilder-push -- --registry "$registry" "$IMAGE" "${extra[@]}"

# Show what arrived, when the registry is ours (known to be plain HTTP, no auth).
if [[ -n ${IDPB_TEST_REGISTRY_PLAIN:-} && $registry == "http://$IDPB_TEST_REGISTRY_PLAIN" ]]; then
	log "registry contents:"
	python3 - "$registry" <<'EOF'
import json, sys, urllib.request
base = sys.argv[1]
# The registry is on loopback: never go through a proxy from the environment.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
get = lambda path, accept="application/json": opener.open(
    urllib.request.Request(base + path, headers={"Accept": accept}), timeout=10)
repos = json.load(get("/v2/_catalog"))["repositories"] or []
if not repos:
    print("  (no repositories)")
manifest_types = ",".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
for repo in repos:
    for tag in json.load(get(f"/v2/{repo}/tags/list")).get("tags") or []:
        with get(f"/v2/{repo}/manifests/{tag}", manifest_types) as r:
            print(f"  {base.split('://', 1)[1]}/{repo}:{tag}  {r.headers.get('Docker-Content-Digest')}  {r.headers.get('Content-Type')}")
EOF
fi
log "done"
