#!/usr/bin/env bash
# Build the release archive for this machine's platform and record it in the
# krew manifest.
#
#   scripts/release.sh [--binary PATH] [--dist DIR] [--manifest-out FILE]
#   scripts/release.sh --archive FILE [--archive FILE...] [--manifest-out FILE]
#
# Without --archive: `cargo build --release` (or take --binary PATH, an already
# built binary for this platform), lay out the one program under its three
# names (kubectl-idpbuilder for krew, kubectl-idpbuilder-push, idpbuilder-push)
# with LICENSE and README.md, and pack them flat into
#   DIR/idpbuilder-push-v<version>-<os>-<arch>.tar.gz   (.zip on Windows)
# beside a `<archive>.sha256` file. DIR defaults to dist/.
#
# Then set that platform's `uri` and `sha256` in krew-plugin.yaml, leaving the
# other platforms as they are; --manifest-out FILE writes the result there
# instead. --archive FILE records archives built elsewhere (one per platform,
# named as above) without building anything.
#
# Running it twice gives the same archive and manifest: entries are sorted,
# owned by 0:0 and dated SOURCE_DATE_EPOCH (default: the last commit's time).
# RELEASE_GZIP_LEVEL (default 9) trades size for time; the tests use 1 to pack
# a debug binary quickly.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MANIFEST="$REPO_ROOT/krew-plugin.yaml"

log() { printf 'release.sh: %s\n' "$*" >&2; }
die() {
	printf 'release.sh: error: %s\n' "$1" >&2
	[[ -n ${2:-} ]] && printf '\nhint: %s\n' "$2" >&2
	exit 1
}
usage() { sed -n '2,/^set -euo/{/^#/!d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

temporaries=()
cleanup() { ((${#temporaries[@]} == 0)) || rm -rf "${temporaries[@]}"; }
trap cleanup EXIT

binary=""
dist_dir="$REPO_ROOT/dist"
manifest_out="$MANIFEST"
archives=()
while (($#)); do
	case "$1" in
	--binary) binary=${2:?--binary needs a path}; shift 2 ;;
	--dist) dist_dir=${2:?--dist needs a directory}; shift 2 ;;
	--manifest-out) manifest_out=${2:?--manifest-out needs a file}; shift 2 ;;
	--archive) archives+=("${2:?--archive needs a file}"); shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument: $1" "see scripts/release.sh --help" ;;
	esac
done
if ((${#archives[@]})) && [[ -n $binary ]]; then
	die "--archive records existing archives; it does not combine with --binary"
fi

# The [package] version of Cargo.toml: the one version krew, the archive names
# and `--version` must agree on.
package_version() {
	awk '
		/^\[/ { in_package = ($0 == "[package]") }
		in_package && /^version[ \t]*=/ {
			sub(/^version[ \t]*=[ \t]*"/, ""); sub(/".*$/, ""); print; exit
		}' "$REPO_ROOT/Cargo.toml"
}

package_repository() {
	awk '
		/^\[/ { in_package = ($0 == "[package]") }
		in_package && /^repository[ \t]*=/ {
			sub(/^repository[ \t]*=[ \t]*"/, ""); sub(/".*$/, ""); sub(/\/$/, ""); print; exit
		}' "$REPO_ROOT/Cargo.toml"
}

# krew's platform names (Go's GOOS/GOARCH) for this machine.
host_os() {
	case "$(uname -s)" in
	Linux) echo linux ;;
	Darwin) echo darwin ;;
	MINGW* | MSYS* | CYGWIN* | Windows_NT) echo windows ;;
	*) die "unsupported operating system: $(uname -s)" ;;
	esac
}

host_arch() {
	case "$(uname -m)" in
	x86_64 | amd64) echo amd64 ;;
	aarch64 | arm64) echo arm64 ;;
	*) die "unsupported architecture: $(uname -m)" ;;
	esac
}

sha256_of() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d' ' -f1
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | cut -d' ' -f1
	else
		openssl dgst -sha256 -r "$1" | cut -d' ' -f1
	fi
}

source_date_epoch() {
	if [[ -n ${SOURCE_DATE_EPOCH:-} ]]; then
		echo "$SOURCE_DATE_EPOCH"
	else
		git -C "$REPO_ROOT" log -1 --format=%ct 2>/dev/null || echo 0
	fi
}

