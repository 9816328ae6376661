#!/usr/bin/env bash
# Build the real consumers of landed Secrets (Crossplane, provider-kubernetes, Flux, Argo CD
# code) from the Go modules pinned under this directory, into a cache outside the work tree.
#
# Each subdirectory is one Go module with a `targets` file: one "<binary> <package>" per line.
#   build.sh            builds every module; prints "<module> <dir>" per module
#   build.sh MODULE...  builds those; prints the same lines
# Re-running is a no-op when the cached binaries match go.sum, targets and this script.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${MOONLANDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moonlander}
log() { echo "consumers: $*" >&2; }

modules=("$@")
if [[ ${#modules[@]} -eq 0 ]]; then
  for d in "$here"/*/; do
    [[ -f "$d/targets" ]] && modules+=("$(basename "$d")")
  done
fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
for m in "${modules[@]}"; do
  dir="$here/$m"
  [[ -f "$dir/targets" && -f "$dir/go.mod" ]] || { log "no module $m (go.mod and targets) in $here"; exit 1; }
  # The key covers the pins, the targets, any local sources and the Go toolchain.
  key=$(cd "$dir" && cat go.sum targets "$here/build.sh" $(find . -name '*.go' | sort) <(go env GOVERSION GOARCH) | sha256sum | cut -c1-12)
  out="$cache_root/consumers/$m-$key"
  if [[ ! -f "$out/.complete" ]]; then
    mkdir -p "$out"
    start=$(date +%s)
    while read -r name pkg; do
      [[ -z "$name" || "$name" == \#* ]] && continue
      log "building $m/$name ($pkg)"
      (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$out/$name.tmp" "$pkg")
      mv "$out/$name.tmp" "$out/$name"
    done < "$dir/targets"
    touch "$out/.complete"
    log "built $m into $out in $(( $(date +%s) - start ))s"
  fi
  echo "$m $out"
done
