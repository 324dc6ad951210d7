#!/usr/bin/env bash
# Benchmark: idpbuilder-push against `docker push` and `skopeo copy docker-daemon:`.
#
#   scripts/bench.sh [--rounds N] [--scale full|small] [--out FILE] [--keep]
#                    [--bin PATH] [--push-timeout SECONDS] [--max-seconds SECONDS]
#                    [--skopeo-cache round|run] [--big-mib MIB]
#                    [--changed-order worst|as-built]
#                    [-- EXTRA_IDPBUILDER_PUSH_ARGS...]
#
# Environment (flags win): BENCH_ROUNDS (3), BENCH_SCALE (full), BENCH_BIG_MIB
# (3072 at full scale, 300 at small; 0 leaves the big image out), BENCH_OUT
# (<repo>/bench-results.md), IDPB_PUSH_BIN (<repo>/target/release/idpbuilder-push),
# BENCH_PUSH_TIMEOUT (900), BENCH_BUILD_TIMEOUT (1800), BENCH_MAX_SECONDS (5400),
# BENCH_SKOPEO_CACHE (round), BENCH_CHANGED_ORDER (worst), IDPB_TEST_ROOT (/tmp/idpb-bench; keep it short, it holds unix sockets).
#
# Needs root (private rootful dockerd), the release binary (`cargo build
# --release`), and: docker dockerd containerd docker-registry skopeo curl
# python3 unshare /usr/bin/time (Debian package `time`).
#
# What it does (the workload of shared/notes/performance.md):
#  1. Starts a private dockerd (vfs) and a plain-HTTP registry with
#     scripts/test-services.sh (state under $IDPB_TEST_ROOT, nothing touches the
#     host's daemons), and turns on dockerd's debug log (daemon.json + SIGHUP)
#     so every API call is logged: that is how export requests are counted.
#  2. Builds, with the legacy builder, `idpb-bench:base` FROM scratch with three
#     COPY layers: base = /usr/lib/x86_64-linux-gnu (~670 MB), mid =
#     /usr/share/doc (~120 MB), app = 3 MB of random bytes + /usr/share/perl
#     (~24 MB); then `idpb-bench:changed`, the same with new random bytes, so
#     only the app layer differs (the build cache reuses base and mid).
#     --changed-order worst (the default) rebuilds idpb-bench:changed (new
#     random bytes each time, up to 20 builds) until its export lists the app
#     layer's directory after the other two (scripts/bench-layer-order.py):
#     dockerd 20.10 orders `<v1 id>/` directories by hash, and a reader that
#     stops once it has what it needs then has to read the whole export. The
#     report says which place the app layer got. --changed-order as-built
#     takes the first build whatever its order.
#     The trees are copied with `cp -a`, i.e. symlinks stay symlinks (620 of
#     them, all relative and inside the tree on Debian 12); --dereference would
#     store every libfoo.so.1 -> libfoo.so.1.2.3 twice and inflate the base
#     layer. Sockets, FIFOs and device nodes are deleted from the context
#     (there are none today): the docker CLI cannot put sockets in a build
#     context. BENCH_SCALE=small takes deterministic subsets (sorted walk,
#     first files up to a budget): base 60 MiB, mid 12 MiB, app 3 MB random +
#     3 MiB of perl, for a quick check of the script itself.
#  3. Runs N rounds. Each round runs three scenarios, each tool in turn (the
#     tool order rotates every round), against repositories fresh for the round:
#       cold      - push idpb-bench:base to an empty repository, with empty
#                   client-side caches (see below);
#       unchanged - push idpb-bench:base again to the same repository, caches
#                   kept (for us: the layer cache written by the cold run);
#       changed   - push idpb-bench:changed to the same repository (the base
#                   image is there from the cold run): one changed layer.
#     Fresh client state per tool and round, so "cold" really is cold:
#       idpbuilder-push: XDG_CACHE_HOME is an empty directory per round.
#       docker push: dockerd remembers, per layer, which repositories it pushed
#         it to (image/vfs/distribution/v2metadata-by-diffid) and, for a new
#         repository on the same registry, cross-repo MOUNTS the layer instead
#         of uploading it ("Mounted from r1-docker/idpb-bench", verified). The
#         script empties that metadata (dockerd reads it from disk on every
#         push) before each cold docker push, and warns if a cold docker push
#         still says "Mounted from" or "Layer already exists".
#       skopeo: containers/image keeps a blob-info cache (for root:
#         /var/lib/containers/cache/blob-info-cache-v1.boltdb, shared by every
#         skopeo run on the host) and likewise mounts known blobs from other
#         repositories (verified). skopeo has no flag for its location, so each
#         skopeo run gets a private mount namespace (`unshare -m`) in which a
#         per-round directory is bind-mounted over /var/lib/containers/cache.
#         The host's cache is never read or written; the directory is created
#         if missing (as skopeo itself would do). Like our cache, skopeo's is
#         kept across the three pushes of a round (--skopeo-cache round, the
#         default, what a user gets), so for "changed" skopeo too finds base
#         and mid in its cache, HEADs them and compresses only the app layer.
#         --skopeo-cache run gives every skopeo push an empty cache: it then
#         recompresses and uploads every layer in "unchanged" and "changed".
#       skopeo ignores DOCKER_HOST for `docker-daemon:` (it dials
#       /var/run/docker.sock); --src-daemon-host points it at the private daemon.
#     Per run: wall time (bash $EPOCHREALTIME, ms), user+sys CPU and peak RSS of
#     the client process tree (GNU time), dockerd's CPU time during the run
#     (/proc/PID/stat; for `docker push` that is where the work happens, for
#     the others it is mostly the export), the compressed size (sum of the layer
#     sizes of the manifest the registry serves for the pushed tag), and the
#     number of image export requests (`GET /images/get`, `/images/NAME/get`)
#     dockerd logged during the run.
#     Then, once per tool (not per round), the "big" scenario: a cold push of
#     `idpb-bench:big`, one layer of --big-mib MiB of random bytes (3 GiB by
#     default), to the repository of round 1 with empty client caches. It is
#     there for the peak-memory target ("whatever the layer size"); random
#     bytes do not compress, so every byte of it is uploaded.
#  4. Prints medians per tool and scenario, ratios (ours/skopeo, ours/docker)
#     and pass/fail against the targets of performance.md, machine described,
#     as Markdown, to stdout and to --out (scripts/bench-report.py).
#  5. Cleans up: removes the images and stops the services, deletes the build
#     context, caches and registry data (logs are kept under
#     $IDPB_TEST_ROOT/bench-logs). --keep leaves everything up and in place.
#
# Timing is bounded: every build and push runs under `timeout`, and no new
# round starts once --max-seconds have passed (the report then covers the
# rounds done). Exit status: 0 when every push succeeded (whatever the targets
# say), 1 when a push failed or the setup broke, 2 for usage errors.
# Absolute seconds vary between machines and runs; only ratios within one run
# count. Run the full workload on a quiet machine.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly SCRIPT_DIR=$REPO_ROOT/scripts
readonly IMAGE_REPO=idpb-bench
readonly TOOLS=(ours docker skopeo)
readonly SCENARIOS=(cold unchanged changed)

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}
bad_usage() {
	log "ERROR: $*"
	exit 2
}
usage() {
	sed -n '4,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

rounds=${BENCH_ROUNDS:-3}
scale=${BENCH_SCALE:-full}
out=${BENCH_OUT:-$REPO_ROOT/bench-results.md}
bin=${IDPB_PUSH_BIN:-$REPO_ROOT/target/release/idpbuilder-push}
push_timeout=${BENCH_PUSH_TIMEOUT:-900}
build_timeout=${BENCH_BUILD_TIMEOUT:-1800}
max_seconds=${BENCH_MAX_SECONDS:-5400}
skopeo_cache=${BENCH_SKOPEO_CACHE:-round}
changed_order=${BENCH_CHANGED_ORDER:-worst}
big_mib=${BENCH_BIG_MIB:-}
keep=0
ours_args=()
while (($#)); do
	case $1 in
	--rounds) (($# >= 2)) || usage; rounds=$2; shift ;;
	--rounds=*) rounds=${1#*=} ;;
	--scale) (($# >= 2)) || usage; scale=$2; shift ;;
	--scale=*) scale=${1#*=} ;;
	--out) (($# >= 2)) || usage; out=$2; shift ;;
	--out=*) out=${1#*=} ;;
	--bin) (($# >= 2)) || usage; bin=$2; shift ;;
	--bin=*) bin=${1#*=} ;;
	--push-timeout) (($# >= 2)) || usage; push_timeout=$2; shift ;;
	--push-timeout=*) push_timeout=${1#*=} ;;
	--max-seconds) (($# >= 2)) || usage; max_seconds=$2; shift ;;
	--max-seconds=*) max_seconds=${1#*=} ;;
	--skopeo-cache) (($# >= 2)) || usage; skopeo_cache=$2; shift ;;
	--skopeo-cache=*) skopeo_cache=${1#*=} ;;
	--changed-order) (($# >= 2)) || usage; changed_order=$2; shift ;;
	--changed-order=*) changed_order=${1#*=} ;;
	--big-mib) (($# >= 2)) || usage; big_mib=$2; shift ;;
	--big-mib=*) big_mib=${1#*=} ;;
	--keep) keep=1 ;;
	-h | --help) usage ;;
	--) shift; ours_args=("$@"); break ;;
	*) log "unknown argument '$1'"; usage ;;
	esac
	shift
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || bad_usage "--rounds must be a positive integer, got '$rounds'"
[[ $scale == full || $scale == small ]] || bad_usage "--scale must be full or small, got '$scale'"
[[ $changed_order == worst || $changed_order == as-built ]] || bad_usage "--changed-order must be worst or as-built, got '$changed_order'"
[[ $skopeo_cache == round || $skopeo_cache == run ]] || bad_usage "--skopeo-cache must be round or run, got '$skopeo_cache'"
[[ $push_timeout =~ ^[1-9][0-9]*$ ]] || bad_usage "--push-timeout must be a positive integer"
[[ $max_seconds =~ ^[1-9][0-9]*$ ]] || bad_usage "--max-seconds must be a positive integer"
if [[ -z $big_mib ]]; then
	big_mib=3072
	[[ $scale == small ]] && big_mib=300
fi
[[ $big_mib =~ ^[0-9]+$ ]] || bad_usage "--big-mib must be a number of MiB (0: no big image), got '$big_mib'"
[[ $out == /* ]] || out=$PWD/$out

export IDPB_TEST_ROOT=${IDPB_TEST_ROOT:-/tmp/idpb-bench}
ROOT=$IDPB_TEST_ROOT
WORK=$ROOT/bench-work   # context, caches: big, deleted at the end
LOGS=$ROOT/bench-logs   # per-run logs, runs.tsv: small, kept
RUNS=$LOGS/runs.tsv

# ---------------------------------------------------------------- checks --
((EUID == 0)) || die "must run as root (the private dockerd is rootful)"
missing=()
for c in docker dockerd containerd docker-registry skopeo curl python3 unshare timeout mount; do
	command -v "$c" >/dev/null 2>&1 || missing+=("$c")
done
[[ -x /usr/bin/time ]] || missing+=("/usr/bin/time (apt-get install time)")
((${#missing[@]} == 0)) || die "missing: ${missing[*]}"
[[ -x $bin ]] || die "no idpbuilder-push binary at $bin: run 'cargo build --release' (or pass --bin)"
[[ -d /usr/lib/x86_64-linux-gnu && -d /usr/share/doc && -d /usr/share/perl ]] ||
	die "the workload copies /usr/lib/x86_64-linux-gnu, /usr/share/doc and /usr/share/perl; one is missing"

# ---------------------------------------------------------------- cleanup --
services_started=0
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if ((keep)); then
		log "--keep: services still running; env file $ROOT/env, work dir $WORK, logs $LOGS"
		log "stop them with: IDPB_TEST_ROOT=$ROOT $SCRIPT_DIR/test-services.sh stop"
		exit "$rc"
	fi
	if ((services_started)); then
		if [[ -n ${DOCKER_HOST:-} ]] && docker version >/dev/null 2>&1; then
			local refs
			refs=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep "$IMAGE_REPO:" || true)
			# shellcheck disable=SC2086 # one ref per word
			[[ -z $refs ]] || docker rmi -f $refs >/dev/null 2>&1 || log "WARNING: could not remove images"
		fi
		"$SCRIPT_DIR/test-services.sh" stop >/dev/null 2>&1 || log "WARNING: test-services.sh stop failed"
		rm -rf --one-file-system "$ROOT/registry-plain/data" "$ROOT/docker-data" 2>/dev/null ||
			log "WARNING: could not delete $ROOT/docker-data or registry data"
	fi
	rm -rf --one-file-system "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------- services --
start_services() {
	log "starting private dockerd + plain registry under $ROOT"
	services_started=1
	"$SCRIPT_DIR/test-services.sh" start docker plain
	# shellcheck disable=SC1091
	source "$ROOT/env"
	export DOCKER_HOST=$IDPB_TEST_DOCKER_HOST
	# Nothing from the user's docker config (contexts, credential helpers).
	export DOCKER_CONFIG=$WORK/docker-config
	unset DOCKER_CONTEXT
	mkdir -p "$DOCKER_CONFIG"
	REG=$IDPB_TEST_REGISTRY_PLAIN
	DOCKERD_PID=$(<"$ROOT/pids/dockerd.pid")
	DOCKERD_LOG=$ROOT/logs/dockerd.log
	DISTRIBUTION_DIR=$(docker info -f '{{.DockerRootDir}}')/image/$(docker info -f '{{.Driver}}')/distribution

	# Debug log: dockerd then logs "Calling GET /v1.41/images/get?names=..." for
	# every API call. `debug` is reloadable on SIGHUP; the config file is the
	# one test-services.sh gave this private daemon.
	printf '{"debug": true}\n' >"$ROOT/docker-daemon.json"
	kill -HUP "$DOCKERD_PID"
	local i
	for ((i = 0; i < 50; i++)); do
		docker version >/dev/null 2>&1 || true
		grep -q 'level=debug msg="Calling' "$DOCKERD_LOG" && break
		sleep 0.1
	done
	if grep -q 'level=debug msg="Calling' "$DOCKERD_LOG"; then
		COUNT_EXPORTS=1
	else
		log "WARNING: dockerd debug log did not turn on: export requests will not be counted"
		COUNT_EXPORTS=0
	fi
}

# ------------------------------------------------------------------ image --
# copy_tree SRC DST BUDGET_MIB: copy SRC's contents into DST, preserving
# symlinks, modes and hard links. BUDGET_MIB=0 copies everything; otherwise
# the regular files and symlinks of a sorted walk, in order, skipping any file
# that would overflow the budget, until 98 % of it is reached.
copy_tree() {
	local src=$1 dst=$2 budget=$3
	mkdir -p "$dst"
	if ((budget == 0)); then
		cp -a "$src/." "$dst/"
	else
		python3 - "$src" "$budget" >"$WORK/list" <<'EOF'
import os, sys
src, budget = sys.argv[1], int(sys.argv[2]) * 1024 * 1024
total = 0
out = sys.stdout.buffer
for dirpath, dirnames, filenames in os.walk(src):
    dirnames.sort()
    for name in sorted(filenames):
        path = os.path.join(dirpath, name)
        size = os.lstat(path).st_size
        if total + size > budget:
            continue  # e.g. the 110 MB libLLVM: skip it, take smaller files
        total += size
        out.write(os.path.relpath(path, src).encode() + b"\0")
        if total >= budget * 0.98:
            sys.exit(0)
EOF
		tar -C "$src" --null --no-recursion -T "$WORK/list" -cf - | tar -C "$dst" -xf -
	fi
	# Sockets cannot go into a build context; FIFOs and devices make no sense.
	find "$dst" \( -type s -o -type p -o -type b -o -type c \) -delete
}

build_images() {
	local ctx=$WORK/context base_mib=0 mid_mib=0 perl_mib=0
	if [[ $scale == small ]]; then base_mib=60 mid_mib=12 perl_mib=3; fi
	rm -rf "$ctx"
	mkdir -p "$ctx/app"
	log "copying the build context (scale: $scale)"
	copy_tree /usr/lib/x86_64-linux-gnu "$ctx/base" "$base_mib"
	copy_tree /usr/share/doc "$ctx/mid" "$mid_mib"
	copy_tree /usr/share/perl "$ctx/app/perl" "$perl_mib"
	head -c 3000000 /dev/urandom >"$ctx/app/random.bin"
	cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY base /usr/lib/x86_64-linux-gnu
COPY mid /usr/share/doc
COPY app /app
EOF
	CONTEXT_SIZES=$(du -sb "$ctx/base" "$ctx/mid" "$ctx/app" | awk '{printf "%s%s %.1f MB", sep, substr($2, match($2, /[^\/]+$/)), $1/1e6; sep=", "}')
	log "context: $CONTEXT_SIZES"

	local t0=$SECONDS
	log "building $IMAGE_REPO:base (legacy builder)"
	DOCKER_BUILDKIT=0 timeout "$build_timeout" docker build -q -t "$IMAGE_REPO:base" "$ctx" \
		>"$LOGS/build-base.log" 2>&1 || { tail -20 "$LOGS/build-base.log" >&2; die "build of $IMAGE_REPO:base failed"; }
	head -c 3000000 /dev/urandom >"$ctx/app/random.bin"
	log "building $IMAGE_REPO:changed (new random bytes in the app layer)"
	DOCKER_BUILDKIT=0 timeout "$build_timeout" docker build -q -t "$IMAGE_REPO:changed" "$ctx" \
		>"$LOGS/build-changed.log" 2>&1 || { tail -20 "$LOGS/build-changed.log" >&2; die "build of $IMAGE_REPO:changed failed"; }
	if [[ $changed_order == worst ]]; then
		# The worst archive order for a reader that stops once it has what it
		# needs: the app layer's directory listed after the other two, so the
		# whole export crosses the socket. Each try is a new build (new random
		# bytes, new v1 IDs); a third of builds qualify.
		local position tries=1 old_id
		while :; do
			position=$(timeout "$build_timeout" docker save "$IMAGE_REPO:changed" | python3 "$SCRIPT_DIR/bench-layer-order.py")
			[[ $position == "2 3" ]] && break
			if ((tries >= 20)); then
				log "WARNING: no build of $IMAGE_REPO:changed listed the app layer last in 20 tries; keeping this one"
				break
			fi
			old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE_REPO:changed")
			head -c 3000000 /dev/urandom >"$ctx/app/random.bin"
			DOCKER_BUILDKIT=0 timeout "$build_timeout" docker build -q -t "$IMAGE_REPO:changed" "$ctx" \
				>"$LOGS/build-changed.log" 2>&1 || { tail -20 "$LOGS/build-changed.log" >&2; die "build of $IMAGE_REPO:changed failed"; }
			docker rmi "$old_id" >/dev/null 2>&1 || true
			((tries += 1))
		done
		CHANGED_ORDER_NOTE="app layer listed at position $((${position%% *} + 1)) of ${position##* } in the export (worst case: last) after $tries build(s)"
		log "changed image: $CHANGED_ORDER_NOTE"
	else
		CHANGED_ORDER_NOTE="as built (the app layer's place in the export is random)"
	fi
	log "built both images in $((SECONDS - t0))s"

	local a b
	a=$(docker image inspect -f '{{range .RootFS.Layers}}{{.}} {{end}}' "$IMAGE_REPO:base")
	b=$(docker image inspect -f '{{range .RootFS.Layers}}{{.}} {{end}}' "$IMAGE_REPO:changed")
	read -r -a la <<<"$a"
	read -r -a lb <<<"$b"
	((${#la[@]} == 3 && ${#lb[@]} == 3)) || die "expected 3 layers per image, got ${#la[@]} and ${#lb[@]}"
	[[ ${la[0]} == "${lb[0]}" && ${la[1]} == "${lb[1]}" && ${la[2]} != "${lb[2]}" ]] ||
		die "the variant must share exactly the base and mid layers (build cache miss?)"
	IMAGE_SIZE=$(docker image inspect -f '{{.Size}}' "$IMAGE_REPO:base")
	rm -rf "$ctx"

	local warm=("$IMAGE_REPO:base" "$IMAGE_REPO:changed")
	if ((big_mib > 0)); then
		mkdir -p "$ctx"
		head -c $((big_mib << 20)) /dev/urandom >"$ctx/big.bin"
		printf 'FROM scratch\nCOPY big.bin /\n' >"$ctx/Dockerfile"
		log "building $IMAGE_REPO:big (one layer of $big_mib MiB of random bytes)"
		DOCKER_BUILDKIT=0 timeout "$build_timeout" docker build -q -t "$IMAGE_REPO:big" "$ctx" \
			>"$LOGS/build-big.log" 2>&1 || { tail -20 "$LOGS/build-big.log" >&2; die "build of $IMAGE_REPO:big failed"; }
		rm -rf "$ctx"
		warm+=("$IMAGE_REPO:big")
	fi

	# Warm the page cache, so that the first measured run does not pay for it.
	log "warming up: docker save of ${warm[*]}"
	timeout "$build_timeout" docker save "${warm[@]}" >/dev/null
}

# --------------------------------------------------------------- machine --
describe_machine() {
	local f=$LOGS/machine.txt cpu mem
	cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
	mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
	{
		printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
		printf 'cpu\t%s x %s\n' "$(nproc)" "${cpu:-unknown}"
		printf 'memory\t%s\n' "$mem"
		printf 'kernel\t%s\n' "$(uname -sr)"
		printf 'load average at start\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
		printf 'dockerd\t%s, storage driver %s, API %s\n' \
			"$(docker version -f '{{.Server.Version}}')" "$(docker info -f '{{.Driver}}')" \
			"$(docker version -f '{{.Server.APIVersion}}')"
		printf 'docker CLI\t%s\n' "$(docker version -f '{{.Client.Version}}' 2>/dev/null)"
		printf 'skopeo\t%s\n' "$(skopeo --version | awk '{print $3}')"
		printf 'registry\t%s\n' "$(docker-registry --version 2>/dev/null | awk '{print $2, $3}')"
		printf 'idpbuilder-push\t%s (%s%s)%s\n' "$("$bin" --version 2>/dev/null | head -n 1 | awk '{print $NF}')" \
			"$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
			"$(git -C "$REPO_ROOT" diff --quiet HEAD 2>/dev/null || echo ', uncommitted changes')" \
			"${ours_args:+ args: ${ours_args[*]}}"
		printf 'workload\t%s: %s; image %.1f MB uncompressed\n' "$scale" "$CONTEXT_SIZES" \
			"$(awk -v s="$IMAGE_SIZE" 'BEGIN {print s/1e6}')"
		printf 'rounds\t%s\n' "$rounds"
		printf 'changed image\t%s\n' "$CHANGED_ORDER_NOTE"
		((big_mib == 0)) || printf 'big image\tone layer of %s MiB of random bytes, one cold push per tool\n' "$big_mib"
		printf 'client caches\tempty before each cold push, then kept for the round (ours: XDG_CACHE_HOME; docker: distribution metadata; skopeo: blob-info cache, %s)\n' \
			"$([[ $skopeo_cache == round ]] && echo 'kept for the round' || echo 'emptied before every skopeo push')"
	} >"$f"
}

# ------------------------------------------------------------------ runs --
dockerd_cpu_ticks() {
	local stat
	stat=$(<"/proc/$DOCKERD_PID/stat")
	stat=${stat##*) }
	# After "pid (comm) ", field 14 (utime) and 15 (stime) are words 12 and 13.
	read -r -a f <<<"$stat"
	echo $((f[11] + f[12]))
}

# manifest_size REPO TAG -> "BYTES LAYERS" of the manifest the registry serves.
manifest_size() {
	curl --noproxy '*' -sf --max-time 30 \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
		"http://$REG/v2/$1/manifests/$2" |
		python3 -c 'import json, sys; m = json.load(sys.stdin); print(sum(l["size"] for l in m["layers"]), len(m["layers"]))' \
			2>/dev/null || echo "- -"
}

clear_docker_distribution_metadata() {
	local d
	for d in v2metadata-by-diffid diffid-by-digest; do
		[[ -d $DISTRIBUTION_DIR/$d ]] && find "$DISTRIBUTION_DIR/$d" -mindepth 1 -delete
	done
	return 0
}

# run_one ROUND TOOL SCENARIO: one measured push, one line in $RUNS.
run_one() {
	local round=$1 tool=$2 scenario=$3
	local tag=base repo cache cmd=()
	[[ $scenario == changed || $scenario == big ]] && tag=$scenario
	repo=r$round-$tool/$IMAGE_REPO
	cache=$WORK/cache/r$round-$tool
	if [[ $scenario == cold || $scenario == big || ($tool == skopeo && $skopeo_cache == run) ]]; then
		rm -rf "$cache"
		mkdir -p "$cache"
	fi
	case $tool in
	ours)
		cmd=(env "XDG_CACHE_HOME=$cache" "$bin" --registry "http://$REG/r$round-$tool"
			"${ours_args[@]}" "$IMAGE_REPO:$tag")
		;;
	docker)
		[[ $scenario == cold || $scenario == big ]] && clear_docker_distribution_metadata
		docker tag "$IMAGE_REPO:$tag" "$REG/$repo:$tag"
		cmd=(docker push "$REG/$repo:$tag")
		;;
	skopeo)
		# shellcheck disable=SC2016 # expanded by the inner shell
		cmd=(unshare --mount --propagation private sh -c
			'mount --bind "$0" /var/lib/containers/cache && exec skopeo copy "$@"'
			"$cache" --src-daemon-host "$DOCKER_HOST" --dest-tls-verify=false
			"docker-daemon:$IMAGE_REPO:$tag" "docker://$REG/$repo:$tag")
		;;
	esac

	local name=r$round-$scenario-$tool
	local out_f=$LOGS/$name.out err_f=$LOGS/$name.err time_f=$LOGS/$name.time
	local log_off cpu0 cpu1 t0 t1 rc=0
	log_off=$(stat -c %s "$DOCKERD_LOG")
	cpu0=$(dockerd_cpu_ticks)
	t0=$EPOCHREALTIME
	/usr/bin/time -f '%U %S %M' -o "$time_f" \
		timeout --kill-after=10 "$push_timeout" "${cmd[@]}" >"$out_f" 2>"$err_f" || rc=$?
	t1=$EPOCHREALTIME
	cpu1=$(dockerd_cpu_ticks)

	local user sys rss wall dcpu exports size layers note=''
	read -r user sys rss < <(grep -E '^[0-9.]+ [0-9.]+ [0-9]+$' "$time_f" | tail -1) || true
	wall=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
	dcpu=$(python3 -c "print(f'{($cpu1 - $cpu0) / $(getconf CLK_TCK):.2f}')")
	if ((COUNT_EXPORTS)); then
		exports=$(tail -c +$((log_off + 1)) "$DOCKERD_LOG" |
			grep -cE 'msg="Calling (GET|HEAD) (/v[0-9.]+)?/images/([^ ]+/)?get[?"]' || true)
	else
		exports=-
	fi
	read -r size layers < <(manifest_size "$repo" "$tag")
	if ((rc != 0)); then
		note="exit $rc"
		((rc == 124 || rc == 137)) && note="timeout after ${push_timeout}s"
		log "FAILED: $name ($note); last lines of $err_f:"
		tail -5 "$err_f" >&2 || true
		failures=$((failures + 1))
	fi
	if [[ $tool == docker && ($scenario == cold || $scenario == big) ]] && grep -qE 'Mounted from|Layer already exists' "$out_f"; then
		note+="${note:+; }cold docker push skipped layers (cross-repo mount / already exists)"
		log "WARNING: $name: $note"
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$tool" "$scenario" "$rc" \
		"$wall" "${user:--}" "${sys:--}" "${rss:--}" "$dcpu" "$exports" "${size:--}" "${layers:--}" "$note" >>"$RUNS"
	log "$(printf '%-20s wall %7ss  cpu %s+%ss  rss %s KiB  dockerd %ss  exports %s  size %s' \
		"$name" "$wall" "${user:--}" "${sys:--}" "${rss:--}" "$dcpu" "$exports" "${size:--}")"
}

# ------------------------------------------------------------------- main --
main() {
	local started=$SECONDS
	start_services
	rm -rf "$WORK" "$LOGS"
	mkdir -p "$WORK/cache" "$LOGS" "$DOCKER_CONFIG"
	[[ -d /var/lib/containers/cache ]] || mkdir -p /var/lib/containers/cache
	build_images
	describe_machine
	printf 'round\ttool\tscenario\trc\twall_s\tuser_s\tsys_s\tmaxrss_kib\tdockerd_cpu_s\texports\tcompressed_bytes\tlayers\tnote\n' >"$RUNS"

	failures=0
	local round scenario i tool done_rounds=0 bench_start=$SECONDS
	for ((round = 1; round <= rounds; round++)); do
		if ((round > 1 && SECONDS - started >= max_seconds)); then
			log "WARNING: --max-seconds $max_seconds reached; stopping after $done_rounds round(s)"
			break
		fi
		log "round $round/$rounds"
		for scenario in "${SCENARIOS[@]}"; do
			for ((i = 0; i < ${#TOOLS[@]}; i++)); do
				tool=${TOOLS[(i + round - 1) % ${#TOOLS[@]}]}
				run_one "$round" "$tool" "$scenario"
			done
		done
		# Untag this round's docker push tags (the images themselves stay).
		docker rmi "$REG/r$round-docker/$IMAGE_REPO:base" "$REG/r$round-docker/$IMAGE_REPO:changed" >/dev/null 2>&1 || true
		done_rounds=$round
	done
	if ((big_mib > 0)); then
		log "big: one cold push per tool of the single $big_mib MiB layer"
		for tool in "${TOOLS[@]}"; do
			run_one 1 "$tool" big
		done
		docker rmi "$REG/r1-docker/$IMAGE_REPO:big" >/dev/null 2>&1 || true
	fi
	log "measured $done_rounds round(s) in $((SECONDS - bench_start))s"
	printf 'rounds done\t%s of %s\n' "$done_rounds" "$rounds" >>"$LOGS/machine.txt"

	mkdir -p "$(dirname "$out")"
	python3 "$SCRIPT_DIR/bench-report.py" --runs "$RUNS" --machine "$LOGS/machine.txt" --scale "$scale" --out "$out"
	log "results written to $out (raw runs: $RUNS)"
	((failures == 0)) || die "$failures push(es) failed; see $LOGS"
}

main