# Builds the release binary and prints its path. Cargo says where it put it,
# which keeps CARGO_TARGET_DIR and .cargo/config settings working.
build_release_binary() {
	log "cargo build --release --locked --bin kubectl-idpbuilder"
	local messages executable
	messages=$(cd "$REPO_ROOT" && cargo build --release --locked --bin kubectl-idpbuilder \
		--message-format=json-render-diagnostics)
	executable=$(printf '%s\n' "$messages" | grep '"reason":"compiler-artifact"' |
		grep -o '"executable":"[^"]*kubectl-idpbuilder[^"]*"' | tail -n1 | cut -d'"' -f4)
	[[ -n $executable ]] || die "cargo did not report the kubectl-idpbuilder executable"
	# JSON escapes the backslashes of a Windows path.
	echo "${executable//\\\\/\\}"
}

# Packs the files named after $2 (in that order) from directory $1 into the
# archive $2. Only regular files, no links: krew's extractor rejects any other
# tar entry type.
pack() {
	local stage=$1 archive=$2 epoch gzip_level=${RELEASE_GZIP_LEVEL:-9}
	shift 2
	[[ $gzip_level =~ ^[1-9]$ ]] || die "RELEASE_GZIP_LEVEL must be 1..9, not $gzip_level"
	epoch=$(source_date_epoch)
	local partial="$archive.partial"
	rm -f "$partial"
	case "$archive" in
	*.zip)
		(cd "$stage" && touch -d "@$epoch" "$@" && zip -X -q "-$gzip_level" "$partial" "$@")
		;;
	*.tar.gz)
		local tar=tar
		if ! tar --version 2>/dev/null | grep -q 'GNU tar'; then
			command -v gtar >/dev/null 2>&1 && tar=gtar
		fi
		if "$tar" --version 2>/dev/null | grep -q 'GNU tar'; then
			"$tar" --create --format=ustar --sort=name --owner=0 --group=0 --numeric-owner \
				--mtime="@$epoch" --mode='u+rwX,go+rX,go-w' --directory "$stage" "$@" |
				gzip -n "-$gzip_level" >"$partial"
		else
			log "no GNU tar: the archive will not be byte-for-byte reproducible"
			"$tar" -c -f - -C "$stage" "$@" | gzip -n "-$gzip_level" >"$partial"
		fi
		;;
	esac
	mv -f "$partial" "$archive"
}

