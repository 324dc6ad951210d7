#!/usr/bin/env bash
# Private, throw-away services for the idpbuilder-push integration tests.
#
#   scripts/test-services.sh start [SERVICE...]   # SERVICE: docker podman plain tls gitea token (default: all)
#   scripts/test-services.sh stop
#
# Everything lives under one state dir, ${IDPB_TEST_ROOT:-<repo>/.test-services}:
# a private containerd + dockerd, a rootful Podman API service and three
# docker-registry (distribution 2.8) instances. Nothing touches the host's
# own daemons, sockets or image stores, and every TCP port is bound to
# 127.0.0.1 only. When everything answers, `start` writes $IDPB_TEST_ROOT/env:
# one `export NAME=VALUE` line per variable. VALUE is either bare or, when it
# holds spaces (only IDPB_TEST_PODMAN_ARGS), wrapped in single quotes; it never
# contains quotes or backslashes, so tests can `source` it or parse it by hand.
# The env file is written last and removed first, so its presence means "up".
#
# `start` is idempotent-ish: it first stops whatever a previous (possibly
# crashed) run left behind, then wipes the state dir so every run starts from
# empty image stores and registries. `stop` kills only processes whose pid
# file is in the state dir (and whose command line still names the state dir,
# to survive pid reuse), then removes sockets, pid files and runtime dirs. Data
# and logs ($IDPB_TEST_ROOT/logs/*.log) are kept for post-mortem debugging.
#
# Token auth, as checked in distribution v2.8.2 registry/auth/token/token.go
# and accesscontroller.go (the issuer itself is NOT started here: the Rust test
# suite serves it in-process on $IDPB_TEST_TOKEN_PORT, answering the realm
# http://127.0.0.1:$IDPB_TEST_TOKEN_PORT/token):
#   * The registry trusts exactly the certs in `rootcertbundle`. It looks up the
#     signing key from the JWT header, in this order: `x5c` (cert chain that must
#     verify up to a rootcertbundle cert), `jwk`, then `kid`, which must equal the
#     libtrust key ID of a rootcertbundle cert's public key. We give the issuer
#     the key id precomputed: IDPB_TEST_TOKEN_KID = base32(sha256(DER
#     SubjectPublicKeyInfo)[:30]), no '=' padding, 4-char groups joined by ':'.
#   * Header that was accepted: {"typ":"JWT","alg":"ES256","kid":"<KID>"}
#     (typ is not checked; alg must be ES256 for a P-256 key). Also accepted
#     instead of kid: "x5c":["<standard base64 of token/cert.der>"].
#   * Signature: raw r||s, 32 bytes each (64 bytes total), base64url without
#     padding (ring: ECDSA_P256_SHA256_FIXED_SIGNING; it loads key.der fine).
#     A DER ECDSA signature (openssl dgst -sign, ring's *_ASN1_SIGNING) is
#     rejected ("signature length is 72 octets long, should be 64").
#   * Claims that were accepted:
#       {"iss":"idpb-test-issuer","sub":"<user>","aud":"idpb-test-registry",
#        "exp":now+300,"nbf":now-10,"iat":now,"jti":"<random>",
#        "access":[{"type":"repository","name":"<repo>","actions":["pull","push"]}]}
#     `aud` must be a plain JSON string in 2.8 (an array fails to unmarshal:
#     the token is treated as malformed). iss/aud are compared exactly; exp
#     and nbf get 60 s leeway. For GET /v2/ no access entry is needed ("access":[]
#     works); for blob/manifest calls each requested repository:NAME:ACTION must
#     be granted: GET/HEAD need "pull", POST/PUT/PATCH need "pull" AND "push",
#     DELETE needs "delete"; a cross-repo mount (?mount=&from=SRC) also needs
#     "pull" on SRC; "*" grants every action. _catalog needs
#     {"type":"registry","name":"catalog","actions":["*"]}. A missing grant
#     gives 401 with error="insufficient_scope" in the challenge.
#   * Without a valid token the registry answers 401 with
#     WWW-Authenticate: Bearer realm="http://127.0.0.1:PORT/token",service="idpb-test-registry"[,scope="repository:NAME:pull,push"]
#     and adds error="invalid_token" when a token was sent but rejected.
#
# Requires root (rootful dockerd/podman) and: dockerd containerd docker podman
# docker-registry htpasswd openssl curl python3 setsid. scripts/test.sh
# installs the Debian packages that provide them.
set -euo pipefail

