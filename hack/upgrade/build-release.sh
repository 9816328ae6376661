#!/usr/bin/env bash
# The image archive and chart of a released version, built from the commit releases.yaml
# names, once per machine: cached under ${MOONLANDER_CACHE:-~/.cache/moonlander}/releases/<commit>.
#
#   build-release.sh VERSION [ARCH]    ARCH in Debian's names, default this machine's
#
# Prints two lines: the OCI archive (tag VERSION, as `make image` names it) and the chart
# directory. The commit must be in this clone (CI clones main with its full history); a
# shallow clone fails here with what to fetch.
#
# How: `git archive <commit>` into the cache, today's hack/image/{build.sh,deps.sh} copied
# into that tree (0.1.0 predates `make image`; the Dockerfile is that commit's own), built
# with a buildah storage of its own (a shared one would take turns with `make image` over
# the same per-architecture stamp and rebuild both each time), which is dropped afterwards:
# only the archive and the chart are kept.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
version=${1:?usage: build-release.sh VERSION [ARCH]}
arch=${2:-$(dpkg --print-architecture)}
log() { echo "release: $*" >&2; }

commit=$(python3 - "$root/releases.yaml" "$version" <<'PY'
import sys, yaml
for r in yaml.safe_load(open(sys.argv[1]))["releases"]:
    if str(r["version"]) == sys.argv[2]:
        print(r["commit"])
        break
PY
)
[[ -n "$commit" ]] || { log "version $version is not in releases.yaml"; exit 1; }
if ! git -C "$root" cat-file -e "$commit^{commit}" 2>/dev/null; then
  log "release $version's commit $commit is not in this clone ($root):" \
    "the upgrade test needs the full history (git fetch --unshallow origin main)"
  exit 1
fi

cache=${MOONLANDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moonlander}/releases/$commit
archive=$cache/moonlander-$version-$arch.oci.tar
chart=$cache/src/charts/moonlander
mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9

if [[ ! -f "$cache/src/.complete" ]]; then
  rm -rf "$cache/src"
  mkdir -p "$cache/src"
  git -C "$root" archive "$commit" | tar -x -C "$cache/src"
  touch "$cache/src/.complete"
fi
if [[ ! -f "$archive" ]]; then
  start=$(date +%s)
  mkdir -p "$cache/src/hack/image"
  cp "$root/hack/image/build.sh" "$root/hack/image/deps.sh" "$cache/src/hack/image/"
  log "building $version ($commit) for $arch"
  build=$cache/build
  out=$cache/out
  rm -rf "$out"
  status=0
  MOONLANDER_CACHE=$build IMAGE_OUT=$out IMAGE_ARCHES=$arch \
    bash "$cache/src/hack/image/build.sh" >&2 || status=$?
  if [[ $status -eq 0 ]]; then
    mv "$out/moonlander-$version.oci.tar" "$archive.tmp"
    mv "$archive.tmp" "$archive"
    log "$archive built in $(( $(date +%s) - start ))s"
  fi
  # buildah's overlay storage: its layers are mounted only while a container exists, and
  # build.sh removes its containers; what is left is plain files.
  if grep -q " $build/" /proc/self/mountinfo; then
    log "mounts left under $build: not removing it"
  else
    rm -rf "$build" || log "could not remove $build"
  fi
  [[ $status -eq 0 ]] || { log "building $version failed (logs: $out)"; exit "$status"; }
fi
echo "$archive"
echo "$chart"