# Sets `uri` and `sha256` of the platform whose selector is {os, arch} in the
# manifest file $5, in place. Platforms are read as blocks of the `platforms:`
# list; nothing else in the file changes, comments included.
set_platform() {
	local os=$1 arch=$2 uri=$3 sha256=$4 file=$5
	awk -v want_os="$os" -v want_arch="$arch" -v uri="$uri" -v sha256="$sha256" -v quotes="[\"']" '
		function value_of(line) {
			sub(/^[^:]*:[ \t]*/, "", line); sub(/[ \t]+#.*$/, "", line)
			gsub(quotes, "", line); sub(/[ \t]+$/, "", line)
			return line
		}
		function indent_of(line) { match(line, /^[ \t]*/); return RLENGTH }
		function flush(   i, os, arch, key_prefix, uri_set, sha_set) {
			if (n == 0) return
			os = ""; arch = ""
			for (i = 1; i <= n; i++) {
				if (block[i] ~ /^[ \t-]*os:/) os = value_of(block[i])
				if (block[i] ~ /^[ \t-]*arch:/) arch = value_of(block[i])
			}
			if (os == want_os && arch == want_arch) {
				matched++
				for (i = 1; i <= n; i++) {
					if (match(block[i], /^[ \t-]*uri:/)) {
						block[i] = substr(block[i], 1, RLENGTH - 4) "uri: " uri; uri_set++
					} else if (match(block[i], /^[ \t-]*sha256:/)) {
						block[i] = substr(block[i], 1, RLENGTH - 7) "sha256: \"" sha256 "\""; sha_set++
					}
				}
				if (uri_set != 1 || sha_set != 1) bad_block = 1
			}
			for (i = 1; i <= n; i++) print block[i]
			n = 0
		}
		{
			line = $0
			if (in_platforms && line !~ /^[ \t]*(#.*)?$/) {
				if (item_indent < 0 && line ~ /^[ \t]*- /) item_indent = indent_of(line)
				if (indent_of(line) < item_indent || (indent_of(line) <= list_indent && line !~ /^[ \t]*- /)) {
					flush(); in_platforms = 0
				} else if (indent_of(line) == item_indent && line ~ /^[ \t]*- /) {
					flush()
				}
			}
			if (in_platforms) { block[++n] = line; next }
			print line
			if (line ~ /^[ \t]*platforms:[ \t]*(#.*)?$/) {
				in_platforms = 1; list_indent = indent_of(line); item_indent = -1
			}
		}
		END {
			flush()
			if (matched != 1 || bad_block) exit 3
		}' "$file" >"$file.new" || {
		rm -f "$file.new"
		die "krew-plugin.yaml has no single platform {os: $os, arch: $arch} with one uri and one sha256" \
			"give each platform its own block-style selector.matchLabels (os, arch) and one uri: and sha256: line, as the others have"
	}
	mv -f "$file.new" "$file"
}

manifest_version() {
	awk -v quotes="[\"']" '
		/^spec:/ { in_spec = 1; next }
		in_spec && /^[ \t]+version:/ { sub(/^[^:]*:[ \t]*/, ""); gsub(quotes, ""); print; exit }' "$1"
}

version=$(package_version)
[[ -n $version ]] || die "no [package] version in Cargo.toml"
repository=$(package_repository)
[[ -n $repository ]] || die "no [package] repository in Cargo.toml"
[[ -f $MANIFEST ]] || die "$MANIFEST is missing"
if [[ $(manifest_version "$MANIFEST") != "v$version" ]]; then
	die "krew-plugin.yaml has spec.version $(manifest_version "$MANIFEST"), Cargo.toml has $version" \
		"set spec.version to v$version and every platform's uri to .../v$version/...-v$version-<os>-<arch>, then run this again"
fi
base_name="idpbuilder-push-v$version"

if ((${#archives[@]} == 0)); then
	os=$(host_os)
	arch=$(host_arch)
	exe=""
	extension="tar.gz"
	if [[ $os == windows ]]; then
		exe=".exe"
		extension="zip"
	fi
	if [[ -z $binary ]]; then
		binary=$(build_release_binary)
	fi
	[[ -f $binary && -x $binary ]] || die "binary $binary is not an executable file"
	[[ -f $REPO_ROOT/LICENSE ]] || die "LICENSE is missing: krew requires one in the archive"

	stage=$(mktemp -d)
	temporaries+=("$stage")
	# Sorted as `LC_ALL=C ls` would, so that zip archives are reproducible too.
	entries=(LICENSE)
	cp "$REPO_ROOT/LICENSE" "$stage/LICENSE"
	if [[ -f $REPO_ROOT/README.md ]]; then
		cp "$REPO_ROOT/README.md" "$stage/README.md"
		entries+=(README.md)
	else
		log "warning: README.md is missing; the archive goes without it"
	fi
	chmod 0644 "$stage"/*
	# Copies, not links: krew extracts regular files only, and the program picks
	# its grammar from the name it was started under.
	for name in idpbuilder-push kubectl-idpbuilder kubectl-idpbuilder-push; do
		cp "$binary" "$stage/$name$exe"
		chmod 0755 "$stage/$name$exe"
		entries+=("$name$exe")
	done

	mkdir -p "$dist_dir"
	archive="$dist_dir/$base_name-$os-$arch.$extension"
	pack "$stage" "$archive" "${entries[@]}"
	archives=("$archive")
fi

# Work on a copy so that a failure leaves the manifest as it was.
work=$(mktemp)
temporaries+=("$work" "$work.new")
cp "$MANIFEST" "$work"
for archive in "${archives[@]}"; do
	[[ -f $archive ]] || die "archive $archive does not exist"
	file_name=$(basename "$archive")
	if [[ ! $file_name =~ ^${base_name//./\\.}-(linux|darwin|windows)-(amd64|arm64)\.(tar\.gz|zip)$ ]]; then
		die "archive name $file_name is not $base_name-<os>-<arch>.tar.gz (or .zip)" \
			"archives must be for version $version of Cargo.toml"
	fi
	os=${BASH_REMATCH[1]}
	arch=${BASH_REMATCH[2]}
	sha256=$(sha256_of "$archive")
	printf '%s  %s\n' "$sha256" "$file_name" >"$archive.sha256"
	set_platform "$os" "$arch" "$repository/releases/download/v$version/$file_name" "$sha256" "$work"
	log "$os/$arch: $archive ($sha256)"
done
if [[ $manifest_out != "$MANIFEST" ]]; then
	mkdir -p "$(dirname "$manifest_out")"
fi
mv -f "$work" "$manifest_out"
chmod 0644 "$manifest_out"
log "wrote $manifest_out"
