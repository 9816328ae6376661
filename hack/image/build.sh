#!/usr/bin/env bash
# `make image`: the repository's Dockerfile, built as it is with buildah for linux/amd64 and
# linux/arm64, assembled into one OCI image index and written as an OCI archive; no registry.
#
#   PYTHON_IMAGE  the Dockerfile's base. Unset: a Debian bookworm base with python3 and pip is
#                 made with mmdebstrap for each architecture (once; cached by its recipe) and
#                 kept as the local image list localhost/moonlander-python-base. Set (e.g. to
#                 the Dockerfile's default, python:3.11.14-slim-trixie): pulled from a registry.
#   IMAGE_ARCHES  Debian architecture names, default "amd64 arm64".
#   IMAGE_OUT     output directory, default _out/image (git-ignored).
#   IMAGE_REBASE  1: make the Debian base again (fresh packages).
#   IMAGE_CA      CA bundle mounted at /etc/ssl/certs/ca-certificates.crt for the RUN steps
#                 only (pip's downloads), default the host's; empty: none. Not in the image.
#
# Everything buildah keeps (storage, run state, configuration) is under
# ${MOONLANDER_CACHE:-~/.cache/moonlander}/image; the host's containers configuration is
# not read or changed. Each architecture's image is checked by running it (the foreign one
# under qemu): `moonlander version`, and the machine its compiled extensions load on.
# An architecture is built (whole, without buildah's layer cache: see docs/install.md) only
# when what the build reads has changed since its last build.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${MOONLANDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moonlander}/image
out=${IMAGE_OUT:-$root/_out/image}
read -r -a arches <<<"${IMAGE_ARCHES:-amd64 arm64}"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n 1)
name=localhost/moonlander:$version
log() { echo "image: $*" >&2; }
took() { echo "$(( $(date +%s) - $1 ))s"; }

bash "$here/deps.sh" "${arches[@]}"

# One build at a time on this machine (make image, the node tests): they share buildah's
# storage and the image names.
mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9

# Private configuration: runc (crun fails on hybrid cgroups), cgroupfs (no systemd), default
# ulimits within the hard limits of a process without CAP_SYS_RESOURCE, and CNI state in the
# cache (the builds and runs below use the host's network or none, so no bridge is made).
mkdir -p "$cache/conf" "$cache/cni" "$out"
cat >"$cache/conf/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
[network]
network_backend = "cni"
network_config_dir = "$cache/cni"
EOF
cat >"$cache/conf/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$cache/storage"
runroot = "$cache/run"
EOF
# Short names (the Dockerfile's default base) resolve as Docker resolves them.
cat >"$cache/conf/registries.conf" <<'EOF'
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
export CONTAINERS_CONF=$cache/conf/containers.conf
export CONTAINERS_STORAGE_CONF=$cache/conf/storage.conf
export CONTAINERS_REGISTRIES_CONF=$cache/conf/registries.conf

