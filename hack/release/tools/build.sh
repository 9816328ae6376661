#!/usr/bin/env bash
# Build the release tools (cosign, syft, the distribution registry) from the Go modules pinned
# under this directory, into a cache outside the work tree: hack/consumers/build.sh's pattern,
# plus optional ldflags per target (the tools' version strings).
#
# Each subdirectory is one Go module with a `targets` file, one target per line:
#   <binary> <package> [ldflags...]
#   build.sh            builds every module; prints "<module> <dir>" per module
#   build.sh MODULE...  builds those; prints the same lines
# Re-running is a no-op when the cached binaries match go.mod, go.sum, targets, the local Go
# sources, this script and the Go toolchain. Each build's time goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${MOONLANDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moonlander}
log() { echo "release-tools: $*" >&2; }

modules=("$@")
if [[ ${#modules[@]} -eq 0 ]]; then
  for d in "$here"/*/; do
    [[ -f "$d/targets" ]] && modules+=("$(basename "$d")")
  done
fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
goversion=$(go env GOVERSION)

for m in "${modules[@]}"; do
  dir="$here/$m"
  [[ -f "$dir/targets" && -f "$dir/go.mod" ]] || { log "no module $m (go.mod and targets) in $here"; exit 1; }
  need=$(awk '$1 == "go" { print $2; exit }' "$dir/go.mod")
  if [[ "$(printf '%s\n%s\n' "$need" "${goversion#go}" | sort -V | tail -n1)" != "${goversion#go}" ]]; then
    log "$m needs Go $need, newer than this machine's $goversion"
    exit 1
  fi
  key=$(cd "$dir" && cat go.mod go.sum targets "$here/build.sh" $(find . -name '*.go' | sort) <(echo "$goversion"; go env GOARCH) | sha256sum | cut -c1-12)
  out="$cache_root/release-tools/$m-$key"
  if [[ ! -f "$out/.complete" ]]; then
    mkdir -p "$out"
    # One build per output directory at a time (make release and a test session may race).
    exec 9>"$out.lock"
    flock 9
    if [[ ! -f "$out/.complete" ]]; then
      start=$(date +%s)
      while read -r name pkg ldflags; do
        [[ -z "$name" || "$name" == \#* ]] && continue
        log "building $m/$name ($pkg) with $goversion"
        (cd "$dir" && go build -trimpath -ldflags "-s -w ${ldflags:-}" -o "$out/$name.tmp" "$pkg")
        mv "$out/$name.tmp" "$out/$name"
      done <"$dir/targets"
      touch "$out/.complete"
      log "built $m into $out in $(( $(date +%s) - start ))s"
    fi
    exec 9>&-
  fi
  echo "$m $out"
done