readonly ALL_SERVICES=(docker podman plain tls gitea token)
# Fixed names the Rust token issuer and the registry must agree on.
readonly TOKEN_SERVICE=idpb-test-registry
readonly TOKEN_ISSUER=idpb-test-issuer
# Bounded waits: a healthy start takes a few seconds; anything slower is broken.
readonly DAEMON_TIMEOUT=60
readonly REGISTRY_TIMEOUT=30
readonly STOP_TIMEOUT=20

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${IDPB_TEST_ROOT:-$REPO_ROOT/.test-services}
# Marker proving the state dir is ours, so `start` never wipes a directory the
# user pointed IDPB_TEST_ROOT at by mistake (e.g. $HOME).
readonly MARKER=.idpb-test-services

log() { printf 'test-services: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# Print the tail of a service log, so a failure is diagnosable from CI output.
show_log() {
	local file=$1
	if [[ -f $file ]]; then
		log "---- last 40 lines of $file ----"
		tail -n 40 "$file" >&2 || true
		log "---- end of $file ----"
	fi
}

# The state dir must be absolute (it is baked into the env file and daemon
# flags) and free of whitespace (IDPB_TEST_PODMAN_ARGS is word-split by tests).
normalize_root() {
	[[ $ROOT == /* ]] || ROOT=$PWD/$ROOT
	ROOT=${ROOT%/}
	[[ -n $ROOT ]] || die "IDPB_TEST_ROOT must not be /"
	[[ $ROOT != *[[:space:]\'\"\\]* ]] || die "IDPB_TEST_ROOT must not contain whitespace, quotes or backslashes: '$ROOT'"
	# Unix socket paths are limited to 107 bytes (sun_path[108]). The longest
	# one below $ROOT is dockerd's /dx/libnetwork/<12 hex>.sock (+32), which
	# is why dockerd's exec-root is "dx" and containerd's sockets live in "ctd":
	# a CI checkout like /home/runner/work/<repo>/<repo>/.test-services fits.
	if ((${#ROOT} > 75)); then
		die "IDPB_TEST_ROOT is ${#ROOT} chars long; unix socket paths inside it would exceed 108 bytes. Use a shorter one, e.g. IDPB_TEST_ROOT=/tmp/idpb-test"
	fi
}

# podman refuses a --runroot longer than 50 characters (conmon's attach
# sockets live there). Keep it inside $ROOT when that fits, otherwise use a
# short per-$ROOT directory under /run (derived from $ROOT, so `stop` finds it).
podman_runroot() {
	local r=$ROOT/podman-run
	if ((${#r} > 50)); then
		r=/run/idpb-test-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)/podman-run
	fi
	printf '%s' "$r"
}

pid_file() { printf '%s/pids/%s.pid' "$ROOT" "$1"; }

# True when the pid in pid file $1 is alive and still one of our processes.
# Checking that the command line names $ROOT guards against pid reuse after a
# crash or reboot: we never signal an unrelated process.
pid_is_ours() {
	local file=$1 pid cmdline
	[[ -f $file ]] || return 1
	pid=$(<"$file")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $cmdline == *"$ROOT/"* ]]
}

# Start "$@" detached (own session, stdio to a log file) so that it outlives
# this script, never holds the caller's stdout open (which would hang
# `$(...)`/pipes), and does not get the terminal's Ctrl-C before the caller's
# trap has run `stop`. The child writes its own pid right before exec'ing, so
# the pid file is correct whether or not setsid had to fork.
spawn() {
	local name=$1 logfile=$2
	shift 2
	local pidf
	pidf=$(pid_file "$name")
	rm -f "$pidf"
	# shellcheck disable=SC2016 # $$ and $@ must expand in the child shell.
	setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidf" "$@" </dev/null >>"$logfile" 2>&1 &
	local i
	for ((i = 0; i < 50; i++)); do
		[[ -s $pidf ]] && return 0
		sleep 0.1
	done
	die "$name did not start (no pid file); see $logfile"
}

# wait_for NAME TIMEOUT LOGFILE CMD...: poll CMD until it succeeds. Fail fast
# with the log tail if the service process died, or when TIMEOUT expires.
wait_for() {
	local name=$1 timeout=$2 logfile=$3
	shift 3
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if ! pid_is_ours "$(pid_file "$name")"; then
			show_log "$logfile"
			die "$name exited during startup"
		fi
		if ((SECONDS >= deadline)); then
			show_log "$logfile"
			die "$name did not become ready within ${timeout}s"
		fi
		sleep 0.2
	done
}

# True while pid $1 runs. A zombie counts as gone: our daemons are reparented
# to PID 1 once `start` exits, and some inits (e.g. in VMs/containers) reap
# only every few seconds, which would otherwise make `stop` wait for nothing.
proc_running() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != [ZX] ]]
}

stop_one() {
	local name=$1 pidf pid i
	pidf=$(pid_file "$name")
	[[ -f $pidf ]] || return 0
	if pid_is_ours "$pidf"; then
		pid=$(<"$pidf")
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
			proc_running "$pid" || break
			sleep 0.1
		done
		if proc_running "$pid"; then
			log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.2
		fi
	fi
	rm -f "$pidf"
}

# dockerd bind-mounts --data-root onto itself (to make it rshared) and only
# undoes that on a clean shutdown; after a crash or SIGKILL the mount stays and
# makes the wipe in `start` fail with EBUSY. Unmount anything below $ROOT,
# deepest first. mountinfo field 5 is the mount point, octal-escaped (\040).
unmount_below_root() {
	local mp
	awk -v root="$ROOT/" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r mp; do
		mp=$(printf '%b' "$mp")
		log "unmounting leftover mount $mp"
		umount "$mp" 2>/dev/null || umount -l "$mp" || log "WARNING: could not unmount $mp"
	done
}

do_stop() {
	normalize_root
	[[ -d $ROOT ]] || return 0
	# Env first: from here on tests must not believe the services are up.
	rm -f "$ROOT/env" "$ROOT/env.tmp"
	# Clients before the daemons they use; dockerd before its containerd.
	local name
	for name in registry-token registry-gitea registry-tls registry-plain podman dockerd containerd; do
		stop_one "$name"
	done
	unmount_below_root
	# Runtime state only (the equivalent of /run): sockets, pid files, locks.
	# --one-file-system so a stray mount below never leads rm outside $ROOT.
	rm -f "$ROOT/docker.sock" "$ROOT/podman.sock" "$ROOT/docker.pid"
	local runroot
	runroot=$(podman_runroot)
	rm -rf --one-file-system "$ROOT/pids" "$ROOT/ctd" "$ROOT/dx" \
		"$runroot" "$ROOT/podman-tmp"
	if [[ $runroot == /run/idpb-test-* ]]; then rmdir "${runroot%/*}" 2>/dev/null || true; fi
}

require_cmds() {
	local missing=() c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || missing+=("$c")
	done
	((${#missing[@]} == 0)) || die "missing commands: ${missing[*]} (scripts/test.sh installs them: apt-get install -y docker.io docker-registry podman skopeo apache2-utils openssl curl python3)"
}

# Pick N distinct free TCP ports on 127.0.0.1. All sockets stay bound until
# every port is chosen, so the N ports differ; the window between closing
# them and the services binding is tiny.
free_ports() {
	python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

rand_hex() { openssl rand -hex "$1"; }

# HTTP status of a request; curl's own failure (connection refused) => 000.
# --noproxy: CI machines often export http_proxy, which must not see loopback.
http_code() {
	curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true
}
http_code_is() {
	local want=$1
	shift
	[[ $(http_code "$@") == "$want" ]]
}

ENV_LINES=()
add_env() {
	local name=$1 value=$2
	if [[ $value == *" "* ]]; then
		ENV_LINES+=("export $name='$value'")
	else
		ENV_LINES+=("export $name=$value")
	fi
}

# A FROM-scratch context with one COPY: the only kind of image we can build
# here (no base images can be pulled in the test environment).
make_probe_context() {
	local dir=$ROOT/probe-context
	mkdir -p "$dir"
	printf 'idpb test probe\n' >"$dir/probe.txt"
	printf 'FROM scratch\nCOPY probe.txt /probe.txt\n' >"$dir/Dockerfile"
	printf '%s' "$dir"
}

start_docker() {
	local logs=$ROOT/logs sock=$ROOT/docker.sock
	# dockerd 20.10 silently attaches to the *system* containerd whenever
	# /run/containerd/containerd.sock exists (and only supervises its own
	# containerd otherwise), which would share the "moby" namespace with the
	# host's dockerd. Running our own containerd, with every path under $ROOT
	# and an explicit --containerd, makes the setup identical on every host.
	mkdir -p "$ROOT/ctd" "$ROOT/containerd-root"
	cat >"$ROOT/containerd.toml" <<EOF
version = 2
root = "$ROOT/containerd-root"
state = "$ROOT/ctd"
# Kubernetes CRI is useless here and would want CNI config from the host.
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$ROOT/ctd/c.sock"
[ttrpc]
  address = "$ROOT/ctd/c.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  # The default would create /opt/containerd on the host.
  path = "$ROOT/containerd-root/opt"
EOF
	spawn containerd "$logs/containerd.log" containerd --config "$ROOT/containerd.toml" --log-level warn
	wait_for containerd "$DAEMON_TIMEOUT" "$logs/containerd.log" test -S "$ROOT/ctd/c.sock"

	# An explicit empty config file so the host's /etc/docker/daemon.json
	# (mirrors, "hosts", storage driver...) cannot change or break this daemon.
	printf '{}\n' >"$ROOT/docker-daemon.json"
	# vfs: works on any filesystem, including overlay-on-overlay in containers.
	# No iptables/bridge: the tests never run containers, and the sandbox may
	# not allow netfilter. 127.0.0.0/8 is an insecure registry by default, so
	# this daemon can push/pull plain-HTTP registry A without extra flags.
	spawn dockerd "$logs/dockerd.log" dockerd \
		--config-file "$ROOT/docker-daemon.json" \
		--containerd "$ROOT/ctd/c.sock" \
		--storage-driver=vfs --iptables=false --bridge=none \
		--host "unix://$sock" \
		--data-root "$ROOT/docker-data" \
		--exec-root "$ROOT/dx" \
		--pidfile "$ROOT/docker.pid"
	wait_for dockerd "$DAEMON_TIMEOUT" "$logs/dockerd.log" docker -H "unix://$sock" version

	# Prove a FROM-scratch legacy build works (BuildKit would need images or
	# the buildx plugin), then remove the probe so tests start with no images.
	local ctx
	ctx=$(make_probe_context)
	if ! DOCKER_BUILDKIT=0 docker -H "unix://$sock" build -q -t idpb-test-probe:latest "$ctx" >"$logs/docker-probe.log" 2>&1; then
		show_log "$logs/docker-probe.log"
		show_log "$logs/dockerd.log"
		die "dockerd cannot build a FROM scratch image"
	fi
	docker -H "unix://$sock" rmi -f idpb-test-probe:latest >>"$logs/docker-probe.log" 2>&1

	add_env IDPB_TEST_DOCKER_HOST "unix://$sock"
	log "dockerd ready at unix://$sock"
}

start_podman() {
	local logs=$ROOT/logs sock=$ROOT/podman.sock
	# Every podman path is private (under $ROOT, except a too-long runroot, see
	# podman_runroot): --tmpdir matters because the
	# default (/run/libpod) is shared with the host's podman. cgroupfs and the
	# file events backend because there is no systemd/journald in containers.
	# Tests must pass exactly these args to the podman CLI so that CLI and API
	# service see one and the same storage.
	local runroot args
	runroot=$(podman_runroot)
	args="--storage-driver=vfs --root $ROOT/podman-root --runroot $runroot --tmpdir $ROOT/podman-tmp --cgroup-manager=cgroupfs --events-backend=file"
	local -a argv
	read -r -a argv <<<"$args"
	spawn podman "$logs/podman.log" podman "${argv[@]}" system service --time=0 "unix://$sock"
	wait_for podman "$DAEMON_TIMEOUT" "$logs/podman.log" \
		curl --noproxy '*' -sf --max-time 5 --unix-socket "$sock" http://d/_ping

	# `podman build` into the service's storage must work and the Docker-compat
	# API must find the result under its fully qualified name (podman tags
	# short names as localhost/NAME). `DOCKER_BUILDKIT=0 docker -H
	# unix://podman.sock build` also works, but it tags as docker.io/library/NAME.
	local ctx code
	ctx=$(make_probe_context)
	if ! podman "${argv[@]}" build -q -t localhost/idpb-test-probe:latest "$ctx" >"$logs/podman-probe.log" 2>&1; then
		show_log "$logs/podman-probe.log"
		die "podman cannot build a FROM scratch image"
	fi
	code=$(http_code --unix-socket "$sock" http://d/v1.41/images/localhost/idpb-test-probe:latest/json)
	[[ $code == 200 ]] || die "podman compat API does not see the probe image (HTTP $code)"
	podman "${argv[@]}" rmi -f localhost/idpb-test-probe:latest >>"$logs/podman-probe.log" 2>&1

	add_env IDPB_TEST_PODMAN_HOST "unix://$sock"
	add_env IDPB_TEST_PODMAN_ARGS "$args"
	log "podman API ready at unix://$sock"
}

# write_registry_config NAME PORT [EXTRA_YAML]
write_registry_config() {
	local name=$1 port=$2 extra=${3:-}
	local dir=$ROOT/registry-$name
	mkdir -p "$dir/data"
	# No storage.cache section on purpose: the blob descriptor cache keeps
	# answering for deleted blobs, which would confuse delete/re-push tests.
	cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: $(rand_hex 16)
$extra
EOF
}

start_registry() {
	local name=$1 port=$2 expect=$3
	shift 3
	local logfile=$ROOT/logs/registry-$name.log
	spawn "registry-$name" "$logfile" docker-registry serve "$ROOT/registry-$name/config.yml"
	wait_for "registry-$name" "$REGISTRY_TIMEOUT" "$logfile" http_code_is "$expect" "$@"
}

start_plain() {
	local port=$1
	write_registry_config plain "$port"
	start_registry plain "$port" 200 "http://127.0.0.1:$port/v2/"
	add_env IDPB_TEST_REGISTRY_PLAIN "127.0.0.1:$port"
	add_env IDPB_TEST_REGISTRY_PLAIN_DIR "$ROOT/registry-plain/data"
	log "registry A (plain HTTP, no auth) ready at 127.0.0.1:$port"
}

start_tls() {
	local port=$1 pki=$ROOT/pki user=idpb password
	password=$(rand_hex 16)
	mkdir -p "$pki"
	# Private CA + leaf, both P-256. The extensions are what rustls/webpki
	# insists on: CA:TRUE + keyCertSign on the CA, CA:FALSE + serverAuth + SANs
	# (webpki ignores the CN) on the leaf. Fresh keys every run.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$pki/ca-key.pem" -out "$pki/ca.pem" -days 30 \
		-subj "/CN=idpbuilder-push test CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$pki/server-key.pem" -out "$pki/server.csr" \
		-subj "/CN=localhost" 2>/dev/null
	cat >"$pki/server-ext.cnf" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
EOF
	openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca-key.pem" \
		-CAcreateserial -out "$pki/server.pem" -days 30 \
		-extfile "$pki/server-ext.cnf" 2>/dev/null
	# bcrypt is the only hash distribution's htpasswd backend accepts.
	htpasswd -Bbn "$user" "$password" >"$pki/htpasswd"

	write_registry_config tls "$port" "  tls:
    certificate: $pki/server.pem
    key: $pki/server-key.pem
auth:
  htpasswd:
    realm: idpb-test
    path: $pki/htpasswd"
	start_registry tls "$port" 401 --cacert "$pki/ca.pem" "https://127.0.0.1:$port/v2/"
	http_code_is 200 --cacert "$pki/ca.pem" -u "$user:$password" "https://127.0.0.1:$port/v2/" ||
		die "registry B rejects the generated htpasswd credentials"

	add_env IDPB_TEST_REGISTRY_TLS "127.0.0.1:$port"
	add_env IDPB_TEST_CA_FILE "$pki/ca.pem"
	add_env IDPB_TEST_TLS_USER "$user"
	add_env IDPB_TEST_TLS_PASSWORD "$password"
	log "registry B (HTTPS + htpasswd) ready at 127.0.0.1:$port"
}

# Registry D stands in for idpbuilder's Gitea: like idpbuilder's ingress it
# serves a self-signed certificate marked CA:TRUE as the leaf (which webpki
# refuses even as a root, hence certificate pinning), and takes Basic auth
# for the mixed-case admin user whose namespace must be lowercase.
start_gitea() {
	local port=$1 pki=$ROOT/pki-gitea user=giteaAdmin password
	password=$(rand_hex 16)
	mkdir -p "$pki"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$pki/key.pem" -out "$pki/cert.pem" -days 30 \
		-subj "/O=cnoe.io/CN=localhost" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
		-addext "extendedKeyUsage=serverAuth" \
		-addext "subjectAltName=DNS:localhost,DNS:*.localhost,IP:127.0.0.1" 2>/dev/null
	htpasswd -Bbn "$user" "$password" >"$pki/htpasswd"
	write_registry_config gitea "$port" "  tls:
    certificate: $pki/cert.pem
    key: $pki/key.pem
auth:
  htpasswd:
    realm: gitea-like
    path: $pki/htpasswd"
	start_registry gitea "$port" 401 --cacert "$pki/cert.pem" "https://127.0.0.1:$port/v2/"
	add_env IDPB_TEST_REGISTRY_GITEA "localhost:$port"
	add_env IDPB_TEST_GITEA_PORT "$port"
	add_env IDPB_TEST_GITEA_CERT "$pki/cert.pem"
	add_env IDPB_TEST_GITEA_USER "$user"
	add_env IDPB_TEST_GITEA_PASSWORD "$password"
	log "registry D (Gitea-like: HTTPS with a CA:TRUE leaf + htpasswd) ready at localhost:$port"
}

start_token() {
	local port=$1 token_port=$2 dir=$ROOT/token user=idpb-token password kid
	password=$(rand_hex 16)
	mkdir -p "$dir"
	# ES256 signing key for the in-process Rust issuer: PKCS#8 DER is what
	# ring's EcdsaKeyPair::from_pkcs8 reads. The registry only needs a cert
	# carrying the public key; self-signed is fine since only its key is used
	# for `kid` lookups (and as a root for `x5c` chains).
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/key.pem" 2>/dev/null
	openssl pkcs8 -topk8 -nocrypt -in "$dir/key.pem" -outform DER -out "$dir/key.der"
	openssl req -x509 -new -key "$dir/key.pem" -out "$dir/cert.pem" -days 30 \
		-subj "/CN=$TOKEN_ISSUER" 2>/dev/null
	openssl x509 -in "$dir/cert.pem" -outform DER -out "$dir/cert.der"
	# libtrust key ID (see header comment): 30 bytes = 240 bits = 48 base32
	# chars, no padding, then 12 groups of 4 joined by ':'.
	kid=$(openssl pkey -in "$dir/key.pem" -pubout -outform DER |
		openssl dgst -sha256 -binary | head -c 30 | base32 -w0 | tr -d '=' |
		sed -e 's/..../&:/g' -e 's/:$//')
	[[ $kid =~ ^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$ ]] || die "bad libtrust key id computed: '$kid'"

	write_registry_config token "$port" "auth:
  token:
    realm: http://127.0.0.1:$token_port/token
    service: $TOKEN_SERVICE
    issuer: $TOKEN_ISSUER
    rootcertbundle: $dir/cert.pem"
	start_registry token "$port" 401 "http://127.0.0.1:$port/v2/"
	local challenge
	challenge=$(curl --noproxy '*' -s -D - -o /dev/null --max-time 5 "http://127.0.0.1:$port/v2/" | tr -d '\r' | grep -i '^www-authenticate:' || true)
	[[ $challenge == *"Bearer realm=\"http://127.0.0.1:$token_port/token\""* ]] ||
		die "registry C sent an unexpected challenge: '$challenge'"

	add_env IDPB_TEST_REGISTRY_TOKEN "127.0.0.1:$port"
	add_env IDPB_TEST_TOKEN_PORT "$token_port"
	add_env IDPB_TEST_TOKEN_SERVICE "$TOKEN_SERVICE"
	add_env IDPB_TEST_TOKEN_ISSUER "$TOKEN_ISSUER"
	add_env IDPB_TEST_TOKEN_KEY_DER "$dir/key.der"
	add_env IDPB_TEST_TOKEN_CERT_PEM "$dir/cert.pem"
	add_env IDPB_TEST_TOKEN_CERT_DER "$dir/cert.der"
	add_env IDPB_TEST_TOKEN_KID "$kid"
	add_env IDPB_TEST_TOKEN_USER "$user"
	add_env IDPB_TEST_TOKEN_PASSWORD "$password"
	log "registry C (HTTP + token auth, issuer expected on 127.0.0.1:$token_port) ready at 127.0.0.1:$port"
}

do_start() {
	local started_at=$SECONDS
	local -a services=("$@")
	((${#services[@]})) || services=("${ALL_SERVICES[@]}")
	local s want_docker=0 want_podman=0 want_plain=0 want_tls=0 want_gitea=0 want_token=0
	for s in "${services[@]}"; do
		case $s in
		docker) want_docker=1 ;;
		podman) want_podman=1 ;;
		plain) want_plain=1 ;;
		tls) want_tls=1 ;;
		gitea) want_gitea=1 ;;
		token) want_token=1 ;;
		*) die "unknown service '$s' (known: ${ALL_SERVICES[*]})" ;;
		esac
	done

	((EUID == 0)) || die "must run as root: the private dockerd and podman service are rootful"
	local -a cmds=(curl openssl python3 setsid base32)
	if ((want_docker)); then cmds+=(containerd dockerd docker); fi
	if ((want_podman)); then cmds+=(podman); fi
	if ((want_plain || want_tls || want_gitea || want_token)); then cmds+=(docker-registry); fi
	if ((want_tls || want_gitea)); then cmds+=(htpasswd); fi
	require_cmds "${cmds[@]}"

	normalize_root
	# Clean up after a previous run, crashed or not.
	do_stop
	if [[ -d $ROOT && ! -e $ROOT/$MARKER && -n $(ls -A "$ROOT") ]]; then
		die "$ROOT is not empty and was not created by this script; refusing to wipe it"
	fi
	mkdir -p "$ROOT"
	# Keep the marker, so that a wipe that fails halfway can be retried.
	find "$ROOT" -mindepth 1 -maxdepth 1 ! -name "$MARKER" -exec rm -rf --one-file-system {} + ||
		die "could not wipe $ROOT (busy mount or process still using it?)"
	touch "$ROOT/$MARKER"
	mkdir -p "$ROOT/logs" "$ROOT/pids"

	# On any failure below, do not leave half a rig running.
	trap 'rc=$?; if ((rc != 0)); then log "start failed; stopping what was started"; do_stop; fi' EXIT

	local plain_port tls_port token_reg_port token_port gitea_port
	read -r plain_port tls_port token_reg_port token_port gitea_port <<<"$(free_ports 5)"

	ENV_LINES=()
	add_env IDPB_TEST_SERVICES 1
	add_env IDPB_TEST_ROOT "$ROOT"
	# Registries first: they are quick, and docker/podman probes are slower.
	if ((want_plain)); then start_plain "$plain_port"; fi
	if ((want_tls)); then start_tls "$tls_port"; fi
	if ((want_gitea)); then start_gitea "$gitea_port"; fi
	if ((want_token)); then start_token "$token_reg_port" "$token_port"; fi
	if ((want_docker)); then start_docker; fi
	if ((want_podman)); then start_podman; fi

	# Atomic rename: a reader never sees a half-written env file.
	printf '%s\n' "${ENV_LINES[@]}" >"$ROOT/env.tmp"
	mv "$ROOT/env.tmp" "$ROOT/env"
	trap - EXIT
	log "all services ready in $((SECONDS - started_at))s; env file: $ROOT/env"
}

main() {
	local cmd=${1:-}
	case $cmd in
	start)
		shift
		do_start "$@"
		;;
	stop)
		((EUID == 0)) || die "must run as root"
		do_stop
		log "stopped (data and logs kept in $ROOT)"
		;;
	*)
		echo "usage: $0 start [docker|podman|plain|tls|gitea|token]... | stop" >&2
		exit 2
		;;
	esac
}

main "$@"