ctrs=()
cleanup() { for c in "${ctrs[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT

# --- the base -------------------------------------------------------------------------------
if [[ -n "${PYTHON_IMAGE:-}" ]]; then
  base=$PYTHON_IMAGE
  pull=missing
else
  # The Dockerfile runs `python -m pip wheel`, `python -m venv --without-pip` and
  # `python -m pip --python ...`: python-is-python3, python3-venv and python3-pip (23.0.1,
  # --python needs 22.3). bookworm's Python is 3.11.2 (pyproject: >=3.11). The merged-usr hook
  # sets up merged /usr without the usrmerge package (and the perl it needs).
  suite=bookworm
  mmdebstrap_args=(
    --variant=minbase
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
  )
  key=$(printf '%s\n' "$suite" "${mmdebstrap_args[@]}" | sha256sum | cut -c1-12)
  base=localhost/moonlander-python-base:$suite-$key
  pull=never
  for arch in "${arches[@]}"; do
    img=$base-$arch
    if [[ "${IMAGE_REBASE:-}" == 1 ]] && buildah inspect --type image "$img" >/dev/null 2>&1; then
      buildah manifest rm "$base" >/dev/null 2>&1 || true
      buildah rmi "$img" >/dev/null
    fi
    buildah inspect --type image "$img" >/dev/null 2>&1 && continue
    start=$(date +%s)
    tar=$cache/base/$suite-$key-$arch.tar # the .tar extension: mmdebstrap's output format
    mkdir -p "$cache/base"
    rm -f "$tar"
    note=""
    [[ "$arch" == "$(dpkg --print-architecture)" ]] || note=" under qemu (about 4 minutes on 2 cores)"
    log "making the $suite base for $arch with mmdebstrap$note"
    if ! mmdebstrap --architectures="$arch" "${mmdebstrap_args[@]}" "$suite" "$tar" \
      </dev/null >"$out/base-$arch.log" 2>&1; then
      tail -n 30 "$out/base-$arch.log" >&2
      log "mmdebstrap failed: $out/base-$arch.log"
      exit 1
    fi
    c=$(buildah from --arch "$arch" scratch); ctrs+=("$c")
    buildah add --quiet "$c" "$tar" / >/dev/null
    buildah config --os linux --arch "$arch" --env LANG=C.UTF-8 --cmd python3 \
      --label "org.opencontainers.image.description=Debian $suite minbase with python3 and pip, made with mmdebstrap" "$c"
    buildah commit --quiet --rm "$c" "$img" >/dev/null
    rm -f "$tar"
    log "base $img made in $(took "$start")"
  done
  # One name for every architecture: each stage of the build picks its platform's instance.
  buildah manifest rm "$base" >/dev/null 2>&1 || true
  buildah manifest create "$base" >/dev/null
  for arch in "${arches[@]}"; do
    buildah manifest add "$base" "containers-storage:$base-$arch" >/dev/null
  done
fi

# --- the image, one build per architecture ----------------------------------------------------
ca=${IMAGE_CA-/etc/ssl/certs/ca-certificates.crt}
volumes=()
[[ -n "$ca" && -f "$ca" ]] && volumes=(--volume "$ca:/etc/ssl/certs/ca-certificates.crt:ro")
declare -A machine=([amd64]=x86_64 [arm64]=aarch64)
want=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/src/moonlander/__init__.py")
# What the build reads (.dockerignore lets in pyproject.toml, README.md, src/ less its
# __pycache__ and egg-info, requirements-runtime.lock), the Dockerfile, this script and the base.
context_hash() { # arch
  local base_id
  base_id=$(buildah inspect --type image --format '{{.FromImageID}}' "$base-$1" 2>/dev/null || echo "$base")
  (
    cd "$root"
    printf '%s\n' "$base_id" "$ca"
    find src -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 | sort -z \
      | xargs -0 sha256sum
    sha256sum pyproject.toml README.md requirements-runtime.lock Dockerfile .dockerignore \
      "$here/build.sh"
  ) | sha256sum | cut -c1-16
}
mkdir -p "$cache/stamps"
buildah manifest rm "$name" >/dev/null 2>&1 || true
buildah manifest create "$name" >/dev/null
for arch in "${arches[@]}"; do
  start=$(date +%s)
  hash=$(context_hash "$arch")
  stamp=$cache/stamps/$arch
  old=$(buildah inspect --type image --format '{{.FromImageID}}' "$name-$arch" 2>/dev/null || true)
  if [[ -n "$old" && -f "$stamp" && "$(cat "$stamp")" == "$hash $old" ]]; then
    log "$name-$arch is up to date (context $hash)"
  else
    # No --layers: buildah 1.28's layer cache does not look at what a RUN
    # --mount=type=bind,from=builder mounts, so a changed wheel would be left out (seen:
    # a changed __version__ came out as the old one). A changed context is built whole.
    log "building $name-$arch from $base"
    rm -f "$stamp"
    if ! buildah build --layers=false --pull="$pull" --network=host --platform="linux/$arch" \
      --build-arg PYTHON_IMAGE="$base" "${volumes[@]}" \
      --file "$root/Dockerfile" --tag "$name-$arch" "$root" >"$out/build-$arch.log" 2>&1; then
      tail -n 30 "$out/build-$arch.log" >&2
      log "building $name-$arch failed: $out/build-$arch.log"
      exit 1
    fi
    new=$(buildah inspect --type image --format '{{.FromImageID}}' "$name-$arch")
    [[ -z "$old" || "$old" == "$new" ]] || buildah rmi "$old" >/dev/null 2>&1 || true
    echo "$hash $new" >"$stamp"
  fi
  got=$(buildah inspect --type image --format '{{.OCIv1.Architecture}}' "$name-$arch")
  [[ "$got" == "$arch" ]] || { log "$name-$arch has architecture $got, not $arch"; exit 1; }
  # Run it: the version, and the machine that its compiled wheels (cryptography, PyYAML,
  # msgspec) really load on, as the image's user without a network.
  c=$(buildah from --arch "$arch" --pull=never --quiet "$name-$arch"); ctrs+=("$c")
  v=$(buildah run --network=none "$c" -- moonlander version)
  m=$(buildah run --network=none "$c" -- python -c \
    'import platform, cryptography.hazmat.bindings._rust, yaml._yaml, msgspec; print(platform.machine())')
  u=$(buildah run --network=none "$c" -- id -u)
  buildah rm "$c" >/dev/null
  [[ "$m" == "${machine[$arch]}" ]] || { log "$name-$arch runs as $m, not ${machine[$arch]}"; exit 1; }
  [[ "$v" == "$want" ]] || { log "$name-$arch says version $v, src/ says $want"; exit 1; }
  echo "$arch: moonlander version -> $v (machine $m, uid $u)"
  buildah manifest add "$name" "containers-storage:$name-$arch" >/dev/null
  log "$name-$arch ready in $(took "$start")"
done

archive=$out/moonlander-$version.oci.tar
rm -f "$archive"
buildah manifest push --quiet --all --format oci "$name" "oci-archive:$archive:$version"

# Sizes: each architecture's layers as stored in the archive (gzip, what a registry holds)
# and unpacked.
python3 - "$archive" <<'EOF'
import gzip, json, sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    blob = lambda d: t.extractfile("blobs/" + d.replace(":", "/")).read()
    index = json.loads(t.extractfile("index.json").read())
    for ref in index["manifests"]:
        for m in json.loads(blob(ref["digest"]))["manifests"]:
            layers = json.loads(blob(m["digest"]))["layers"]
            packed = sum(l["size"] for l in layers)
            unpacked = sum(len(gzip.decompress(blob(l["digest"]))) for l in layers)
            print(f'{m["platform"]["architecture"]}: {len(layers)} layers, '
                  f'{packed / 1e6:.1f} MB compressed, {unpacked / 1e6:.1f} MB unpacked')
EOF
echo "$archive ($(du -m "$archive" | cut -f1) MiB): one OCI image index, ${arches[*]}"
