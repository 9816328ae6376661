#!/usr/bin/env bash
# Build the real consumers of landed Secrets (Crossplane, provider-kubernetes, Flux, Argo CD
# code) from the Go modules pinned under this directory, into a cache outside the work tree.
#
# Each subdirectory is one Go module with a `targets` file: one "<binary> <package>" per line.
#   build.sh            builds every module; prints "<module> <dir>" per module
#   build.sh MODULE...  builds those; prints the same lines
# Re-running is a no-op when the cached binaries match go.mod, go.sum, targets, the local Go
# sources, this script and the Go toolchain that builds them.
#
# Toolchain: the machine's own Go (GOTOOLCHAIN=local), unless a module's go.mod asks for a newer
# Go than that in its `go` line; such a module must name the exact toolchain in a `toolchain`
# line (e.g. `toolchain go1.27.3`), and only that module is built with GOTOOLCHAIN set to it:
# the go command then fetches that toolchain from the Go module proxy once per machine (about
# 76 MB, kept in the module cache). No export is needed in the calling shell.
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
local_go=$(go env GOVERSION)  # e.g. go1.26.8

# The value of GOTOOLCHAIN for the module in directory $1: "local" unless its go.mod's `go`
# line is newer than the machine's Go, and then the version its `toolchain` line names.
toolchain_for() {
  local gomod="$1/go.mod" need tc
  need=$(awk '$1 == "go" { print $2; exit }' "$gomod")
  if [[ -z "$need" || "$(printf '%s\n%s\n' "$need" "${local_go#go}" | sort -V | tail -n1)" == "${local_go#go}" ]]; then
    echo local
    return
  fi
  tc=$(awk '$1 == "toolchain" { print $2; exit }' "$gomod")
  if [[ ! "$tc" =~ ^go[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    log "$gomod needs Go $need, newer than this machine's $local_go: name the exact toolchain to fetch in a 'toolchain goX.Y.Z' line"
    return 1
  fi
  echo "$tc"
}

for m in "${modules[@]}"; do
  dir="$here/$m"
  [[ -f "$dir/targets" && -f "$dir/go.mod" ]] || { log "no module $m (go.mod and targets) in $here"; exit 1; }
  toolchain=$(toolchain_for "$dir")
  # The Go version actually used (fetching the named toolchain the first time on a machine).
  goversion=$(GOTOOLCHAIN=$toolchain go env GOVERSION) || { log "$m: cannot run Go toolchain $toolchain"; exit 1; }
  [[ "$toolchain" == local || "$goversion" == "$toolchain" ]] || { log "$m: asked for $toolchain, got $goversion"; exit 1; }
  # The key covers the pins, the targets, any local sources and the Go toolchain.
  key=$(cd "$dir" && cat go.mod go.sum targets "$here/build.sh" $(find . -name '*.go' | sort) <(echo "$goversion"; go env GOARCH) | sha256sum | cut -c1-12)
  out="$cache_root/consumers/$m-$key"
  if [[ ! -f "$out/.complete" ]]; then
    mkdir -p "$out"
    start=$(date +%s)
    while read -r name pkg; do
      [[ -z "$name" || "$name" == \#* ]] && continue
      log "building $m/$name ($pkg) with $goversion"
      (cd "$dir" && GOTOOLCHAIN=$toolchain go build -trimpath -ldflags "-s -w" -o "$out/$name.tmp" "$pkg")
      mv "$out/$name.tmp" "$out/$name"
    done < "$dir/targets"
    touch "$out/.complete"
    log "built $m into $out in $(( $(date +%s) - start ))s"
  fi
  echo "$m $out"
done
